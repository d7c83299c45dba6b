-- canon.grant_product_roles: the two group roles of the product and what each may do
-- (docs/security.md). Called by every `cabinet-leads migrate`
-- (src/migrate.ts, after graphile-worker's schema is installed), as the migrating role:
--   cabinet_leads_job     runs the pipeline, the worker, import-leads, the manual fixes,
--                         alerts, status, report, doctor (--repair): reads and writes rows,
--                         executes every function; creates, alters and drops nothing.
--   cabinet_leads_reader  SELECT on the ops views and tables, canon.ingestion_runs,
--                         canon.settings and canon.identity_unmatched; ops.explain_lead, ops.preview_links,
--                         ops.check_limbo_alerts (its read-only form) and the other read functions;
--                         writes nothing.
-- Both NOLOGIN: a DBA grants them to login roles. Creates a missing role when the
-- migrating role may (superuser or CREATEROLE). Idempotent: every grant is given again,
-- so objects added by later migrations are covered (also by the default privileges).
-- Returns the SQL a DBA must run for what the migrating role could not do (no row: all
-- done): roles it may not create, grants on upstream tables or on graphile-worker's
-- schema it does not own. Functions of canon and ops are not executable by PUBLIC: only
-- the roles above (and their owner) reach them, as only they have USAGE on the schemas.
CREATE OR REPLACE FUNCTION canon.grant_product_roles()
RETURNS SETOF text
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  c_job constant text := 'cabinet_leads_job';
  c_reader constant text := 'cabinet_leads_reader';
  -- The read functions of ops a reader may call (the rest of ops writes or repairs).
  c_reader_ops constant text[] := ARRAY[
    'ops.explain_lead', 'ops.check_limbo_alerts', 'ops.firing_limbo_alerts', 'ops.limbo_alert_metrics',
    'ops.limbo_week_counts', 'ops.limbo_stage_counts', 'ops.funnel_week_counts',
    'ops.limbo_stage_actions', 'ops.oldest_actionable_leads', 'ops.last_complete_lead_week', 'ops.job_lock_holders',
    'ops.preview_links'];
  v_role text;
  v_missing text[] := '{}';
  v_may_create boolean;
  v_fn regprocedure;
  v_table text;
  v_seq text;
  v_priv text;
BEGIN
  -- ROLES: created when missing (NOLOGIN), else the DBA's SQL.
  SELECT r.rolsuper OR r.rolcreaterole INTO v_may_create FROM pg_roles r WHERE r.rolname = current_user;
  FOREACH v_role IN ARRAY ARRAY[c_job, c_reader] LOOP
    CONTINUE WHEN EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = v_role);
    IF v_may_create THEN
      BEGIN
        EXECUTE format('CREATE ROLE %I NOLOGIN', v_role);
        EXECUTE format('COMMENT ON ROLE %I IS %L', v_role, CASE v_role
          WHEN c_job THEN 'cabinet-leads: runs the pipeline, the worker and the operator commands; writes rows, changes no schema (docs/security.md).'
          ELSE 'cabinet-leads: reads the ops views, the runs and the alerts; writes nothing (docs/security.md).' END);
      EXCEPTION WHEN duplicate_object OR unique_violation THEN
        NULL; -- created meanwhile by a migrate of another database of the cluster
      END;
    ELSE
      v_missing := v_missing || v_role;
    END IF;
  END LOOP;
  IF cardinality(v_missing) > 0 THEN
    RETURN QUERY SELECT format('CREATE ROLE %I NOLOGIN;', m) FROM unnest(v_missing) m;
    RETURN QUERY SELECT '-- then run cabinet-leads migrate again: it grants the roles their rights'::text;
    RETURN;
  END IF;

  -- SCHEMAS: USAGE only; CREATE stays with the owner.
  GRANT USAGE ON SCHEMA canon, ops, cabinet_migrations TO cabinet_leads_job, cabinet_leads_reader;
  -- The caches and bookkeeping: the job's; a reader sees them through the views only.
  GRANT USAGE ON SCHEMA canon_internal TO cabinet_leads_job;
  -- Which migrations are applied: every command checks it before it starts.
  GRANT SELECT ON cabinet_migrations.pgmigrations TO cabinet_leads_job, cabinet_leads_reader;

  -- JOB: rows of every table, every sequence, every function; no TRUNCATE, no DDL.
  GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA canon, canon_internal, ops TO cabinet_leads_job;
  FOR v_table IN
    SELECT c.oid::regclass::text FROM pg_class c
    WHERE c.relnamespace IN ('canon'::regnamespace, 'ops'::regnamespace) AND c.relkind IN ('v', 'm')
  LOOP
    EXECUTE format('REVOKE INSERT, UPDATE, DELETE ON %s FROM cabinet_leads_job', v_table); -- views are read
  END LOOP;
  GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA canon, canon_internal, ops TO cabinet_leads_job;
  REVOKE EXECUTE ON ALL ROUTINES IN SCHEMA canon, ops FROM PUBLIC;
  GRANT EXECUTE ON ALL ROUTINES IN SCHEMA canon, ops TO cabinet_leads_job;
  ALTER DEFAULT PRIVILEGES IN SCHEMA canon, canon_internal, ops GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO cabinet_leads_job;
  ALTER DEFAULT PRIVILEGES IN SCHEMA canon, canon_internal, ops GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO cabinet_leads_job;
  ALTER DEFAULT PRIVILEGES IN SCHEMA canon, ops GRANT EXECUTE ON ROUTINES TO cabinet_leads_job;
  -- PostgreSQL 17+: the ANALYZE steps of a run (else skipped with a warning, as for any
  -- role that does not own the table; autovacuum analyzes them).
  IF current_setting('server_version_num')::integer >= 170000 THEN
    EXECUTE 'GRANT MAINTAIN ON ALL TABLES IN SCHEMA canon, canon_internal TO cabinet_leads_job';
    EXECUTE 'ALTER DEFAULT PRIVILEGES IN SCHEMA canon, canon_internal GRANT MAINTAIN ON TABLES TO cabinet_leads_job';
  END IF;

  -- READER: the ops views and tables (the views run with their owner's rights on canon),
  -- the run log, the settings (canon.setting, called by the views, runs with the
  -- caller's rights), the canon helper functions the views call (they run with the
  -- reader's rights, so they can write nothing) and the read functions of ops; why a lead
  -- has no person (the report's actionable leads: the limbo view shows its keys already).
  GRANT SELECT ON ALL TABLES IN SCHEMA ops TO cabinet_leads_reader;
  GRANT SELECT ON canon.ingestion_runs, canon.settings, canon.identity_unmatched TO cabinet_leads_reader;
  ALTER DEFAULT PRIVILEGES IN SCHEMA ops GRANT SELECT ON TABLES TO cabinet_leads_reader;
  FOR v_fn IN
    SELECT p.oid::regprocedure
    FROM pg_proc p
    WHERE (p.pronamespace = 'canon'::regnamespace AND NOT p.prosecdef)
       OR (p.pronamespace = 'ops'::regnamespace AND p.oid::regproc::text = ANY (c_reader_ops))
  LOOP
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO cabinet_leads_reader', v_fn);
  END LOOP;
  ALTER DEFAULT PRIVILEGES IN SCHEMA canon GRANT EXECUTE ON ROUTINES TO cabinet_leads_reader;
  -- canon's SECURITY DEFINER functions act with the owner's rights (the driver index's
  -- indexes, its GIN pending lists): the job's only, also when a later migration adds one
  -- (the default privileges above would give it to the reader).
  FOR v_fn IN
    SELECT p.oid::regprocedure FROM pg_proc p WHERE p.pronamespace = 'canon'::regnamespace AND p.prosecdef
  LOOP
    EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM cabinet_leads_reader', v_fn);
  END LOOP;

  -- UPSTREAM: the source tables (owned upstream in production) and the lead id sequence
  -- (import-leads inserts leads). Given when the migrating role may, else the DBA's SQL.
  FOREACH v_table IN ARRAY ARRAY['public.module_ct_cabinet_leads', 'public.drivers', 'public.summary_daily'] LOOP
    CONTINUE WHEN to_regclass(v_table) IS NULL;
    IF has_table_privilege(current_user, v_table, 'SELECT WITH GRANT OPTION')
       AND (v_table <> 'public.module_ct_cabinet_leads' OR has_table_privilege(current_user, v_table, 'INSERT WITH GRANT OPTION')) THEN
      EXECUTE format('GRANT %s ON %s TO cabinet_leads_job',
                     CASE WHEN v_table = 'public.module_ct_cabinet_leads' THEN 'SELECT, INSERT' ELSE 'SELECT' END, v_table);
    ELSIF NOT has_table_privilege(c_job, v_table, 'SELECT')
          OR (v_table = 'public.module_ct_cabinet_leads' AND NOT has_table_privilege(c_job, v_table, 'INSERT')) THEN
      RETURN NEXT format('GRANT %s ON %s TO cabinet_leads_job;',
                         CASE WHEN v_table = 'public.module_ct_cabinet_leads' THEN 'SELECT, INSERT' ELSE 'SELECT' END, v_table);
    END IF;
  END LOOP;
  v_seq := pg_get_serial_sequence('public.module_ct_cabinet_leads', 'id');
  IF v_seq IS NOT NULL THEN
    IF has_sequence_privilege(current_user, v_seq, 'USAGE WITH GRANT OPTION') THEN
      EXECUTE format('GRANT USAGE ON SEQUENCE %s TO cabinet_leads_job', v_seq);
    ELSIF NOT has_sequence_privilege(c_job, v_seq, 'USAGE') THEN
      RETURN NEXT format('GRANT USAGE ON SEQUENCE %s TO cabinet_leads_job;', v_seq);
    END IF;
  END IF;

  -- GRAPHILE-WORKER: its schema is installed by migrate (src/migrate.ts) as this role;
  -- the job role runs jobs: rows, sequences and functions, no DDL. graphile-worker turns
  -- row level security on for its tables with no policy (only their owner sees a row):
  -- one policy per table lets the job role see and write every row, as the owner does.
  IF to_regnamespace('graphile_worker') IS NOT NULL THEN
    IF pg_has_role(current_user, (SELECT n.nspowner FROM pg_namespace n WHERE n.nspname = 'graphile_worker'), 'USAGE') THEN
      FOR v_table IN
        SELECT c.oid::regclass::text FROM pg_class c
        WHERE c.relnamespace = 'graphile_worker'::regnamespace AND c.relkind IN ('r', 'p') AND c.relrowsecurity
          AND NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = c_job)
      LOOP
        EXECUTE format('CREATE POLICY %I ON %s FOR ALL TO %I USING (true) WITH CHECK (true)', c_job, v_table, c_job);
      END LOOP;
      GRANT USAGE ON SCHEMA graphile_worker TO cabinet_leads_job;
      GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA graphile_worker TO cabinet_leads_job;
      GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA graphile_worker TO cabinet_leads_job;
      GRANT EXECUTE ON ALL ROUTINES IN SCHEMA graphile_worker TO cabinet_leads_job;
      ALTER DEFAULT PRIVILEGES IN SCHEMA graphile_worker GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO cabinet_leads_job;
      ALTER DEFAULT PRIVILEGES IN SCHEMA graphile_worker GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO cabinet_leads_job;
      ALTER DEFAULT PRIVILEGES IN SCHEMA graphile_worker GRANT EXECUTE ON ROUTINES TO cabinet_leads_job;
    ELSIF NOT has_schema_privilege(c_job, 'graphile_worker', 'USAGE') THEN
      RETURN QUERY
        SELECT format('CREATE POLICY %I ON %s FOR ALL TO %I USING (true) WITH CHECK (true);', c_job, c.oid::regclass, c_job)
        FROM pg_class c
        WHERE c.relnamespace = 'graphile_worker'::regnamespace AND c.relkind IN ('r', 'p') AND c.relrowsecurity
          AND NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = c_job)
        ORDER BY 1;
      RETURN NEXT 'GRANT USAGE ON SCHEMA graphile_worker TO cabinet_leads_job;';
      RETURN NEXT 'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA graphile_worker TO cabinet_leads_job;';
      RETURN NEXT 'GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA graphile_worker TO cabinet_leads_job;';
      RETURN NEXT 'GRANT EXECUTE ON ALL ROUTINES IN SCHEMA graphile_worker TO cabinet_leads_job;';
    END IF;
  END IF;

  -- DATABASE: CONNECT and TEMPORARY (a run builds temporary tables) are PUBLIC's by
  -- default; where a DBA revoked them, the roles get them back (or the DBA's SQL).
  FOREACH v_role IN ARRAY ARRAY[c_job, c_reader] LOOP
    FOREACH v_priv IN ARRAY CASE v_role WHEN c_job THEN ARRAY['CONNECT', 'TEMPORARY'] ELSE ARRAY['CONNECT'] END LOOP
      CONTINUE WHEN has_database_privilege(v_role, current_database(), v_priv);
      IF has_database_privilege(current_user, current_database(), v_priv || ' WITH GRANT OPTION') THEN
        EXECUTE format('GRANT %s ON DATABASE %I TO %I', v_priv, current_database(), v_role);
      ELSE
        RETURN NEXT format('GRANT %s ON DATABASE %I TO %I;', v_priv, current_database(), v_role);
      END IF;
    END LOOP;
  END LOOP;
END
$$;
COMMENT ON FUNCTION canon.grant_product_roles() IS
  'Creates the roles cabinet_leads_job and cabinet_leads_reader (NOLOGIN) when missing and allowed, and grants each its rights (docs/security.md); returns the SQL a DBA must run for what the migrating role could not do. Run by every cabinet-leads migrate.';
