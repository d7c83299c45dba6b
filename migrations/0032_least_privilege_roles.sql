-- Up Migration
-- snapshot of sql/canon/canon.grant_product_roles.sql
-- canon.grant_product_roles: the two group roles of the product and what each may do
-- (docs/security.md). Called by migration 0032 and by every `cabinet-leads migrate`
-- (src/migrate.ts, after graphile-worker's schema is installed), as the migrating role:
--   cabinet_leads_job     runs the pipeline, the worker, import-leads, the manual fixes,
--                         alerts, status, report, doctor (--repair): reads and writes rows,
--                         executes every function; creates, alters and drops nothing.
--   cabinet_leads_reader  SELECT on the ops views and tables, canon.ingestion_runs and
--                         canon.settings; ops.explain_lead, ops.check_limbo_alerts (its
--                         read-only form) and the other read functions; writes nothing.
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
    'ops.limbo_week_counts', 'ops.limbo_stage_counts', 'ops.last_complete_lead_week', 'ops.job_lock_holders'];
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
  -- Which migrations are applied: every command checks it before it starts.
  GRANT SELECT ON cabinet_migrations.pgmigrations TO cabinet_leads_job, cabinet_leads_reader;

  -- JOB: rows of every table, every sequence, every function; no TRUNCATE, no DDL.
  GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA canon, ops TO cabinet_leads_job;
  FOR v_table IN
    SELECT c.oid::regclass::text FROM pg_class c
    WHERE c.relnamespace IN ('canon'::regnamespace, 'ops'::regnamespace) AND c.relkind IN ('v', 'm')
  LOOP
    EXECUTE format('REVOKE INSERT, UPDATE, DELETE ON %s FROM cabinet_leads_job', v_table); -- views are read
  END LOOP;
  GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA canon, ops TO cabinet_leads_job;
  REVOKE EXECUTE ON ALL ROUTINES IN SCHEMA canon, ops FROM PUBLIC;
  GRANT EXECUTE ON ALL ROUTINES IN SCHEMA canon, ops TO cabinet_leads_job;
  ALTER DEFAULT PRIVILEGES IN SCHEMA canon, ops GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO cabinet_leads_job;
  ALTER DEFAULT PRIVILEGES IN SCHEMA canon, ops GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO cabinet_leads_job;
  ALTER DEFAULT PRIVILEGES IN SCHEMA canon, ops GRANT EXECUTE ON ROUTINES TO cabinet_leads_job;
  -- PostgreSQL 17+: the ANALYZE steps of a run (else skipped with a warning, as for any
  -- role that does not own the table; autovacuum analyzes them).
  IF current_setting('server_version_num')::integer >= 170000 THEN
    EXECUTE 'GRANT MAINTAIN ON ALL TABLES IN SCHEMA canon TO cabinet_leads_job';
    EXECUTE 'ALTER DEFAULT PRIVILEGES IN SCHEMA canon GRANT MAINTAIN ON TABLES TO cabinet_leads_job';
  END IF;

  -- READER: the ops views and tables (the views run with their owner's rights on canon),
  -- the run log, the settings (canon.setting, called by the views, runs with the
  -- caller's rights), the canon helper functions the views call (they run with the
  -- reader's rights, so they can write nothing) and the read functions of ops.
  GRANT SELECT ON ALL TABLES IN SCHEMA ops TO cabinet_leads_reader;
  GRANT SELECT ON canon.ingestion_runs, canon.settings TO cabinet_leads_reader;
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

-- snapshot of sql/ops/ops.limbo_week_counts.sql
-- ops.limbo_week_counts: leads per limbo stage for each lead week (week_start = ISO
-- Monday of lead_date), the one definition of the counts that snapshots store and alert
-- rules test. p_run_id NULL: live, the counts of ops.v_cabinet_leads_limbo without a
-- pass over every lead (canon.limbo_week_counts_of_state); a run id: the rows stored for that run in
-- ops.limbo_snapshot_weeks. PL/pgSQL so that only the branch taken is planned; jit off
-- (the live part's estimate over the lead view once triggered a JIT compilation that
-- took longer than the whole count). SECURITY DEFINER (it only reads; a fixed
-- search_path): the live counts read the canon caches and the lead rows, which a
-- cabinet_leads_reader may not read, for ops.limbo_alert_metrics (status, alerts).
CREATE OR REPLACE FUNCTION ops.limbo_week_counts(p_run_id bigint DEFAULT NULL)
RETURNS TABLE (
  week_start            date,
  leads                 integer,
  leads_with_identity   integer,
  leads_with_driver     integer,
  limbo_no_identity     integer,
  limbo_no_driver       integer,
  limbo_no_trips_14d    integer,
  limbo_trips_no_claim  integer,
  limbo_ok              integer
)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
#variable_conflict use_column
BEGIN
  IF p_run_id IS NULL THEN
    -- The view's counts without a pass over it: the stored state's counters corrected for
    -- the rows that may not be current (canon.limbo_week_counts_of_state); equal to a pass
    -- over ops.v_cabinet_leads_limbo grouped by week_start (tests:
    -- test/invariants/pipeline.test.ts, test/sql/canon.count_lead_state_changes.test.ts).
    RETURN QUERY SELECT * FROM canon.limbo_week_counts_of_state(true);
  ELSE
    RETURN QUERY
    SELECT w.week_start, w.leads, w.leads_with_identity, w.leads_with_driver, w.limbo_no_identity,
           w.limbo_no_driver, w.limbo_no_trips_14d, w.limbo_trips_no_claim, w.limbo_ok
    FROM ops.limbo_snapshot_weeks w
    WHERE w.run_id = p_run_id
    ORDER BY w.week_start;
  END IF;
END
$$;
COMMENT ON FUNCTION ops.limbo_week_counts(bigint) IS
  'Leads per limbo stage per lead week: live from ops.v_cabinet_leads_limbo (p_run_id NULL) or as stored in the snapshot of run p_run_id.';

-- snapshot of sql/ops/ops.firing_limbo_alerts.sql
-- ops.firing_limbo_alerts: the alerts that fire now, in plain words (SPEC 9): the enabled
-- rules of ops.alert_rules evaluated on ops.limbo_alert_metrics. Reads only: the part of
-- ops.check_limbo_alerts that decides, so that its read-only form needs no right to write
-- ops.alerts (a reader may call it: docs/security.md).
--   SELECT * FROM ops.firing_limbo_alerts();
-- p_run_id NULL reads live counts; a run id reads that run's snapshot (see the metrics).
-- Week over week: change_pct = 100 * (last - previous) / previous over the last two
-- complete lead weeks; previous 0 and last 0 is no change; previous 0 and last > 0 is an
-- unbounded rise (fires for '>' and '>=', change_pct NULL). A stale-run rule fires when
-- no COMPLETED run exists at all. min_current_value, when set, must be reached too.
CREATE OR REPLACE FUNCTION ops.firing_limbo_alerts(p_run_id bigint DEFAULT NULL)
RETURNS TABLE (
  rule_code       text,
  severity        text,
  metric          text,
  measure         text,
  comparison      text,
  threshold       numeric,
  current_value   numeric,
  previous_value  numeric,
  change_pct      numeric,
  subject         text,
  message         text
)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH settings AS (
    SELECT canon.setting('business_timezone') AS tz
  ),
  evaluated AS (
    SELECT r.rule_code, r.severity, r.metric, r.measure, r.comparison, r.threshold, r.min_current_value,
           CASE WHEN r.measure = 'WEEK_OVER_WEEK_PCT' THEN m.last_week_value ELSE m.current_value END AS cur,
           CASE WHEN r.measure = 'WEEK_OVER_WEEK_PCT' THEN m.previous_week_value ELSE m.previous_value END AS prev,
           m.previous_run_id, m.last_week, m.previous_week, m.context
    FROM ops.alert_rules r
    JOIN ops.limbo_alert_metrics(p_run_id) m ON m.metric = r.metric
    WHERE r.enabled
  ),
  tested AS (
    SELECT e.*,
           CASE
             WHEN e.measure = 'WEEK_OVER_WEEK_PCT' THEN
               CASE WHEN e.prev = 0 AND e.cur = 0 THEN 0::float8
                    WHEN e.prev = 0 THEN 'Infinity'::float8
                    ELSE ((e.cur - e.prev) * 100 / e.prev)::float8 END
             -- no COMPLETED run at all: infinitely stale
             WHEN e.metric = 'HOURS_SINCE_LAST_COMPLETED_RUN' AND e.cur IS NULL THEN 'Infinity'::float8
             ELSE e.cur::float8
           END AS value_tested,
           CASE e.metric
             WHEN 'LEADS' THEN 'Leads'
             WHEN 'NO_IDENTITY' THEN 'Leads in NO_IDENTITY (no person matched)'
             WHEN 'NO_DRIVER' THEN 'Leads in NO_DRIVER (person without a driver)'
             WHEN 'NO_TRIPS_14D' THEN 'Leads in NO_TRIPS_14D (no trips in the 14-day window)'
             WHEN 'TRIPS_NO_CLAIM' THEN 'Leads in TRIPS_NO_CLAIM (milestone reached, claim missing)'
             WHEN 'OK' THEN 'Leads OK'
             WHEN 'PCT_WITH_IDENTITY' THEN 'Share of leads with an identity'
             WHEN 'PCT_WITH_DRIVER' THEN 'Share of leads with a driver'
             ELSE e.metric
           END AS label,
           CASE WHEN e.metric LIKE 'PCT%' THEN ' %' ELSE '' END AS unit,
           CASE e.comparison
             WHEN '>' THEN 'above' WHEN '>=' THEN 'at or above' WHEN '<' THEN 'below'
             WHEN '<=' THEN 'at or below' ELSE 'equal to'
           END AS word
    FROM evaluated e
  ),
  firing AS (
    SELECT t.*,
           CASE WHEN t.measure = 'WEEK_OVER_WEEK_PCT' THEN 'lead week ' || t.last_week ELSE '' END AS subject,
           CASE
             WHEN t.measure = 'WEEK_OVER_WEEK_PCT' THEN
               CASE WHEN t.value_tested = 'Infinity'::float8 THEN NULL ELSE round(t.value_tested::numeric, 2) END
             WHEN t.prev > 0 THEN round((t.cur - t.prev) * 100 / t.prev, 2)
           END AS change_pct
    FROM tested t
    WHERE t.value_tested IS NOT NULL
      AND CASE t.comparison
            WHEN '>' THEN t.value_tested > t.threshold::float8
            WHEN '>=' THEN t.value_tested >= t.threshold::float8
            WHEN '<' THEN t.value_tested < t.threshold::float8
            WHEN '<=' THEN t.value_tested <= t.threshold::float8
            ELSE t.value_tested = t.threshold::float8
          END
      AND (t.min_current_value IS NULL OR t.cur IS NULL OR t.cur >= t.min_current_value)
  ),
  worded AS (
    SELECT f.*,
      CASE
        WHEN f.measure = 'WEEK_OVER_WEEK_PCT' AND f.prev = 0 THEN
          format('%s of lead week %s: %s, up from 0 in lead week %s (a rise from 0 exceeds any percentage; threshold: change %s %s %%; only complete lead weeks are compared).',
                 f.label, f.last_week, f.cur::float8, f.previous_week, f.word, f.threshold::float8)
        WHEN f.measure = 'WEEK_OVER_WEEK_PCT' THEN
          format('%s of lead week %s: %s, %s %s %% from %s in lead week %s (threshold: change %s %s %%; only complete lead weeks are compared).',
                 f.label, f.last_week, f.cur::float8, CASE WHEN f.change_pct >= 0 THEN 'up' ELSE 'down' END,
                 abs(f.change_pct)::float8, f.prev::float8, f.previous_week, f.word, f.threshold::float8)
        WHEN f.metric = 'HOURS_SINCE_LAST_COMPLETED_RUN' AND f.cur IS NULL THEN
          format('No COMPLETED run yet (threshold: %s hours): run cabinet-leads reconcile or start the worker.', f.threshold::float8)
        WHEN f.metric = 'HOURS_SINCE_LAST_COMPLETED_RUN' THEN
          format('The last COMPLETED run (#%s) finished %s hours ago, at %s (%s): %s the threshold of %s hours; check that the worker or the cron job is running.',
                 f.context->>'run_id', f.cur::float8,
                 to_char((f.context->>'completed_at')::timestamptz AT TIME ZONE s.tz, 'YYYY-MM-DD HH24:MI'), s.tz,
                 f.word, f.threshold::float8)
        WHEN f.metric = 'LAST_RUN_FAILED' THEN
          format('The last run (#%s, finished %s %s) %s: %s. Details: SELECT * FROM canon.ingestion_runs WHERE id = %s;',
                 f.context->>'run_id',
                 to_char((f.context->>'completed_at')::timestamptz AT TIME ZONE s.tz, 'YYYY-MM-DD HH24:MI'), s.tz,
                 f.context->>'status',
                 coalesce(left(split_part(f.context->>'error_message', E'\n', 1), 300), 'no error message'),
                 f.context->>'run_id')
        ELSE
          format('%s: %s%s, %s the threshold of %s%s%s.',
                 f.label, f.cur::float8, f.unit, f.word, f.threshold::float8, f.unit,
                 CASE WHEN f.prev IS NOT NULL
                      THEN format(' (%s%s at the previous snapshot, run #%s)', f.prev::float8, f.unit, f.previous_run_id)
                      ELSE '' END)
      END AS message
    FROM firing f
    CROSS JOIN settings s
  )
  SELECT w.rule_code, w.severity, w.metric, w.measure, w.comparison, w.threshold,
         w.cur, w.prev, w.change_pct, w.subject, w.message
  FROM worded w
  ORDER BY CASE w.severity WHEN 'CRITICAL' THEN 0 ELSE 1 END, w.rule_code, w.subject
$$;
COMMENT ON FUNCTION ops.firing_limbo_alerts(bigint) IS
  'Alerts of ops.alert_rules that fire now (live, or on the snapshot of run p_run_id), with metric, threshold, current and previous value, change_pct and message; reads only. ops.check_limbo_alerts records them.';

-- snapshot of sql/ops/ops.check_limbo_alerts.sql
-- ops.check_limbo_alerts: the alerts that fire (ops.firing_limbo_alerts) with their
-- history in ops.alerts (SPEC 9). Called by the CLI (cabinet-leads alerts), by the worker
-- after each run, at step 8 of each run (through ops.snapshot_limbo, p_run_id = that run),
-- and from psql:
--   SELECT * FROM ops.check_limbo_alerts();
-- p_run_id NULL reads live counts; a run id reads that run's snapshot (see the metrics).
-- With p_record (default) it records the alerts in ops.alerts: a new row the first time a
-- rule fires for a subject (first_seen_at), the same row updated while it keeps firing
-- (last_seen_at, values, times_seen), resolved_at set when it stops firing (also when its
-- rule is disabled or deleted). p_record => false only reads (reports, status, and
-- cabinet_leads_reader, who may not write ops.alerts: that statement is then never run).
-- notified_at is set by the worker when the alert webhook accepted the alert.
CREATE OR REPLACE FUNCTION ops.check_limbo_alerts(p_run_id bigint DEFAULT NULL, p_record boolean DEFAULT true)
RETURNS TABLE (
  rule_code       text,
  severity        text,
  metric          text,
  measure         text,
  comparison      text,
  threshold       numeric,
  current_value   numeric,
  previous_value  numeric,
  change_pct      numeric,
  subject         text,
  message         text,
  first_seen_at   timestamptz,
  last_seen_at    timestamptz,
  is_new          boolean,
  alert_id        bigint,
  notified_at     timestamptz
)
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
  IF p_record IS NOT TRUE THEN
    -- READ ONLY: the open alerts say what is new and what was notified.
    RETURN QUERY
      SELECT f.rule_code, f.severity, f.metric, f.measure, f.comparison, f.threshold,
             f.current_value, f.previous_value, f.change_pct, f.subject, f.message,
             coalesce(o.first_seen_at, now()), now(), o.id IS NULL, o.id, o.notified_at
      FROM ops.firing_limbo_alerts(p_run_id) f
      LEFT JOIN ops.alerts o ON o.rule_code = f.rule_code AND o.subject = f.subject AND o.resolved_at IS NULL
      ORDER BY CASE f.severity WHEN 'CRITICAL' THEN 0 ELSE 1 END, f.rule_code, f.subject;
    RETURN;
  END IF;

  -- RECORD: one statement, so that "opened" is the state before this check.
  RETURN QUERY
    WITH worded AS MATERIALIZED (
      SELECT f.* FROM ops.firing_limbo_alerts(p_run_id) f
    ),
    opened AS (
      SELECT a.id, a.rule_code, a.subject, a.first_seen_at, a.notified_at
      FROM ops.alerts a
      WHERE a.resolved_at IS NULL
    ),
    upserted AS (
      INSERT INTO ops.alerts AS a (
        rule_code, subject, severity, metric, measure, comparison, threshold, first_value, current_value,
        previous_value, change_pct, message, first_seen_at, last_seen_at, first_run_id, last_run_id)
      SELECT w.rule_code, w.subject, w.severity, w.metric, w.measure, w.comparison, w.threshold, w.current_value,
             w.current_value, w.previous_value, w.change_pct, w.message, now(), now(), p_run_id, p_run_id
      FROM worded w
      ON CONFLICT (rule_code, subject) WHERE resolved_at IS NULL
      DO UPDATE SET severity = EXCLUDED.severity,
                    metric = EXCLUDED.metric,
                    measure = EXCLUDED.measure,
                    comparison = EXCLUDED.comparison,
                    threshold = EXCLUDED.threshold,
                    current_value = EXCLUDED.current_value,
                    previous_value = EXCLUDED.previous_value,
                    change_pct = EXCLUDED.change_pct,
                    message = EXCLUDED.message,
                    last_seen_at = greatest(a.last_seen_at, EXCLUDED.last_seen_at),
                    last_run_id = coalesce(EXCLUDED.last_run_id, a.last_run_id),
                    times_seen = a.times_seen + 1
      RETURNING a.id, a.rule_code, a.subject, a.first_seen_at, a.last_seen_at
    ),
    resolved AS (
      UPDATE ops.alerts a
      SET resolved_at = greatest(now(), a.last_seen_at)
      WHERE a.resolved_at IS NULL
        AND NOT EXISTS (SELECT 1 FROM worded w WHERE w.rule_code = a.rule_code AND w.subject = a.subject)
      RETURNING a.id
    )
    SELECT w.rule_code, w.severity, w.metric, w.measure, w.comparison, w.threshold,
           w.current_value, w.previous_value, w.change_pct, w.subject, w.message,
           coalesce(u.first_seen_at, o.first_seen_at, now()),
           coalesce(u.last_seen_at, now()),
           o.id IS NULL,
           coalesce(u.id, o.id),
           o.notified_at
    FROM worded w
    LEFT JOIN opened o ON o.rule_code = w.rule_code AND o.subject = w.subject
    LEFT JOIN upserted u ON u.rule_code = w.rule_code AND u.subject = w.subject
    ORDER BY CASE w.severity WHEN 'CRITICAL' THEN 0 ELSE 1 END, w.rule_code, w.subject;
END
$$;
COMMENT ON FUNCTION ops.check_limbo_alerts(bigint, boolean) IS
  'Firing alerts of ops.alert_rules (rule_code, metric, threshold, current and previous value, change_pct, message, first/last seen, is_new, notified_at). Records them in ops.alerts unless p_record => false (read only: what cabinet_leads_reader may call). SELECT * FROM ops.check_limbo_alerts();';

-- snapshot of sql/ops/ops.explain_lead.sql
-- ops.explain_lead: "why is this lead (not) matched?" for one lead key: its normalised
-- keys, its current state (link or unmatched row), every candidate with rule, score and
-- why it was kept or rejected, and the decision the matcher would take now.
--   SELECT jsonb_pretty(ops.explain_lead('9f3a...'));
-- It keys the lead's rows first (canon.lead_keys), so it works on leads never run yet;
-- candidates come from the driver index as of its last refresh (shown in the result).
-- SECURITY DEFINER (its owner's rights, a fixed search_path, every name qualified): a
-- cabinet_leads_reader may call it, who may neither read the canon tables nor write the
-- lead keys it refreshes; the keys are a cache of the lead row (what the next run writes
-- anyway), and the lead key is only ever compared, never run as SQL. EXECUTE is granted
-- to the product's roles only (canon.grant_product_roles).
CREATE OR REPLACE FUNCTION ops.explain_lead(p_lead_source_pk text)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_ids integer[];
  v_rep integer;
  v_decision record;
  v_result jsonb;
BEGIN
  SELECT array_agg(l.id ORDER BY l.id) INTO v_ids
  FROM public.module_ct_cabinet_leads l
  WHERE canon.lead_source_pk(l.external_id, l.id) = p_lead_source_pk;
  IF v_ids IS NULL THEN
    RAISE EXCEPTION 'unknown lead %: no row of public.module_ct_cabinet_leads has this lead_source_pk', quote_literal(coalesce(p_lead_source_pk, 'NULL'))
      USING ERRCODE = 'P0002';
  END IF;
  v_rep := v_ids[1];
  PERFORM canon.refresh_lead_keys(v_ids);
  SELECT * INTO v_decision FROM canon.lead_decisions(ARRAY[v_rep]);

  SELECT jsonb_build_object(
    'lead_source_pk', p_lead_source_pk,
    'lead_rows', to_jsonb(v_ids),
    'driver_index_refreshed_at', (SELECT st.last_refresh_at FROM canon.driver_index_state st),
    'keys', (SELECT jsonb_build_object('lead_date', k.lead_date, 'lead_name', k.lead_name, 'phone_norm', k.phone_norm,
                                       'plate_norm', k.plate_norm, 'license_norm', k.license_norm, 'name_norm', k.name_norm)
             FROM canon.lead_keys k WHERE k.lead_id = v_rep),
    'link', (SELECT jsonb_build_object('person_key', k.person_key, 'match_rule', k.match_rule, 'match_score', k.match_score,
                                       'linked_at', k.linked_at, 'run_id', k.run_id,
                                       'driver_id', (SELECT pd.driver_id FROM canon.v_person_driver pd WHERE pd.person_key = k.person_key))
             FROM canon.identity_links k
             WHERE k.source_table = 'module_ct_cabinet_leads' AND k.source_pk = p_lead_source_pk),
    'unmatched', (SELECT jsonb_build_object('reason_code', u.reason_code, 'status', u.status, 'attempts', u.attempts,
                                            'first_attempt_at', u.first_attempt_at, 'last_attempt_at', u.last_attempt_at,
                                            'note', u.note)
                  FROM canon.identity_unmatched u
                  WHERE u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = p_lead_source_pk),
    'decision_now', jsonb_build_object('decision', v_decision.decision, 'driver_id', v_decision.driver_id,
                                       'match_rule', v_decision.match_rule, 'match_score', v_decision.match_score,
                                       'confidence_level', v_decision.confidence_level, 'evidence', v_decision.evidence),
    'candidates', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                      'driver_id', c.driver_id, 'park_id', c.park_id, 'in_target_park', c.in_target_park,
                      'rule', c.rule, 'score', c.score, 'name_similarity', c.name_similarity,
                      'hire_date', c.hire_date, 'hire_in_window', c.hire_in_window,
                      'kept', c.kept, 'reject_reason', c.reject_reason, 'name_veto', c.name_veto)
                    ORDER BY c.kept DESC, c.score DESC, c.name_similarity DESC, c.driver_id), '[]'::jsonb)
                   FROM canon.lead_candidates(ARRAY[v_rep]) c),
    'explanation', CASE v_decision.decision
      WHEN 'MATCH' THEN format('Matches driver %s by %s (score %s).', v_decision.driver_id, v_decision.match_rule, v_decision.match_score)
      WHEN 'MISSING_KEYS' THEN 'No usable phone, plate or licence: nothing to match on; fix the lead data or resolve it by hand (ops.resolve_lead).'
      WHEN 'SHARED_KEY' THEN 'Its only key is a phone shared by several people (an office phone): not evidence; needs a plate or a manual resolution.'
      WHEN 'WEAK_MATCH_ONLY' THEN 'Its plate is known but no driver of that plate has a similar name (>= 0.66), or the similar one differs by a given name or a surname (a relative: name_veto): check the candidates and resolve by hand if one is right.'
      WHEN 'AMBIGUOUS' THEN 'Several drivers fit equally well: never resolved automatically; pick one with ops.resolve_lead.'
      WHEN 'CONFLICT' THEN 'Different rules point to different drivers: check the candidates and resolve by hand.'
      ELSE 'No driver has its phone or plate yet: it is retried every run (new drivers arrive daily).'
    END)
  INTO v_result;
  RETURN v_result;
END
$$;
COMMENT ON FUNCTION ops.explain_lead(text) IS 'Why a lead is (not) matched: normalised keys, state, every candidate with rule, score, kept or reject reason, and the decision now. SECURITY DEFINER: readers may call it.';

-- snapshot of sql/ops/ops.job_lock_holders.sql
-- ops.job_lock_holders: who holds the job lock (the advisory lock
-- (hashtext('cabinet_leads'), hashtext('reconcile_cabinet_leads_pipeline')) that keeps
-- runs from overlapping), since when, and whether longer than a run can last (setting
-- job_lock_held_max_minutes). Any session of the database may take that lock (psql,
-- a hung client); while it holds it every run is SKIPPED. Read by `status`, `doctor`
-- (JOB_LOCK_HELD_TOO_LONG) and the log line of a SKIPPED run:
--   SELECT * FROM ops.job_lock_holders();
--   SELECT pg_terminate_backend(pid) FROM ops.job_lock_holders() WHERE too_long;  -- frees it
-- held_since: the start of the holder's run when it runs one of ours. Any other session:
-- the start of its open transaction, else when it went idle (a session lock was taken by
-- then), or, when earlier (or its activity is not visible), the start of the oldest
-- SKIPPED run since the last run that got the lock: since then the job has been kept out.
-- SECURITY DEFINER: pg_stat_activity shows the times of other roles' sessions to its
-- owner only (a superuser, or a member of pg_read_all_stats, sees all).
CREATE OR REPLACE FUNCTION ops.job_lock_holders()
RETURNS TABLE (
  pid               integer,
  usename           text,
  application_name  text,
  client_addr       text,
  state             text,
  run_id            bigint,
  held_since        timestamptz,
  held_for          interval,
  too_long          boolean
)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  WITH params AS (
    SELECT make_interval(mins => canon.setting('job_lock_held_max_minutes')::integer) AS max_held
  ),
  holders AS (
    SELECT l.pid
    FROM pg_catalog.pg_locks l
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
      AND l.classid = hashtext('cabinet_leads')::oid
      AND l.objid = hashtext('reconcile_cabinet_leads_pipeline')::oid
      AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = current_database())
  ),
  -- Runs kept out since: the oldest SKIPPED run after the last run that got the lock.
  skipping AS (
    SELECT min(r.started_at) AS since
    FROM canon.ingestion_runs r
    WHERE r.job_name = 'reconcile_cabinet_leads_pipeline' AND r.status = 'SKIPPED'
      AND r.id > coalesce((SELECT max(x.id) FROM canon.ingestion_runs x
                           WHERE x.job_name = 'reconcile_cabinet_leads_pipeline' AND x.status IN ('COMPLETED', 'FAILED', 'RUNNING')), 0)
  ),
  described AS (
    SELECT h.pid, a.usename::text AS usename, a.application_name, host(a.client_addr) AS client_addr, a.state, r.id AS run_id,
           coalesce(r.started_at, least(coalesce(a.xact_start, a.state_change), (SELECT s.since FROM skipping s))) AS held_since
    FROM holders h
    LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = h.pid
    LEFT JOIN LATERAL (
      SELECT x.id, x.started_at
      FROM canon.ingestion_runs x
      WHERE x.status = 'RUNNING' AND x.backend_pid = h.pid
        AND (x.backend_start IS NULL OR a.backend_start IS NULL OR x.backend_start = a.backend_start)
      ORDER BY x.id DESC
      LIMIT 1) r ON true
  )
  SELECT d.pid, d.usename, d.application_name, d.client_addr, d.state, d.run_id, d.held_since,
         date_trunc('second', now() - d.held_since), now() - d.held_since > p.max_held
  FROM described d
  CROSS JOIN params p
  ORDER BY d.held_since NULLS LAST, d.pid
$$;
COMMENT ON FUNCTION ops.job_lock_holders() IS
  'Sessions holding the job lock (every run is SKIPPED meanwhile): pid, user, application_name, state, the run it runs (if ours), held since, for how long, and too_long (over setting job_lock_held_max_minutes; free it with pg_terminate_backend(pid)).';

-- snapshot of sql/ops/ops.worker_jobs_locked.sql
-- ops.worker_jobs_locked: graphile-worker jobs and queues locked by a worker, and whether
-- longer than a run can last (setting job_lock_held_max_minutes). A worker killed with
-- kill -9 (or a host lost) leaves its job and the job's serial queue locked (locked_by =
-- that worker pool's id) until graphile-worker's own reset, 4 hours later; no run of the
-- queue starts meanwhile. Read by `doctor` (WORKER_JOB_LOCKED_TOO_LONG); unlock with
-- graphile-worker's own function (docs/operations.md):
--   SELECT graphile_worker.force_unlock_workers(ARRAY(
--     SELECT DISTINCT locked_by FROM ops.worker_jobs_locked() WHERE too_long));
-- Empty while graphile-worker's schema is not installed (cabinet-leads migrate installs
-- it); its tables are named dynamically so that this function exists before them.
CREATE OR REPLACE FUNCTION ops.worker_jobs_locked()
RETURNS TABLE (
  kind        text,
  id          bigint,
  name        text,
  locked_by   text,
  locked_at   timestamptz,
  locked_for  interval,
  too_long    boolean
)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF to_regclass('graphile_worker._private_jobs') IS NULL OR to_regclass('graphile_worker._private_job_queues') IS NULL
     OR to_regclass('graphile_worker._private_tasks') IS NULL THEN
    RETURN;
  END IF;
  RETURN QUERY EXECUTE $q$
    WITH locked AS (
      SELECT 'JOB'::text AS kind, j.id::bigint AS id, t.identifier::text AS name, j.locked_by::text AS locked_by, j.locked_at
      FROM graphile_worker._private_jobs j
      JOIN graphile_worker._private_tasks t ON t.id = j.task_id
      WHERE j.locked_at IS NOT NULL
      UNION ALL
      SELECT 'QUEUE', q.id::bigint, q.queue_name::text, q.locked_by::text, q.locked_at
      FROM graphile_worker._private_job_queues q
      WHERE q.locked_at IS NOT NULL
    )
    SELECT l.kind, l.id, l.name, l.locked_by, l.locked_at, date_trunc('second', now() - l.locked_at),
           now() - l.locked_at > make_interval(mins => canon.setting('job_lock_held_max_minutes')::integer)
    FROM locked l
    ORDER BY l.locked_at, l.kind, l.id
  $q$;
END
$$;
COMMENT ON FUNCTION ops.worker_jobs_locked() IS
  'graphile-worker jobs and queues locked by a worker (kind, id, task or queue name, locked_by, locked_at, for how long, too_long over setting job_lock_held_max_minutes); unlock a dead worker''s with graphile_worker.force_unlock_workers(ARRAY[locked_by]).';

-- snapshot of sql/ops/ops.check_invariants.sql
-- ops.check_invariants: every invariant of the spec with its number of violations (0 =
-- holds) and up to 5 examples. Also `cabinet-leads doctor`, which exits 1 when any
-- invariant is violated, and the last statement of every reliability test. Read-only;
-- safe to run at any time, also while a run is in progress.
--   SELECT * FROM ops.check_invariants() WHERE violations > 0;
-- The caches (ord 10-19) are checked by ops.check_caches.
CREATE OR REPLACE FUNCTION ops.check_invariants()
RETURNS TABLE (invariant text, violations bigint, examples jsonb, description text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH orphan AS (
    SELECT p.person_key::text AS example
    FROM canon.identity_registry p
    WHERE NOT EXISTS (SELECT 1 FROM canon.identity_links l WHERE l.person_key = p.person_key)
  ),
  linked_open AS (
    SELECT l.source_pk AS example
    FROM canon.identity_links l
    JOIN canon.identity_unmatched u
      ON u.source_table = l.source_table AND u.source_pk = l.source_pk AND u.status = 'OPEN'
  ),
  driver_twice AS (
    SELECT format('%s (%s links)', l.source_pk, count(*)) AS example
    FROM canon.identity_links l
    WHERE l.source_table = 'drivers'
    GROUP BY l.source_pk
    HAVING count(*) > 1
  ),
  -- The same test as canon.mark_abandoned_runs (backend gone, or no longer in that run's
  -- CALL), plus runs RUNNING for over 2 hours.
  stuck AS (
    SELECT format('run %s (backend %s, started %s)', r.id, r.backend_pid, r.started_at) AS example
    FROM canon.ingestion_runs r
    WHERE r.status = 'RUNNING'
      AND (r.started_at < now() - interval '2 hours'
           OR NOT EXISTS (
             SELECT 1
             FROM pg_stat_activity a
             WHERE a.pid = r.backend_pid
               AND (r.backend_start IS NULL OR a.backend_start IS NULL OR a.backend_start = r.backend_start)
               AND (a.state IS NULL OR (a.state = 'active' AND a.query_start <= r.started_at))))
  ),
  limbo_mismatch AS (
    SELECT format('lead id %s: %s limbo rows%s', coalesce(l.id, v.lead_id), coalesce(v.n, 0),
                  CASE WHEN l.id IS NULL THEN ' (not a lead with lead_created_at)' ELSE '' END) AS example
    FROM (SELECT s.id FROM public.module_ct_cabinet_leads s WHERE isfinite(s.lead_created_at)) l
    FULL JOIN (SELECT lv.lead_id, count(*) AS n FROM ops.v_cabinet_leads_limbo lv GROUP BY lv.lead_id) v
      ON v.lead_id = l.id
    WHERE l.id IS NULL OR v.lead_id IS NULL OR v.n <> 1
  ),
  settled_guard AS (
    SELECT format('trigger %s %s', w.tgname, CASE WHEN t.tgname IS NULL THEN 'missing' ELSE 'disabled' END) AS example
    FROM (VALUES ('claims_protect_settled'), ('claims_record_settled_insert'), ('claims_record_settled_update'),
                 ('claims_record_settled_delete'), ('claims_record_settled_truncate')) w (tgname)
    LEFT JOIN pg_trigger t
      ON t.tgrelid = 'canon.claims_yango_cabinet_14d'::regclass AND t.tgname = w.tgname
    WHERE t.tgname IS NULL OR t.tgenabled NOT IN ('O', 'A')
  ),
  -- A settled claim that differs from its record, or is gone, or was settled unrecorded:
  -- it was changed while the guard was off (the guard and the record cannot be bypassed
  -- otherwise).
  settled_changed AS (
    SELECT format('%s M%s %s', coalesce(c.lead_source_pk, s.lead_source_pk), coalesce(c.milestone, s.milestone),
                  CASE WHEN c.lead_source_pk IS NULL THEN format('deleted (was %s)', s.status)
                       WHEN s.lead_source_pk IS NULL THEN format('%s but never recorded', c.status)
                       ELSE format('changed (recorded %s %s, now %s %s)', s.status, s.amount_expected, c.status, c.amount_expected)
                  END) AS example
    FROM (SELECT * FROM canon.claims_yango_cabinet_14d x WHERE x.status IN ('paid', 'rejected')) c
    FULL JOIN (SELECT * FROM canon.claims_settled r WHERE r.unsettled_at IS NULL) s
      ON s.lead_source_pk = c.lead_source_pk AND s.milestone = c.milestone
    WHERE c.lead_source_pk IS NULL
       OR s.lead_source_pk IS NULL
       OR (c.status, c.amount_expected, c.currency, c.person_key, c.driver_id, c.lead_date, c.generated_at, c.paid_at, c.run_id)
          IS DISTINCT FROM
          (s.status, s.amount_expected, s.currency, s.person_key, s.driver_id, s.lead_date, s.generated_at, s.paid_at, s.run_id)
  ),
  -- The counters of the stored lead state (kept by a trigger, read by the scope figures
  -- and the snapshots) against a count of the rows themselves.
  state_counts AS (
    SELECT format('%s %s identity=%s driver=%s trips=%s rule=%s: counted %s, stored %s',
                  lead_date, limbo_stage, with_identity::text, with_driver::text, with_trips::text, with_rule::text,
                  coalesce(c.leads, 0), coalesce(s.leads, 0)) AS example
    FROM canon.cabinet_lead_state_counts c
    FULL JOIN (SELECT x.lead_date, x.limbo_stage, x.person_key IS NOT NULL AS with_identity,
                      x.driver_id IS NOT NULL AS with_driver, x.trips_in_window > 0 AS with_trips,
                      x.window_days IS NOT NULL AS with_rule, count(*) AS leads
               FROM canon.cabinet_lead_state x
               GROUP BY 1, 2, 3, 4, 5, 6) s
      USING (lead_date, limbo_stage, with_identity, with_driver, with_trips, with_rule)
    WHERE coalesce(c.leads, 0) <> coalesce(s.leads, 0)
  ),
  -- A settled claim deleted or moved back to an unsettled status (its record stays,
  -- stamped by the trigger) with no note saying why: money that may have vanished by
  -- mistake, e.g. deleted by a statement that read it before finance settled it.
  settled_removed AS (
    SELECT format('%s M%s %s %s %s: %s at %s by %s (txid %s), no note', s.lead_source_pk, s.milestone, s.status,
                  s.amount_expected, s.currency,
                  CASE WHEN s.unsettled_to = 'deleted' THEN 'deleted' ELSE 'changed to ' || s.unsettled_to END,
                  date_trunc('second', s.unsettled_at), s.unsettled_by, s.unsettled_txid) AS example
    FROM canon.claims_settled s
    WHERE s.unsettled_at IS NOT NULL AND s.unsettled_note IS NULL
  ),
  -- Lead keys stored with blanks at their ends, or of blanks only: canon.lead_source_pk
  -- never makes them (written under an older definition, or by hand). Beside a twin (the
  -- same key without its blanks) one lead is counted, linked and claimed twice.
  lead_key_blanks AS (
    SELECT format('%s is %s%s (in %s)', canon.show_blanks(x.lead_key),
                  CASE WHEN x.trimmed IS NULL THEN 'blank' ELSE 'lead ' || canon.show_blanks(x.trimmed) END,
                  CASE WHEN x.keys > 1 THEN format(': one lead under %s keys', x.keys) ELSE '' END,
                  x.stored_in) AS example
    FROM (SELECT s.lead_key, s.stored_in, t.trimmed,
                 CASE WHEN t.trimmed IS NOT NULL
                      THEN count(*) OVER (PARTITION BY t.trimmed)
                           + (EXISTS (SELECT 1 FROM canon.identity_links l
                                      WHERE l.source_table = 'module_ct_cabinet_leads' AND l.source_pk = t.trimmed)
                              OR EXISTS (SELECT 1 FROM canon.claims_yango_cabinet_14d c WHERE c.lead_source_pk = t.trimmed)
                              OR EXISTS (SELECT 1 FROM canon.lead_keys k WHERE k.lead_source_pk = t.trimmed))::int
                 END AS keys
          FROM (
            SELECT b.lead_key, string_agg(b.stored_in, ', ' ORDER BY b.stored_in) AS stored_in
            FROM (
              SELECT DISTINCT 'identity_links' AS stored_in, l.source_pk AS lead_key FROM canon.identity_links l
              WHERE l.source_table = 'module_ct_cabinet_leads' AND canon.lead_source_pk(l.source_pk, NULL) IS DISTINCT FROM l.source_pk
              UNION ALL
              SELECT DISTINCT 'identity_unmatched', u.source_pk FROM canon.identity_unmatched u
              WHERE canon.lead_source_pk(u.source_pk, NULL) IS DISTINCT FROM u.source_pk
              UNION ALL
              SELECT DISTINCT 'identity_origin', o.origin_source_id FROM canon.identity_origin o
              WHERE canon.lead_source_pk(o.origin_source_id, NULL) IS DISTINCT FROM o.origin_source_id
              UNION ALL
              SELECT DISTINCT 'claims_yango_cabinet_14d', c.lead_source_pk FROM canon.claims_yango_cabinet_14d c
              WHERE canon.lead_source_pk(c.lead_source_pk, NULL) IS DISTINCT FROM c.lead_source_pk
              UNION ALL
              -- (the record of a claim deleted or unsettled is history: it keeps the key it had)
              SELECT DISTINCT 'claims_settled', s.lead_source_pk FROM canon.claims_settled s
              WHERE s.unsettled_at IS NULL AND canon.lead_source_pk(s.lead_source_pk, NULL) IS DISTINCT FROM s.lead_source_pk
              UNION ALL
              SELECT DISTINCT 'lead_keys', k.lead_source_pk FROM canon.lead_keys k
              WHERE canon.lead_source_pk(k.lead_source_pk, NULL) IS DISTINCT FROM k.lead_source_pk
              UNION ALL
              SELECT DISTINCT 'cabinet_lead_state', s.lead_source_pk FROM canon.cabinet_lead_state s
              WHERE canon.lead_source_pk(s.lead_source_pk, NULL) IS DISTINCT FROM s.lead_source_pk
            ) b
            GROUP BY b.lead_key
          ) s
          CROSS JOIN LATERAL (SELECT canon.lead_source_pk(s.lead_key, NULL) AS trimmed) t
    ) x
  ),
  -- Settings a run would fail on: a stored value invalid for its type (written while the
  -- trigger was off, or a time zone the server no longer knows), or a setting some canon
  -- or ops function reads through canon.setting that is missing.
  settings_invalid AS (
    SELECT format('%s = %s: %s', s.key, quote_nullable(s.value), p.problem) AS example
    FROM canon.settings s
    CROSS JOIN LATERAL (SELECT canon.setting_problem(s.value, s.value_type, s.min_value, s.max_value) AS problem) p
    WHERE p.problem IS NOT NULL
    UNION ALL
    SELECT format('%s missing (read by %s)', r.key, string_agg(DISTINCT r.reader, ', '))
    FROM (SELECT m[1] AS key, f.oid::regproc::text AS reader
          FROM pg_proc f
          CROSS JOIN LATERAL regexp_matches(f.prosrc, 'canon\.setting\(''([^'']+)''\)', 'g') m
          WHERE f.pronamespace IN ('canon'::regnamespace, 'ops'::regnamespace)) r
    WHERE NOT EXISTS (SELECT 1 FROM canon.settings s WHERE s.key = r.key)
    GROUP BY r.key
  ),
  settings_guard AS (
    SELECT format('trigger %s %s', w.tgname, CASE WHEN t.tgname IS NULL THEN 'missing' ELSE 'disabled' END) AS example
    FROM (VALUES ('settings_validate'), ('settings_no_truncate')) w (tgname)
    LEFT JOIN pg_trigger t
      ON t.tgrelid = 'canon.settings'::regclass AND t.tgname = w.tgname
    WHERE t.tgname IS NULL OR t.tgenabled NOT IN ('O', 'A')
  ),
  -- The token counts the relatives veto reads (canon.name_token_usage) against their live
  -- definition: every token of the stored name roles counted again (a pass over the roles).
  name_token_stats_drift AS (
    SELECT format('%s: counted given %s surname %s, stored given %s surname %s', coalesce(v.token, c.token),
                  coalesce(v.as_given, 0), coalesce(v.as_surname, 0), coalesce(c.as_given, 0), coalesce(c.as_surname, 0)) AS example
    FROM canon.name_token_stats c
    FULL JOIN canon.v_name_token_stats v ON v.token = c.token
    WHERE (coalesce(c.as_given, 0), coalesce(c.as_surname, 0)) IS DISTINCT FROM (coalesce(v.as_given, 0), coalesce(v.as_surname, 0))
  ),
  -- The name roles: one row per index row, written with it (in full); their tokens against
  -- the source row the index holds for the 1,000 drivers indexed last and every 64th driver
  -- (bounded: splitting every driver's fields is ~10 s at 1M; docs/operations.md).
  driver_name_roles_drift AS (
    SELECT format('driver %s: %s', coalesce(i.driver_id, r.driver_id),
                  CASE WHEN r.driver_id IS NULL THEN 'indexed without name roles'
                       WHEN i.driver_id IS NULL THEN 'name roles of a driver not indexed'
                       ELSE 'name roles not written with its index row' END) AS example
    FROM canon.driver_index i
    FULL JOIN canon.driver_name_roles r ON r.driver_id = i.driver_id
    WHERE i.driver_id IS NULL OR r.driver_id IS NULL OR r.indexed_at <> i.indexed_at
    UNION ALL
    SELECT format('driver %s: name roles %s / %s, source %s / %s', r.driver_id,
                  coalesce(r.given_names::text, '-'), coalesce(r.surnames::text, '-'),
                  coalesce(v.given_names::text, '-'), coalesce(v.surnames::text, '-'))
    FROM canon.driver_name_roles_live(ARRAY(
           SELECT x.driver_id FROM canon.driver_index x WHERE abs(hashtext(x.driver_id)) % 64 = 0
           UNION
           (SELECT x.driver_id FROM canon.driver_index x ORDER BY x.indexed_at DESC LIMIT 1000))) v
    JOIN canon.driver_name_roles r ON r.driver_id = v.driver_id
    WHERE v.source_indexed
      AND (r.given_names, r.surnames) IS DISTINCT FROM (v.given_names, v.surnames)
  ),
  -- The job lock held longer than a run can last (ops.job_lock_holders): every run is
  -- SKIPPED meanwhile, with exit code 0. Freed by ending the holder's session.
  job_lock_held AS (
    SELECT format('pid %s (%s) holds it since %s UTC (%s): SELECT pg_terminate_backend(%s);',
                  h.pid,
                  concat_ws(', ', nullif(h.application_name, ''), 'user ' || h.usename, h.state, 'run ' || h.run_id),
                  to_char(h.held_since AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), h.held_for, h.pid) AS example
    FROM ops.job_lock_holders() h
    WHERE h.too_long
  ),
  -- graphile-worker jobs and queues locked longer than a run can last (a worker killed
  -- with kill -9): no run of the queue starts until graphile-worker's 4-hour reset.
  worker_locked AS (
    SELECT format('%s %s (%s) locked by %s since %s UTC (%s): SELECT graphile_worker.force_unlock_workers(ARRAY[%L]);',
                  w.kind, w.id, w.name, w.locked_by, to_char(w.locked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'),
                  w.locked_for, w.locked_by) AS example
    FROM ops.worker_jobs_locked() w
    WHERE w.too_long
  ),
  checks (ord, invariant, description, examples, n) AS (
    SELECT 1, 'ORPHAN_PERSON', 'persons in canon.identity_registry without any identity link',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM orphan ORDER BY example LIMIT 5) x), (SELECT count(*) FROM orphan)
    UNION ALL
    SELECT 2, 'LEAD_LINKED_AND_OPEN', 'leads both linked and OPEN in canon.identity_unmatched',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM linked_open ORDER BY example LIMIT 5) x), (SELECT count(*) FROM linked_open)
    UNION ALL
    SELECT 3, 'DRIVER_LINKED_TWICE', 'drivers with more than one identity link (a driver belongs to at most one person)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM driver_twice ORDER BY example LIMIT 5) x), (SELECT count(*) FROM driver_twice)
    UNION ALL
    SELECT 4, 'RUN_STUCK_RUNNING', 'runs RUNNING whose backend is gone, or for over 2 hours (the next run marks the former FAILED, abandoned)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM stuck ORDER BY example LIMIT 5) x), (SELECT count(*) FROM stuck)
    UNION ALL
    SELECT 5, 'LIMBO_ROW_COUNT', 'ops.v_cabinet_leads_limbo must have exactly one row per dated lead (a finite lead_created_at)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM limbo_mismatch ORDER BY example LIMIT 5) x), (SELECT count(*) FROM limbo_mismatch)
    UNION ALL
    SELECT 6, 'SETTLED_CLAIM_UNGUARDED', 'the triggers that keep pipeline runs off paid and rejected claims, and record them, must exist and be enabled',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM settled_guard ORDER BY example LIMIT 5) x), (SELECT count(*) FROM settled_guard)
    UNION ALL
    SELECT 7, 'SETTLED_CLAIM_CHANGED', 'paid or rejected claims that differ from canon.claims_settled (changed, deleted or settled while the guard was off)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM settled_changed ORDER BY example LIMIT 5) x), (SELECT count(*) FROM settled_changed)
    UNION ALL
    SELECT 8, 'LEAD_STATE_COUNTS', 'canon.cabinet_lead_state_counts must count the stored lead state rows (by lead date, stage and flags)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM state_counts ORDER BY example LIMIT 5) x), (SELECT count(*) FROM state_counts)
    UNION ALL
    -- 10-19: each cache against its live definition
    SELECT x.ord, x.invariant, x.description, x.examples, x.violations FROM ops.check_caches() x
    UNION ALL
    SELECT 20, 'SETTLED_CLAIM_REMOVED', 'paid or rejected claims deleted, or moved back to an unsettled status, with no note saying why (their record in canon.claims_settled stays, stamped unsettled_*)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM settled_removed ORDER BY example LIMIT 5) x), (SELECT count(*) FROM settled_removed)
    UNION ALL
    SELECT 30, 'LEAD_KEY_BLANK_ENDS', 'lead keys stored with blanks at their ends, or of blanks only, which canon.lead_source_pk never makes: next to the same key without them, one lead is linked and claimed twice (repair: ops.repair_lead_keys)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM lead_key_blanks ORDER BY example LIMIT 5) x), (SELECT count(*) FROM lead_key_blanks)
    UNION ALL
    SELECT 40, 'SETTING_INVALID', 'settings of canon.settings invalid for their value_type (every run would fail on them), or read by the product and missing',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM settings_invalid ORDER BY example LIMIT 5) x), (SELECT count(*) FROM settings_invalid)
    UNION ALL
    SELECT 41, 'SETTING_UNGUARDED', 'the triggers that refuse an invalid setting where it is written must exist and be enabled',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM settings_guard ORDER BY example LIMIT 5) x), (SELECT count(*) FROM settings_guard)
    UNION ALL
    SELECT 50, 'NAME_TOKEN_STATS', 'canon.name_token_stats must count the stored name roles per token (canon.v_name_token_stats)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM name_token_stats_drift ORDER BY example LIMIT 5) x), (SELECT count(*) FROM name_token_stats_drift)
    UNION ALL
    SELECT 51, 'DRIVER_NAME_ROLES', 'canon.driver_name_roles must hold one row per driver index row, written with it, with the name fields of its source row (canon.v_driver_name_roles; content checked on the 1,000 drivers indexed last and every 64th)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM driver_name_roles_drift ORDER BY example LIMIT 5) x), (SELECT count(*) FROM driver_name_roles_drift)
    UNION ALL
    SELECT 60, 'JOB_LOCK_HELD_TOO_LONG', 'sessions holding the job lock for longer than a run can last (setting job_lock_held_max_minutes): every run is SKIPPED meanwhile (ops.job_lock_holders; free it with pg_terminate_backend)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM job_lock_held ORDER BY example LIMIT 5) x), (SELECT count(*) FROM job_lock_held)
    UNION ALL
    SELECT 61, 'WORKER_JOB_LOCKED_TOO_LONG', 'graphile-worker jobs and queues locked for longer than a run can last (setting job_lock_held_max_minutes), by a worker that was killed: no run of the queue starts until they are unlocked (ops.worker_jobs_locked; graphile_worker.force_unlock_workers)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM worker_locked ORDER BY example LIMIT 5) x), (SELECT count(*) FROM worker_locked)
  )
  SELECT c.invariant, c.n, coalesce(c.examples, '[]'::jsonb), c.description FROM checks c ORDER BY c.ord
$$;
COMMENT ON FUNCTION ops.check_invariants() IS
  'Every spec invariant with its violation count (0 = holds) and up to 5 examples: SELECT * FROM ops.check_invariants() WHERE violations > 0; cabinet-leads doctor exits 1 when any is violated.';

-- snapshot of migrations/parts/0032_roles_and_lock_setting.sql
-- How long the job lock, or a graphile-worker job's lock, may be held before status and
-- doctor name the holder (ops.job_lock_holders, ops.worker_jobs_locked): longer than a
-- run can last. A run's statement_timeout is 15 min by default (--timeout); an hour
-- leaves room for a longer backfill run and is still well before the 2-hour alert.
INSERT INTO canon.settings (key, value, description, value_type, min_value, max_value) VALUES
  ('job_lock_held_max_minutes', '60',
   'Minutes after which a session holding the job lock, or a graphile-worker job or queue still locked, is longer than a run can last: status and doctor name it (JOB_LOCK_HELD_TOO_LONG, WORKER_JOB_LOCKED_TOO_LONG).',
   'INTEGER', 1, 10080)
ON CONFLICT DO NOTHING;

-- The product's roles, cabinet_leads_job and cabinet_leads_reader (NOLOGIN), and their
-- rights: created when the migrating role may create roles; otherwise the migration still
-- applies and `cabinet-leads migrate` prints the SQL a DBA must run (docs/security.md).
SELECT canon.grant_product_roles();
