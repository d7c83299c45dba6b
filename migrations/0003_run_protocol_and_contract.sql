-- Up Migration
-- snapshot of sql/canon/canon.setting.sql
-- canon.setting: the value of one product setting (canon.settings), for SQL that
-- must agree with the job (target park, business time zone). Raises on unknown keys.
CREATE OR REPLACE FUNCTION canon.setting(p_key text)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_value text;
BEGIN
  SELECT s.value INTO v_value FROM canon.settings s WHERE s.key = p_key;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'unknown setting "%": known settings are listed in canon.settings', p_key
      USING ERRCODE = '22023';
  END IF;
  RETURN v_value;
END
$$;
COMMENT ON FUNCTION canon.setting(text) IS 'Value of a product setting from canon.settings; raises on an unknown key.';

-- snapshot of sql/canon/canon.business_today.sql
-- canon.business_today: "today" in the business time zone (setting business_timezone,
-- default America/Lima), never the server's. Every window, scope and alert uses it.
CREATE OR REPLACE FUNCTION canon.business_today()
RETURNS date
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT (now() AT TIME ZONE canon.setting('business_timezone'))::date
$$;
COMMENT ON FUNCTION canon.business_today() IS 'Current date in the business time zone (canon.settings.business_timezone).';

-- snapshot of sql/canon/canon.lead_source_pk.sql
-- canon.lead_source_pk: the one definition of a cabinet lead's key, used by every
-- link, claim, view and tool: the trimmed external_id, or the integer id as text.
CREATE OR REPLACE FUNCTION canon.lead_source_pk(p_external_id text, p_id integer)
RETURNS text
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
  SELECT COALESCE(NULLIF(btrim(p_external_id), ''), p_id::text)
$$;
COMMENT ON FUNCTION canon.lead_source_pk(text, integer) IS 'Lead key: COALESCE(NULLIF(btrim(external_id), ''''), id::text).';

-- snapshot of sql/canon/canon.source_contract_violations.sql
-- canon.source_contract_violations: every missing table, missing column or column of
-- an incompatible type among the upstream columns listed in canon.source_contract.
CREATE OR REPLACE FUNCTION canon.source_contract_violations()
RETURNS TABLE (table_name text, column_name text, problem text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH expected AS (
    SELECT c.table_name, c.column_name, c.type_family
    FROM canon.source_contract c
  ),
  actual AS (
    SELECT col.table_name::text AS table_name,
           col.column_name::text AS column_name,
           col.data_type::text AS data_type
    FROM information_schema.columns col
    WHERE col.table_schema = 'public'
      AND col.table_name IN (SELECT e.table_name FROM expected e)
  ),
  present_tables AS (
    SELECT DISTINCT e.table_name
    FROM expected e
    WHERE to_regclass(format('public.%I', e.table_name)) IS NOT NULL
  )
  SELECT t.table_name, NULL::text, 'table public.' || t.table_name || ' is missing'
  FROM (SELECT DISTINCT e.table_name FROM expected e) t
  WHERE t.table_name NOT IN (SELECT p.table_name FROM present_tables p)
  UNION ALL
  SELECT e.table_name, e.column_name,
         CASE
           WHEN a.column_name IS NULL THEN
             format('column public.%s.%s is missing', e.table_name, e.column_name)
           ELSE
             format('column public.%s.%s has type %s, expected %s', e.table_name, e.column_name, a.data_type, e.type_family)
         END
  FROM expected e
  JOIN present_tables p ON p.table_name = e.table_name
  LEFT JOIN actual a ON a.table_name = e.table_name AND a.column_name = e.column_name
  WHERE a.column_name IS NULL
     OR NOT (
       (e.type_family = 'text' AND a.data_type IN ('character varying', 'text', 'character'))
       OR (e.type_family = 'integer' AND a.data_type IN ('smallint', 'integer', 'bigint'))
       OR (e.type_family = 'timestamp' AND a.data_type IN ('timestamp without time zone'))
       OR (e.type_family = 'date' AND a.data_type IN ('date'))
       OR (e.type_family = 'boolean' AND a.data_type IN ('boolean'))
       OR (e.type_family = 'numeric' AND a.data_type IN ('smallint', 'integer', 'bigint', 'numeric', 'real', 'double precision'))
     )
  ORDER BY 1, 2
$$;
COMMENT ON FUNCTION canon.source_contract_violations() IS 'Rows describing every violation of the upstream source contract; empty when the contract holds.';

-- snapshot of sql/canon/canon.check_source_contract.sql
-- canon.check_source_contract: raises one error naming every contract violation
-- (SQLSTATE CL002), or returns the number of checked columns. Step 3 of every run.
CREATE OR REPLACE FUNCTION canon.check_source_contract()
RETURNS integer
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_problems text;
BEGIN
  SELECT string_agg(v.problem, '; ' ORDER BY v.table_name, v.column_name NULLS FIRST)
  INTO v_problems
  FROM canon.source_contract_violations() v;
  IF v_problems IS NOT NULL THEN
    RAISE EXCEPTION 'source contract violated: %', v_problems
      USING ERRCODE = 'CL002',
            HINT = 'The upstream tables must have the columns listed in canon.source_contract.';
  END IF;
  RETURN (SELECT count(*)::integer FROM canon.source_contract);
END
$$;
COMMENT ON FUNCTION canon.check_source_contract() IS 'Raises one error (SQLSTATE CL002) naming every missing table or column or incompatible type.';

-- snapshot of sql/canon/canon.failpoint.sql
-- canon.failpoint: fault injection for tests and drills, a no-op in normal operation.
-- With the session setting cabinet.failpoint = '<point>' the run raises at that point;
-- with 'wait:<point>' it waits there until the advisory lock
-- (hashtext('cabinet_leads'), hashtext('failpoint')) is free, so that a test can hold
-- a run in the middle, observe it, kill it, or let it go.
CREATE OR REPLACE FUNCTION canon.failpoint(p_point text)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_setting text := current_setting('cabinet.failpoint', true);
BEGIN
  IF v_setting = p_point THEN
    RAISE EXCEPTION 'failpoint "%" triggered (session setting cabinet.failpoint)', p_point
      USING ERRCODE = 'CL099';
  ELSIF v_setting = 'wait:' || p_point THEN
    PERFORM pg_advisory_xact_lock_shared(hashtext('cabinet_leads'), hashtext('failpoint'));
  END IF;
END
$$;
COMMENT ON FUNCTION canon.failpoint(text) IS 'Test hook: SET cabinet.failpoint = ''<point>'' raises there, ''wait:<point>'' waits there on an advisory lock.';

-- snapshot of sql/canon/canon.mark_abandoned_runs.sql
-- canon.mark_abandoned_runs: marks FAILED every RUNNING run whose database backend is
-- gone or no longer executing that run's CALL (client killed, server restarted,
-- cancelled statement). Called at the start of every run.
CREATE OR REPLACE FUNCTION canon.mark_abandoned_runs()
RETURNS integer
LANGUAGE sql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH abandoned AS (
    UPDATE canon.ingestion_runs r
    SET status = 'FAILED',
        completed_at = clock_timestamp(),
        error_sqlstate = 'CL003',
        error_message = format('abandoned: backend %s that ran it is gone (process killed or server restarted); its writes were rolled back', r.backend_pid)
    WHERE r.status = 'RUNNING'
      AND NOT EXISTS (
        SELECT 1
        FROM pg_stat_activity a
        WHERE a.pid = r.backend_pid
          AND (r.backend_start IS NULL OR a.backend_start IS NULL OR a.backend_start = r.backend_start)
          -- A pooled connection outlives a cancelled CALL: alive means still in that CALL.
          -- (state is NULL when another role's session is not visible: trust the pid then.)
          AND (a.state IS NULL OR (a.state = 'active' AND a.query_start <= r.started_at))
      )
    RETURNING 1
  )
  SELECT count(*)::integer FROM abandoned
$$;
COMMENT ON FUNCTION canon.mark_abandoned_runs() IS 'Marks FAILED ("abandoned") every RUNNING run whose backend no longer exists; returns how many.';

-- snapshot of sql/canon/canon.enforce_person_has_link.sql
-- canon.enforce_person_has_link: deferred constraint trigger function. At commit, a
-- person created or left behind must have at least one identity link: no orphan persons.
CREATE OR REPLACE FUNCTION canon.enforce_person_has_link()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_person uuid := CASE WHEN TG_TABLE_NAME = 'identity_registry' THEN NEW.person_key ELSE OLD.person_key END;
BEGIN
  IF EXISTS (SELECT 1 FROM canon.identity_registry p WHERE p.person_key = v_person)
     AND NOT EXISTS (SELECT 1 FROM canon.identity_links l WHERE l.person_key = v_person) THEN
    RAISE EXCEPTION 'orphan person %: a person must have at least one identity link', v_person
      USING ERRCODE = 'CL010';
  END IF;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION canon.enforce_person_has_link() IS 'Constraint trigger: no person in canon.identity_registry without a link (checked at commit).';

-- snapshot of sql/canon/canon.enforce_lead_not_linked_and_open.sql
-- canon.enforce_lead_not_linked_and_open: deferred constraint trigger function. At
-- commit, a lead is never both linked and OPEN in canon.identity_unmatched.
CREATE OR REPLACE FUNCTION canon.enforce_lead_not_linked_and_open()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF NEW.source_table = 'module_ct_cabinet_leads'
     AND EXISTS (SELECT 1 FROM canon.identity_links l
                 WHERE l.source_table = NEW.source_table AND l.source_pk = NEW.source_pk)
     AND EXISTS (SELECT 1 FROM canon.identity_unmatched u
                 WHERE u.source_table = NEW.source_table AND u.source_pk = NEW.source_pk AND u.status = 'OPEN') THEN
    RAISE EXCEPTION 'lead % is both linked and OPEN in canon.identity_unmatched', NEW.source_pk
      USING ERRCODE = 'CL011';
  END IF;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION canon.enforce_lead_not_linked_and_open() IS 'Constraint trigger: a lead is never both linked and OPEN-unmatched (checked at commit).';

-- snapshot of sql/canon/canon.refresh_driver_index.sql
-- canon.refresh_driver_index: pipeline step 4, brings the driver matching index up to
-- date with public.drivers. Not implemented yet (matching issue): reports so in stats.
CREATE OR REPLACE FUNCTION canon.refresh_driver_index(p_run_id bigint)
RETURNS jsonb
LANGUAGE sql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT jsonb_build_object('implemented', false)
$$;
COMMENT ON FUNCTION canon.refresh_driver_index(bigint) IS 'Pipeline step 4: incremental refresh of the driver matching index. Returns step stats.';

-- snapshot of sql/canon/canon.match_cabinet_leads.sql
-- canon.match_cabinet_leads: pipeline steps 5 and 6, selects the batch of leads to
-- evaluate and matches and links them. Not implemented yet (matching issue).
CREATE OR REPLACE FUNCTION canon.match_cabinet_leads(p_run_id bigint, p_scope_from date, p_limit integer, p_only_limbo boolean)
RETURNS jsonb
LANGUAGE sql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT jsonb_build_object('implemented', false)
$$;
COMMENT ON FUNCTION canon.match_cabinet_leads(bigint, date, integer, boolean) IS 'Pipeline steps 5-6: select the batch, match, link, record unmatched reasons. Returns step stats.';

-- snapshot of sql/canon/canon.generate_cabinet_claims.sql
-- canon.generate_cabinet_claims: pipeline step 7, inserts the missing 14-day claims of
-- the leads in scope. Not implemented yet (claims issue): reports so in stats.
CREATE OR REPLACE FUNCTION canon.generate_cabinet_claims(p_run_id bigint, p_scope_from date)
RETURNS jsonb
LANGUAGE sql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT jsonb_build_object('implemented', false)
$$;
COMMENT ON FUNCTION canon.generate_cabinet_claims(bigint, date) IS 'Pipeline step 7: generate missing claims for leads with lead_date >= p_scope_from. Returns step stats.';

-- snapshot of sql/ops/ops.snapshot_limbo.sql
-- ops.snapshot_limbo: pipeline step 8, stores the limbo counts of a completed run and
-- evaluates the alert rules. Not implemented yet (alerts issue): reports so in stats.
CREATE OR REPLACE FUNCTION ops.snapshot_limbo(p_run_id bigint)
RETURNS jsonb
LANGUAGE sql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT jsonb_build_object('implemented', false)
$$;
COMMENT ON FUNCTION ops.snapshot_limbo(bigint) IS 'Pipeline step 8: snapshot limbo counts per stage and lead week, evaluate alerts. Returns step stats.';

-- snapshot of sql/ops/ops.limbo_stage_counts.sql
-- ops.limbo_stage_counts: current number of leads per limbo stage as one jsonb object,
-- recorded before and after each run. NULL until the limbo view exists (limbo issue).
CREATE OR REPLACE FUNCTION ops.limbo_stage_counts()
RETURNS jsonb
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT NULL::jsonb
$$;
COMMENT ON FUNCTION ops.limbo_stage_counts() IS 'Leads per limbo stage, e.g. {"NO_IDENTITY": 3, "OK": 10}.';

-- snapshot of sql/ops/ops.reconcile_cabinet_leads_pipeline.sql
-- ops.reconcile_cabinet_leads_pipeline: the one entry point of a reconciliation run
-- (SPEC 7), called by the graphile-worker task, the CLI and people in psql:
--   CALL ops.reconcile_cabinet_leads_pipeline(p_days_back => 30, p_limit => 2000);
-- It commits the RUNNING row first (visible at once), takes the job lock (or logs
-- SKIPPED), then runs steps 3-8 in one subtransaction: a failure rolls all of them
-- back and is logged as FAILED; a dry run rolls them back on purpose and keeps stats.
-- A procedure, not a function, because it must commit; so it has no SET clause and
-- qualifies every name. CALL it outside an explicit transaction block.
CREATE OR REPLACE PROCEDURE ops.reconcile_cabinet_leads_pipeline(
  p_days_back integer DEFAULT 30,
  p_limit integer DEFAULT 2000,
  p_dry_run boolean DEFAULT false,
  p_only_limbo boolean DEFAULT false,
  p_context jsonb DEFAULT '{}'::jsonb,
  p_raise_on_failure boolean DEFAULT true,
  INOUT run jsonb DEFAULT NULL
)
LANGUAGE plpgsql
AS $$
DECLARE
  c_job_name constant text := 'reconcile_cabinet_leads_pipeline';
  v_run_id bigint;
  v_today date;
  v_scope_from date;
  v_abandoned integer;
  v_status text;
  v_stats jsonb;
  v_steps jsonb := '[]'::jsonb;
  v_step_out jsonb;
  v_t0 timestamptz;
  v_t timestamptz;
  v_sqlstate text;
  v_message text;
  v_detail text;
  v_context text;
BEGIN
  IF p_days_back IS NULL OR p_days_back < 0 OR p_days_back > 36500 THEN
    RAISE EXCEPTION 'invalid days_back %: expected an integer from 0 to 36500', coalesce(p_days_back::text, 'NULL')
      USING ERRCODE = '22023';
  END IF;
  IF p_limit IS NULL OR p_limit < 0 THEN
    RAISE EXCEPTION 'invalid limit %: expected an integer >= 0', coalesce(p_limit::text, 'NULL')
      USING ERRCODE = '22023';
  END IF;
  IF p_context IS NULL OR jsonb_typeof(p_context) <> 'object' THEN
    RAISE EXCEPTION 'invalid context %: expected a json object', coalesce(p_context::text, 'NULL')
      USING ERRCODE = '22023';
  END IF;

  v_t0 := clock_timestamp();
  v_today := canon.business_today();
  v_scope_from := v_today - p_days_back;

  -- Step 1: runs whose backend is gone are abandoned; log this run as RUNNING and commit.
  v_abandoned := canon.mark_abandoned_runs();
  INSERT INTO canon.ingestion_runs (
    job_name, status, dry_run, source_tables, params, scope_date_from, scope_date_to,
    trigger, client_host, client_pid, worker_job_id, backend_pid, backend_start
  )
  SELECT c_job_name, 'RUNNING', p_dry_run,
         '["module_ct_cabinet_leads", "drivers", "summary_daily"]'::jsonb,
         jsonb_build_object('days_back', p_days_back, 'limit', p_limit, 'dry_run', p_dry_run,
                            'only_limbo', p_only_limbo, 'business_today', v_today),
         v_scope_from, v_today,
         coalesce(p_context->>'trigger', 'psql'),
         coalesce(p_context->>'client_host', host(inet_client_addr())),
         (p_context->>'client_pid')::integer,
         p_context->>'worker_job_id',
         pg_backend_pid(),
         (SELECT a.backend_start FROM pg_catalog.pg_stat_activity a WHERE a.pid = pg_backend_pid())
  RETURNING id INTO v_run_id;
  COMMIT;

  -- Step 2: one run at a time, across every host. The lock lasts until the final commit.
  IF NOT pg_try_advisory_xact_lock(hashtext('cabinet_leads'), hashtext(c_job_name)) THEN
    UPDATE canon.ingestion_runs
    SET status = 'SKIPPED',
        completed_at = clock_timestamp(),
        stats = jsonb_build_object(
          'skipped_reason', 'another run holds the job lock',
          'running_run_ids', (SELECT coalesce(jsonb_agg(r.id ORDER BY r.id), '[]'::jsonb)
                              FROM canon.ingestion_runs r
                              WHERE r.job_name = c_job_name AND r.status = 'RUNNING' AND r.id <> v_run_id),
          'abandoned_runs_marked', v_abandoned)
    WHERE id = v_run_id;
    COMMIT;
    SELECT to_jsonb(r) INTO run FROM canon.ingestion_runs r WHERE r.id = v_run_id;
    RETURN;
  END IF;
  -- A canon table locked by someone else fails the run instead of hanging it.
  PERFORM set_config('lock_timeout', '30s', true);

  v_stats := jsonb_build_object('abandoned_runs_marked', v_abandoned);

  -- Steps 3-8: all or nothing.
  BEGIN
    v_t := clock_timestamp();
    v_stats := v_stats || jsonb_build_object('source_contract_columns', canon.check_source_contract());
    v_steps := v_steps || jsonb_build_object('step', 'check_source_contract', 'status', 'done',
      'ms', round((extract(epoch FROM clock_timestamp() - v_t) * 1000)::numeric, 1));

    v_stats := v_stats || jsonb_build_object('limbo_before', ops.limbo_stage_counts());

    v_t := clock_timestamp();
    v_step_out := canon.refresh_driver_index(v_run_id);
    PERFORM canon.failpoint('after_refresh_driver_index');
    v_stats := v_stats || jsonb_build_object('driver_index', v_step_out);
    v_steps := v_steps || jsonb_build_object('step', 'refresh_driver_index',
      'status', CASE WHEN v_step_out->'implemented' = 'false'::jsonb THEN 'not_implemented' ELSE 'done' END,
      'ms', round((extract(epoch FROM clock_timestamp() - v_t) * 1000)::numeric, 1));

    v_t := clock_timestamp();
    v_step_out := canon.match_cabinet_leads(v_run_id, v_scope_from, p_limit, p_only_limbo);
    PERFORM canon.failpoint('after_match');
    v_stats := v_stats || jsonb_build_object('match', v_step_out);
    v_steps := v_steps || jsonb_build_object('step', 'match_cabinet_leads',
      'status', CASE WHEN v_step_out->'implemented' = 'false'::jsonb THEN 'not_implemented' ELSE 'done' END,
      'ms', round((extract(epoch FROM clock_timestamp() - v_t) * 1000)::numeric, 1));

    v_t := clock_timestamp();
    v_step_out := canon.generate_cabinet_claims(v_run_id, v_scope_from);
    PERFORM canon.failpoint('after_claims');
    v_stats := v_stats || jsonb_build_object('claims', v_step_out);
    v_steps := v_steps || jsonb_build_object('step', 'generate_cabinet_claims',
      'status', CASE WHEN v_step_out->'implemented' = 'false'::jsonb THEN 'not_implemented' ELSE 'done' END,
      'ms', round((extract(epoch FROM clock_timestamp() - v_t) * 1000)::numeric, 1));

    v_stats := v_stats || jsonb_build_object('limbo_after', ops.limbo_stage_counts());

    v_t := clock_timestamp();
    v_step_out := ops.snapshot_limbo(v_run_id);
    PERFORM canon.failpoint('after_snapshot');
    v_stats := v_stats || jsonb_build_object('snapshot', v_step_out);
    v_steps := v_steps || jsonb_build_object('step', 'snapshot_limbo',
      'status', CASE WHEN v_step_out->'implemented' = 'false'::jsonb THEN 'not_implemented' ELSE 'done' END,
      'ms', round((extract(epoch FROM clock_timestamp() - v_t) * 1000)::numeric, 1));

    v_status := 'COMPLETED';
    IF p_dry_run THEN
      -- Roll back every write of steps 3-8; the variables keep the stats.
      RAISE EXCEPTION 'dry run' USING ERRCODE = 'CL0DR';
    END IF;
  EXCEPTION
    WHEN SQLSTATE 'CL0DR' THEN
      v_status := 'COMPLETED';
    WHEN OTHERS THEN
      GET STACKED DIAGNOSTICS v_sqlstate = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                              v_detail = PG_EXCEPTION_DETAIL, v_context = PG_EXCEPTION_CONTEXT;
      v_status := 'FAILED';
    -- OTHERS does not include a cancel (statement_timeout, Ctrl-C): log those too.
    WHEN query_canceled THEN
      GET STACKED DIAGNOSTICS v_sqlstate = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                              v_detail = PG_EXCEPTION_DETAIL, v_context = PG_EXCEPTION_CONTEXT;
      v_status := 'FAILED';
  END;

  -- Step 9: outcome, in the same transaction as the writes of steps 4-8.
  v_stats := v_stats || jsonb_build_object(
    'steps', v_steps,
    'steps_not_implemented', (SELECT coalesce(jsonb_agg(s->'step'), '[]'::jsonb)
                              FROM jsonb_array_elements(v_steps) s
                              WHERE s->>'status' = 'not_implemented'),
    'durations_ms', (SELECT coalesce(jsonb_object_agg(s->>'step', s->'ms'), '{}'::jsonb)
                     FROM jsonb_array_elements(v_steps) s)
                    || jsonb_build_object('total', round((extract(epoch FROM clock_timestamp() - v_t0) * 1000)::numeric, 1)));
  IF v_status = 'FAILED' THEN
    v_stats := v_stats || jsonb_build_object('error', jsonb_build_object(
      'sqlstate', v_sqlstate, 'detail', v_detail, 'context', v_context));
  END IF;

  UPDATE canon.ingestion_runs
  SET status = v_status,
      stats = v_stats,
      completed_at = clock_timestamp(),
      error_message = CASE WHEN v_status = 'FAILED' THEN v_message END,
      error_sqlstate = CASE WHEN v_status = 'FAILED' THEN v_sqlstate END
  WHERE id = v_run_id;
  COMMIT;

  SELECT to_jsonb(r) INTO run FROM canon.ingestion_runs r WHERE r.id = v_run_id;
  IF v_status = 'FAILED' AND p_raise_on_failure THEN
    RAISE EXCEPTION 'run % FAILED: %', v_run_id, v_message
      USING ERRCODE = v_sqlstate,
            DETAIL = coalesce(v_detail, ''),
            HINT = format('The run is logged: SELECT * FROM canon.ingestion_runs WHERE id = %s', v_run_id);
  END IF;
END
$$;
COMMENT ON PROCEDURE ops.reconcile_cabinet_leads_pipeline(integer, integer, boolean, boolean, jsonb, boolean, jsonb) IS
  'One reconciliation run (SPEC 7): CALL ops.reconcile_cabinet_leads_pipeline(p_days_back => 30, p_limit => 2000, p_dry_run => false). Returns the run row as jsonb; raises after logging when the run FAILED.';

-- snapshot of migrations/parts/0003_invariant_triggers.sql
-- Invariants enforced by the database itself, checked at commit.
CREATE CONSTRAINT TRIGGER identity_registry_has_link
  AFTER INSERT ON canon.identity_registry
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION canon.enforce_person_has_link();
CREATE CONSTRAINT TRIGGER identity_links_person_keeps_link
  AFTER DELETE OR UPDATE OF person_key ON canon.identity_links
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION canon.enforce_person_has_link();
CREATE CONSTRAINT TRIGGER identity_links_lead_not_open
  AFTER INSERT OR UPDATE ON canon.identity_links
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION canon.enforce_lead_not_linked_and_open();
CREATE CONSTRAINT TRIGGER identity_unmatched_lead_not_linked
  AFTER INSERT OR UPDATE ON canon.identity_unmatched
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION canon.enforce_lead_not_linked_and_open();
