-- Up Migration
-- snapshot of sql/canon/canon.last_run_scope.sql
-- canon.last_run_scope: the lead dates the pipeline runs cover now (SPEC 7 step 5): the
-- days_back of the last COMPLETED run (not a dry run; 30, the default, before the first
-- one) and the first lead date it selects today, business today - days_back. A lead dated
-- before scope_from is neither evaluated nor retried until a run with a larger days_back.
-- Read once per query by ops.explain_lead, ops.v_cabinet_leads_limbo (reason texts) and
-- ops.v_review_queue; one probe of ingestion_runs_job_status_idx.
CREATE OR REPLACE FUNCTION canon.last_run_scope()
RETURNS TABLE (run_id bigint, days_back integer, scope_from date)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT r.id, coalesce(r.days_back, 30), canon.business_today() - coalesce(r.days_back, 30)
  FROM (SELECT NULL::bigint AS id, NULL::integer AS days_back) d
  LEFT JOIN LATERAL (
    SELECT x.id, (x.params->>'days_back')::integer AS days_back
    FROM canon.ingestion_runs x
    WHERE x.job_name = 'reconcile_cabinet_leads_pipeline' AND x.status = 'COMPLETED' AND NOT x.dry_run
    ORDER BY x.created_at DESC, x.id DESC
    LIMIT 1
  ) r ON true
$$;
COMMENT ON FUNCTION canon.last_run_scope() IS
  'The scope of the pipeline runs now: run_id and days_back of the last COMPLETED run (NULL and 30 before the first), scope_from = business today - days_back. Leads dated before scope_from are not evaluated or retried.';

-- snapshot of sql/canon/canon.take_lead_state_marks.sql
-- canon.take_lead_state_marks: the marks a lead state evaluation consumes, as visible now,
-- into pg_temp.lead_state_marks (lead rows of canon.cabinet_lead_state_pending, keys of
-- canon.cabinet_lead_state_dirty, each with its mark_seq); adds those not read yet when
-- called again in the same transaction. Returns the lead rows newly taken (marked rows
-- and the rows of marked keys). canon.clear_lead_state_marks removes exactly these marks
-- afterwards: a row or key marked again meanwhile has a new mark_seq and stays.
-- Callers: canon.generate_cabinet_claims (step 7), ops.refresh_cabinet_lead_state.
CREATE OR REPLACE FUNCTION canon.take_lead_state_marks()
RETURNS integer[]
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
-- its temp table is made "IF NOT EXISTS" / dropped "IF EXISTS": no NOTICE for that in psql
SET client_min_messages = warning
AS $$
DECLARE
  v_ids integer[];
BEGIN
  CREATE TEMP TABLE IF NOT EXISTS lead_state_marks (lead_id integer, lead_source_pk text, mark_seq bigint NOT NULL)
    ON COMMIT DROP;
  WITH taken AS (
    INSERT INTO pg_temp.lead_state_marks
    SELECT p.lead_id, NULL, p.mark_seq
    FROM canon.cabinet_lead_state_pending p
    WHERE NOT EXISTS (SELECT 1 FROM pg_temp.lead_state_marks m WHERE m.lead_id = p.lead_id AND m.mark_seq = p.mark_seq)
    UNION ALL
    SELECT NULL, d.lead_source_pk, d.mark_seq
    FROM canon.cabinet_lead_state_dirty d
    WHERE NOT EXISTS (SELECT 1 FROM pg_temp.lead_state_marks m
                      WHERE m.lead_source_pk = d.lead_source_pk AND m.mark_seq = d.mark_seq)
    RETURNING lead_id, lead_source_pk
  )
  SELECT ARRAY(
    SELECT t.lead_id FROM taken t WHERE t.lead_id IS NOT NULL
    UNION
    SELECT unnest(canon.lead_ids_of_keys(ARRAY(SELECT t.lead_source_pk FROM taken t WHERE t.lead_source_pk IS NOT NULL))))
  INTO v_ids;
  RETURN v_ids;
END
$$;
COMMENT ON FUNCTION canon.take_lead_state_marks() IS
  'Reads the lead state marks (pending rows, dirty keys) visible now into pg_temp.lead_state_marks and returns the lead rows they name; canon.clear_lead_state_marks removes exactly those marks.';

-- snapshot of sql/canon/canon.refresh_lead_state.sql
-- canon.refresh_lead_state: re-evaluates the given lead rows from the live definition
-- (canon.v_cabinet_lead_status) into canon.cabinet_lead_state, set-based: a row is
-- rewritten only when something in it changed (a rerun on unchanged data writes
-- nothing), and removed when its lead row is gone or has lost its lead_created_at.
-- Returns {evaluated, written, removed, trip_rows_read}. Callers: canon.generate_cabinet_claims
-- (the pipeline's step 7) and ops.refresh_cabinet_lead_state (people).
CREATE OR REPLACE FUNCTION canon.refresh_lead_state(p_run_id bigint, p_lead_ids integer[])
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET jit = off
-- its temp table is made "IF NOT EXISTS" / dropped "IF EXISTS": no NOTICE for that in psql
SET client_min_messages = warning
AS $$
DECLARE
  v_evaluated integer;
  v_written integer;
  v_removed integer;
  v_trip_rows bigint;
BEGIN
  IF coalesce(cardinality(p_lead_ids), 0) = 0 THEN
    RETURN jsonb_build_object('evaluated', 0, 'written', 0, 'removed', 0, 'trip_rows_read', 0);
  END IF;

  DROP TABLE IF EXISTS pg_temp.lead_state_fresh;
  CREATE TEMP TABLE lead_state_fresh ON COMMIT DROP AS
  SELECT v.*
  FROM canon.v_cabinet_lead_status v
  WHERE v.lead_id = ANY (p_lead_ids);
  GET DIAGNOSTICS v_evaluated = ROW_COUNT;
  SELECT coalesce(sum(f.trip_rows_in_window), 0) INTO v_trip_rows FROM pg_temp.lead_state_fresh f;

  INSERT INTO canon.cabinet_lead_state AS s (
    lead_id, lead_source_pk, lead_date, person_key, driver_id, window_days, window_end,
    trips_in_window, trip_rows_in_window, currency,
    m1_trips_threshold, m1_amount, reached_m1, m5_trips_threshold, m5_amount, reached_m5,
    m25_trips_threshold, m25_amount, reached_m25, expected_amount,
    has_claim_m1, has_claim_m5, has_claim_m25, limbo_stage, key_rows, evaluated_at, evaluated_run_id)
  SELECT f.lead_id, f.lead_source_pk, f.lead_date, f.person_key, f.driver_id, f.window_days, f.window_end,
         f.trips_in_window, f.trip_rows_in_window, f.currency,
         f.m1_trips_threshold, f.m1_amount, f.reached_m1, f.m5_trips_threshold, f.m5_amount, f.reached_m5,
         f.m25_trips_threshold, f.m25_amount, f.reached_m25, f.expected_amount,
         f.has_claim_m1, f.has_claim_m5, f.has_claim_m25, f.limbo_stage, f.key_rows, now(), p_run_id
  FROM pg_temp.lead_state_fresh f
  ORDER BY f.lead_id
  ON CONFLICT (lead_id) DO UPDATE
    SET lead_source_pk = excluded.lead_source_pk, lead_date = excluded.lead_date,
        person_key = excluded.person_key, driver_id = excluded.driver_id,
        window_days = excluded.window_days, window_end = excluded.window_end,
        trips_in_window = excluded.trips_in_window, trip_rows_in_window = excluded.trip_rows_in_window,
        currency = excluded.currency,
        m1_trips_threshold = excluded.m1_trips_threshold, m1_amount = excluded.m1_amount, reached_m1 = excluded.reached_m1,
        m5_trips_threshold = excluded.m5_trips_threshold, m5_amount = excluded.m5_amount, reached_m5 = excluded.reached_m5,
        m25_trips_threshold = excluded.m25_trips_threshold, m25_amount = excluded.m25_amount, reached_m25 = excluded.reached_m25,
        expected_amount = excluded.expected_amount,
        has_claim_m1 = excluded.has_claim_m1, has_claim_m5 = excluded.has_claim_m5, has_claim_m25 = excluded.has_claim_m25,
        limbo_stage = excluded.limbo_stage, key_rows = excluded.key_rows, evaluated_at = excluded.evaluated_at, evaluated_run_id = excluded.evaluated_run_id
    WHERE (s.lead_source_pk, s.lead_date, s.person_key, s.driver_id, s.window_days, s.window_end,
           s.trips_in_window, s.trip_rows_in_window, s.currency,
           s.m1_trips_threshold, s.m1_amount, s.reached_m1, s.m5_trips_threshold, s.m5_amount, s.reached_m5,
           s.m25_trips_threshold, s.m25_amount, s.reached_m25, s.expected_amount,
           s.has_claim_m1, s.has_claim_m5, s.has_claim_m25, s.limbo_stage, s.key_rows)
          IS DISTINCT FROM
          (excluded.lead_source_pk, excluded.lead_date, excluded.person_key, excluded.driver_id, excluded.window_days, excluded.window_end,
           excluded.trips_in_window, excluded.trip_rows_in_window, excluded.currency,
           excluded.m1_trips_threshold, excluded.m1_amount, excluded.reached_m1, excluded.m5_trips_threshold, excluded.m5_amount, excluded.reached_m5,
           excluded.m25_trips_threshold, excluded.m25_amount, excluded.reached_m25, excluded.expected_amount,
           excluded.has_claim_m1, excluded.has_claim_m5, excluded.has_claim_m25, excluded.limbo_stage, excluded.key_rows);
  GET DIAGNOSTICS v_written = ROW_COUNT;

  DELETE FROM canon.cabinet_lead_state s
  WHERE s.lead_id = ANY (p_lead_ids)
    AND NOT EXISTS (SELECT 1 FROM pg_temp.lead_state_fresh f WHERE f.lead_id = s.lead_id);
  GET DIAGNOSTICS v_removed = ROW_COUNT;

  DROP TABLE pg_temp.lead_state_fresh;
  -- What the limbo snapshot compares with to know whether it must recount.
  IF v_written + v_removed > 0 THEN
    UPDATE canon.cabinet_lead_state_meta SET changed_at = now();
  END IF;
  RETURN jsonb_build_object('evaluated', v_evaluated, 'written', v_written, 'removed', v_removed,
                            'trip_rows_read', v_trip_rows);
END
$$;
COMMENT ON FUNCTION canon.refresh_lead_state(bigint, integer[]) IS
  'Re-evaluates the given lead rows into canon.cabinet_lead_state from canon.v_cabinet_lead_status (rows rewritten only when changed, removed when the lead is gone). Returns {evaluated, written, removed, trip_rows_read}.';

-- snapshot of sql/ops/ops.refresh_cabinet_lead_state.sql
-- ops.refresh_cabinet_lead_state: re-evaluates stored lead state now, for people and the
-- ops.* tools (the pipeline does it on every run):
--   SELECT ops.refresh_cabinet_lead_state(ARRAY['lead-key']);  -- these keys + every row or key marked
--   SELECT ops.refresh_cabinet_lead_state();                  -- every lead (a rebuild; minutes at 1M leads)
-- Lead rows written since the last read are keyed first (canon.key_changed_leads), so
-- their marks are evaluated too. It waits for the job lock (at most lock_timeout, 30 s by default),
-- so it never runs inside a pipeline run. Generates no claim: that is the run's job.
CREATE OR REPLACE FUNCTION ops.refresh_cabinet_lead_state(p_lead_keys text[] DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '30s'
-- keying new lead rows drops temp tables "IF EXISTS": no NOTICE for that in psql
SET client_min_messages = warning
AS $$
DECLARE
  v_ids integer[];
  v_out jsonb;
BEGIN
  BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('cabinet_leads'), hashtext('reconcile_cabinet_leads_pipeline'));
  EXCEPTION WHEN lock_not_available THEN
    RAISE EXCEPTION 'a pipeline run (or an identity change) holds the job lock for more than 30 s: try again when it has finished'
      USING ERRCODE = '55P03';
  END;
  -- Lead rows written since the last read are keyed (and marked) first.
  PERFORM canon.key_changed_leads(NULL);
  v_ids := canon.take_lead_state_marks();
  IF p_lead_keys IS NULL THEN
    v_ids := ARRAY(
      SELECT l.id FROM public.module_ct_cabinet_leads l WHERE isfinite(l.lead_created_at)
      UNION
      SELECT s.lead_id FROM canon.cabinet_lead_state s);
  ELSE
    v_ids := v_ids || canon.lead_ids_of_keys(p_lead_keys);
  END IF;

  v_out := canon.refresh_lead_state(NULL, v_ids);
  PERFORM canon.clear_lead_state_marks();
  RETURN v_out || jsonb_build_object('scope', CASE WHEN p_lead_keys IS NULL THEN 'all' ELSE 'keys' END);
END
$$;
COMMENT ON FUNCTION ops.refresh_cabinet_lead_state(text[]) IS
  'Re-evaluates the stored state of the given lead keys (and of every key marked dirty), or of every lead when called without argument. Returns {evaluated, written, removed, trip_rows_read, scope}.';

-- snapshot of sql/ops/ops.reconcile_cabinet_leads_pipeline.sql
-- ops.reconcile_cabinet_leads_pipeline: the one entry point of a reconciliation run
-- (SPEC 7), called by the graphile-worker task, the CLI and people in psql:
--   CALL ops.reconcile_cabinet_leads_pipeline(p_days_back => 30, p_limit => 2000);
-- It commits the RUNNING row first (visible at once), takes the job lock (or logs
-- SKIPPED), then runs steps 3-8 in one subtransaction: a failure rolls all of them
-- back and is logged as FAILED; a dry run rolls them back on purpose and keeps stats.
-- Every lock wait is bounded (canon.bound_lock_timeout, 30 s) from the first statement;
-- a setting that cannot be read in step 1 logs the run FAILED at once.
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
  v_prev_snapshot bigint;
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
  -- Lock waits are bounded from the first statement (step 1 reads canon.settings and
  -- writes canon.ingestion_runs); a COMMIT ends the bound, so it is set again after it.
  PERFORM canon.bound_lock_timeout();

  -- Step 1: runs whose backend is gone are abandoned; log this run as RUNNING and commit.
  -- A setting that cannot be read (locked, invalid, missing) logs the run FAILED instead.
  BEGIN
    v_today := canon.business_today();
  EXCEPTION WHEN OTHERS OR query_canceled THEN
    GET STACKED DIAGNOSTICS v_sqlstate = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                            v_detail = PG_EXCEPTION_DETAIL, v_context = PG_EXCEPTION_CONTEXT;
    v_status := 'FAILED';
  END;
  v_scope_from := v_today - p_days_back;
  v_abandoned := canon.mark_abandoned_runs();
  INSERT INTO canon.ingestion_runs (
    job_name, status, dry_run, source_tables, params, scope_date_from, scope_date_to,
    trigger, client_host, client_pid, worker_job_id, backend_pid, backend_start,
    stats, error_message, error_sqlstate, completed_at
  )
  SELECT c_job_name, coalesce(v_status, 'RUNNING'), p_dry_run,
         '["module_ct_cabinet_leads", "drivers", "summary_daily"]'::jsonb,
         jsonb_build_object('days_back', p_days_back, 'limit', p_limit, 'dry_run', p_dry_run,
                            'only_limbo', p_only_limbo, 'business_today', v_today),
         v_scope_from, v_today,
         coalesce(p_context->>'trigger', 'psql'),
         coalesce(p_context->>'client_host', host(inet_client_addr())),
         (p_context->>'client_pid')::integer,
         p_context->>'worker_job_id',
         pg_backend_pid(),
         (SELECT a.backend_start FROM pg_catalog.pg_stat_activity a WHERE a.pid = pg_backend_pid()),
         CASE WHEN v_status = 'FAILED' THEN jsonb_build_object('abandoned_runs_marked', v_abandoned, 'steps', '[]'::jsonb,
           'error', jsonb_build_object('sqlstate', v_sqlstate, 'detail', v_detail, 'context', v_context)) ELSE '{}'::jsonb END,
         v_message, v_sqlstate, CASE WHEN v_status = 'FAILED' THEN clock_timestamp() END
  RETURNING id INTO v_run_id;
  COMMIT;
  IF v_status = 'FAILED' THEN
    SELECT to_jsonb(r) INTO run FROM canon.ingestion_runs r WHERE r.id = v_run_id;
    IF p_raise_on_failure THEN
      RAISE EXCEPTION 'run % FAILED: %', v_run_id, v_message
        USING ERRCODE = v_sqlstate, DETAIL = coalesce(v_detail, ''),
              HINT = format('The run is logged: SELECT * FROM canon.ingestion_runs WHERE id = %s', v_run_id);
    END IF;
    RETURN;
  END IF;
  PERFORM canon.bound_lock_timeout();

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
  -- Settled claims are out of the run's reach (trigger claims_protect_settled).
  PERFORM set_config('cabinet.in_pipeline', 'on', true);
  -- The steps' temp-table bookkeeping ("schema pg_temp does not exist, skipping") is no
  -- news to a psql user: no NOTICE until the run commits, unless the session asked for more.
  PERFORM set_config('client_min_messages', 'warning', true) WHERE current_setting('client_min_messages') = 'notice';

  v_stats := jsonb_build_object('abandoned_runs_marked', v_abandoned);

  -- Steps 3-8: all or nothing.
  BEGIN
    v_t := clock_timestamp();
    v_stats := v_stats || jsonb_build_object('source_contract_columns', canon.check_source_contract());
    v_steps := v_steps || jsonb_build_object('step', 'check_source_contract', 'status', 'done',
      'ms', round((extract(epoch FROM clock_timestamp() - v_t) * 1000)::numeric, 1));

    -- Limbo is counted once per run (a pass over every lead): "before" is the snapshot of
    -- the previous completed run (live counts only when there is none yet), "after" is
    -- this run's own snapshot in step 8.
    SELECT jsonb_build_object(
             'NO_IDENTITY', s.limbo_no_identity, 'NO_DRIVER', s.limbo_no_driver,
             'NO_TRIPS_14D', s.limbo_no_trips_14d, 'TRIPS_NO_CLAIM', s.limbo_trips_no_claim, 'OK', s.limbo_ok),
           s.run_id
    INTO v_step_out, v_prev_snapshot
    FROM ops.limbo_snapshots s
    ORDER BY s.taken_at DESC, s.run_id DESC
    LIMIT 1;
    v_stats := v_stats || jsonb_build_object(
      'limbo_before', coalesce(v_step_out, ops.limbo_stage_counts()),
      'limbo_before_as_of_run', v_prev_snapshot);

    v_t := clock_timestamp();
    v_step_out := canon.refresh_driver_index(v_run_id);
    PERFORM canon.failpoint('after_refresh_driver_index');
    v_stats := v_stats || jsonb_build_object('driver_index', v_step_out);
    v_steps := v_steps || jsonb_build_object('step', 'refresh_driver_index',
      'status', 'done',
      'ms', round((extract(epoch FROM clock_timestamp() - v_t) * 1000)::numeric, 1));

    v_t := clock_timestamp();
    v_step_out := canon.match_cabinet_leads(v_run_id, v_scope_from, p_limit, p_only_limbo);
    PERFORM canon.failpoint('after_match');
    v_stats := v_stats || jsonb_build_object('match', v_step_out);
    v_steps := v_steps || jsonb_build_object('step', 'match_cabinet_leads',
      'status', 'done',
      'ms', round((extract(epoch FROM clock_timestamp() - v_t) * 1000)::numeric, 1));

    v_t := clock_timestamp();
    -- A large batch (backfill) changes these tables faster than autovacuum analyses
    -- them; the next statements would be planned for the tables as they were.
    IF (v_stats->'match'->>'leads_evaluated')::integer >= 5000 THEN
      ANALYZE canon.identity_links, canon.identity_unmatched, canon.lead_keys, canon.identity_registry;
    END IF;
    v_step_out := canon.generate_cabinet_claims(v_run_id, v_scope_from, p_only_limbo);
    PERFORM canon.failpoint('after_claims');
    v_stats := v_stats || jsonb_build_object('claims', v_step_out);
    v_steps := v_steps || jsonb_build_object('step', 'generate_cabinet_claims',
      'status', 'done',
      'ms', round((extract(epoch FROM clock_timestamp() - v_t) * 1000)::numeric, 1));

    v_t := clock_timestamp();
    v_step_out := ops.snapshot_limbo(v_run_id);
    PERFORM canon.failpoint('after_snapshot');
    v_stats := v_stats || jsonb_build_object('snapshot', v_step_out, 'limbo_after', v_step_out->'stages');
    v_steps := v_steps || jsonb_build_object('step', 'snapshot_limbo',
      'status', 'done',
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

-- snapshot of sql/ops/ops.explain_lead.sql
-- ops.explain_lead: "why is this lead (not) matched?" for one lead key: its normalised
-- keys, its current state (link or unmatched row), every candidate with rule, score and
-- why it was kept or rejected, and the decision the matcher would take now.
--   SELECT jsonb_pretty(ops.explain_lead('9f3a...'));
-- It keys the lead's rows first (canon.lead_keys), so it works on leads never run yet;
-- candidates come from the driver index as of its last refresh (shown in the result),
-- with the driver's name, phone and plate as public.drivers holds them. `scope` says
-- whether the runs still evaluate the lead (canon.last_run_scope): one dated before their
-- days_back is not retried, and the explanation says so. `explanation` is the sentence
-- for people (`cabinet-leads explain KEY` prints it first).
CREATE OR REPLACE FUNCTION ops.explain_lead(p_lead_source_pk text)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
-- keying the lead's rows drops temp tables "IF EXISTS": no NOTICE for that in psql
SET client_min_messages = warning
AS $$
DECLARE
  v_ids integer[];
  v_rep integer;
  v_decision record;
  v_scope record;
  v_lead_date date;
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
  SELECT * INTO v_scope FROM canon.last_run_scope();
  SELECT k.lead_date INTO v_lead_date FROM canon.lead_keys k WHERE k.lead_id = v_rep;

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
    'scope', jsonb_build_object('days_back', v_scope.days_back, 'scope_from', v_scope.scope_from,
                               'as_of_run', v_scope.run_id, 'in_scope', v_lead_date >= v_scope.scope_from),
    'decision_now', jsonb_build_object('decision', v_decision.decision, 'driver_id', v_decision.driver_id,
                                       'match_rule', v_decision.match_rule, 'match_score', v_decision.match_score,
                                       'confidence_level', v_decision.confidence_level, 'evidence', v_decision.evidence),
    'candidates', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                      'driver_id', c.driver_id, 'park_id', c.park_id, 'in_target_park', c.in_target_park,
                      'rule', c.rule, 'score', c.score, 'name_similarity', c.name_similarity,
                      'hire_date', c.hire_date, 'hire_in_window', c.hire_in_window,
                      'kept', c.kept, 'reject_reason', c.reject_reason, 'name_veto', c.name_veto,
                      'driver_name', d.driver_name, 'phone', d.phone, 'plate', d.plate)
                    ORDER BY c.kept DESC, c.score DESC, c.name_similarity DESC, c.driver_id), '[]'::jsonb)
                   FROM canon.lead_candidates(ARRAY[v_rep]) c
                   LEFT JOIN LATERAL (
                     SELECT coalesce(nullif(btrim(x.full_name), ''),
                                     nullif(btrim(concat_ws(' ', x.first_name, x.middle_name, x.last_name)), '')) AS driver_name,
                            x.phone, coalesce(x.car_number, x.car_normalized_number) AS plate
                     FROM public.drivers x
                     WHERE x.driver_id = c.driver_id
                     LIMIT 1
                   ) d ON true),
    'explanation', CASE v_decision.decision
      WHEN 'MATCH' THEN format('Matches driver %s by %s (score %s).', v_decision.driver_id, v_decision.match_rule, v_decision.match_score)
      WHEN 'MISSING_KEYS' THEN 'No usable phone, plate or licence: nothing to match on; fix the lead data or resolve it by hand (ops.resolve_lead).'
      WHEN 'SHARED_KEY' THEN 'Its only key is a phone shared by several people (an office phone): not evidence; needs a plate or a manual resolution.'
      WHEN 'WEAK_MATCH_ONLY' THEN 'Its plate is known but no driver of that plate has a similar name (>= 0.66), or the similar one differs by a given name or a surname (a relative: name_veto): check the candidates and resolve by hand if one is right.'
      WHEN 'AMBIGUOUS' THEN 'Several drivers fit equally well: never resolved automatically; pick one with ops.resolve_lead.'
      WHEN 'CONFLICT' THEN 'Different rules point to different drivers: check the candidates and resolve by hand.'
      ELSE CASE
        WHEN v_lead_date >= v_scope.scope_from THEN
          'No driver has its phone or plate yet: the next run after a driver with that phone or plate arrives tries it again.'
        WHEN v_lead_date IS NULL THEN
          'No driver has its phone or plate yet, and the lead has no lead date (lead_created_at): no run selects it; fix the lead row or resolve it by hand (ops.resolve_lead).'
        ELSE format('No driver has its phone or plate yet, and its lead date %s is before the runs'' scope (days_back %s: from %s): it is not retried. To retry it once: cabinet-leads reconcile --days-back %s (CALL ops.reconcile_cabinet_leads_pipeline(p_days_back => %s)).',
                    v_lead_date, v_scope.days_back, v_scope.scope_from,
                    canon.business_today() - v_lead_date, canon.business_today() - v_lead_date)
      END
    END)
  INTO v_result;
  RETURN v_result;
END
$$;
COMMENT ON FUNCTION ops.explain_lead(text) IS 'Why a lead is (not) matched: normalised keys, state, every candidate with rule, score, kept or reject reason, and the decision now.';

-- snapshot of sql/ops/ops.v_cabinet_leads_limbo.sql
-- ops.v_cabinet_leads_limbo: where every cabinet lead is stuck on the chain
-- lead -> person -> driver -> trips in window -> claim (SPEC 8). Exactly one row per lead
-- row with lead_created_at; rows sharing a lead key show the same key-based data.
-- Built on canon.v_cabinet_lead_status_current: the lead state stored by the pipeline
-- (canon.cabinet_lead_state, defined by canon.v_cabinet_lead_status: driver from
-- canon.v_person_driver, window and amounts from canon.claim_rules, claims of THIS lead's
-- key, any status) as of evaluated_at, the last run that re-evaluated the lead; leads newer
-- than the last run are evaluated live. Stage = first that applies: NO_IDENTITY,
-- NO_DRIVER, NO_TRIPS_14D, TRIPS_NO_CLAIM, OK. Lead columns (phone, plate, name), the
-- unmatched reason and window_status are always current.
--   SELECT limbo_stage, COUNT(*) AS count FROM ops.v_cabinet_leads_limbo
--   GROUP BY limbo_stage ORDER BY count DESC;
CREATE OR REPLACE VIEW ops.v_cabinet_leads_limbo AS
SELECT s.lead_id,
       s.lead_source_pk,
       s.lead_date,
       s.week_start,
       s.park_phone,
       s.asset_plate_number,
       s.lead_name,
       s.person_key,
       s.driver_id,
       s.trips_14d,
       s.window_end_14d,
       s.window_status,
       s.reached_m1_14d,
       s.reached_m5_14d,
       s.reached_m25_14d,
       s.expected_amount_14d,
       s.has_claim_m1,
       s.has_claim_m5,
       s.has_claim_m25,
       s.limbo_stage,
       CASE s.limbo_stage
         WHEN 'NO_IDENTITY' THEN
           CASE
             WHEN s.unmatched_status IS NULL THEN
               format('Lead %s has no identity: not evaluated yet; the next run matches it (leads older than the run''s days_back are not selected: CALL ops.reconcile_cabinet_leads_pipeline(p_days_back => %s)).',
                      s.lead_source_pk, greatest(canon.business_today() - s.lead_date + 1, 0))
             WHEN s.unmatched_status = 'IGNORED' THEN
               format('Lead %s has no identity: %s, marked IGNORED by hand (%s); set status = ''OPEN'' in canon.identity_unmatched to have the job retry it.',
                      s.lead_source_pk, s.reason_code, coalesce(s.unmatched_note, 'no note'))
             WHEN s.reason_code = 'AMBIGUOUS' THEN
               format('Lead %s has no identity: AMBIGUOUS (%s candidate drivers: %s, for plate %s / phone %s); check the candidates in canon.identity_unmatched and link the right driver by hand.',
                      s.lead_source_pk, s.candidate_count, s.candidate_drivers, coalesce(s.asset_plate_number, '-'), coalesce(s.park_phone, '-'))
             WHEN s.reason_code = 'CONFLICT' THEN
               format('Lead %s has no identity: CONFLICT (rules point to different drivers: %s); check the candidates in canon.identity_unmatched and link the right driver by hand.',
                      s.lead_source_pk, s.candidate_drivers)
             WHEN s.reason_code = 'WEAK_MATCH_ONLY' THEN
               format('Lead %s has no identity: WEAK_MATCH_ONLY (plate %s found on %s, but no driver name is similar to "%s"); correct the lead name or link the driver by hand.',
                      s.lead_source_pk, coalesce(s.asset_plate_number, '-'), s.candidate_drivers, coalesce(s.lead_name, ''))
             WHEN s.reason_code = 'SHARED_KEY' THEN
               format('Lead %s has no identity: SHARED_KEY (its only key, phone %s, is shared by several people); add the driver''s plate or license to the lead.',
                      s.lead_source_pk, coalesce(s.park_phone, '-'))
             -- scope once per query (an InitPlan): leads before it are not retried
             WHEN s.reason_code = 'NO_CANDIDATES' AND s.lead_date < (SELECT x.scope_from FROM canon.last_run_scope() x) THEN
               format('Lead %s has no identity: NO_CANDIDATES (no driver had phone %s or plate %s, %s attempts) and its lead date %s is before the runs'' days_back: it is not retried; to retry it once: cabinet-leads reconcile --days-back %s.',
                      s.lead_source_pk, coalesce(s.park_phone, '-'), coalesce(s.asset_plate_number, '-'), s.unmatched_attempts,
                      s.lead_date, canon.business_today() - s.lead_date)
             WHEN s.reason_code = 'NO_CANDIDATES' THEN
               format('Lead %s has no identity: NO_CANDIDATES (no driver has phone %s or plate %s yet, %s attempts); retried when a driver with that phone or plate arrives, else check the lead''s phone and plate.',
                      s.lead_source_pk, coalesce(s.park_phone, '-'), coalesce(s.asset_plate_number, '-'), s.unmatched_attempts)
             WHEN s.reason_code = 'MISSING_KEYS' THEN
               format('Lead %s has no identity: MISSING_KEYS (no phone, plate or license on the lead); complete the lead in the cabinet.',
                      s.lead_source_pk)
             ELSE
               format('Lead %s has no identity: %s; see canon.identity_unmatched.', s.lead_source_pk, s.reason_code)
           END
         WHEN 'NO_DRIVER' THEN
           format('Lead %s is linked to person %s, who has no driver link; link the person''s driver (canon.identity_links, source_table ''drivers'').',
                  s.lead_source_pk, s.person_key)
         WHEN 'NO_TRIPS_14D' THEN
           CASE
             WHEN s.window_end_14d IS NULL THEN
               format('Lead %s has no claim rule for lead date %s; add one to canon.claim_rules.', s.lead_source_pk, s.lead_date)
             WHEN s.window_status = 'OPEN' THEN
               format('Lead %s: driver %s has no trips yet in [%s, %s), window open for %s more day(s); wait for summary_daily.',
                      s.lead_source_pk, s.driver_id, s.lead_date, s.window_end_14d, s.window_end_14d - canon.business_today())
             ELSE
               format('Lead %s: driver %s had no trips in [%s, %s) and the window is closed; nothing to claim unless summary_daily is late (check ops.v_trip_rows_unparseable for driver %s).',
                      s.lead_source_pk, s.driver_id, s.lead_date, s.window_end_14d, s.driver_id)
           END
         WHEN 'TRIPS_NO_CLAIM' THEN
           format('Lead %s: driver %s reached %s with %s trips in [%s, %s) but has no claim for %s; run the pipeline, or SELECT canon.generate_cabinet_claims(NULL, DATE ''%s'') for a lead older than its days_back.',
                  s.lead_source_pk, s.driver_id,
                  concat_ws(', ', CASE WHEN s.reached_m1_14d THEN 'M1' END, CASE WHEN s.reached_m5_14d THEN 'M5' END, CASE WHEN s.reached_m25_14d THEN 'M25' END),
                  s.trips_14d, s.lead_date, s.window_end_14d,
                  concat_ws(', ', CASE WHEN s.reached_m1_14d AND NOT s.has_claim_m1 THEN 'M1' END,
                                  CASE WHEN s.reached_m5_14d AND NOT s.has_claim_m5 THEN 'M5' END,
                                  CASE WHEN s.reached_m25_14d AND NOT s.has_claim_m25 THEN 'M25' END),
                  s.lead_date)
         ELSE
           format('Lead %s is complete: driver %s, %s trips in [%s, %s), a claim for every milestone reached (%s).',
                  s.lead_source_pk, s.driver_id, s.trips_14d, s.lead_date, s.window_end_14d,
                  coalesce(nullif(concat_ws(', ', CASE WHEN s.reached_m1_14d THEN 'M1' END, CASE WHEN s.reached_m5_14d THEN 'M5' END,
                                                  CASE WHEN s.reached_m25_14d THEN 'M25' END), ''), 'none'))
       END AS limbo_reason_detail,
       s.reason_code,
       s.evaluated_at
FROM (
  SELECT c.lead_id,
         c.lead_source_pk,
         c.lead_date,
         date_trunc('week', c.lead_date::timestamp)::date AS week_start,
         l.park_phone::text AS park_phone,
         l.asset_plate_number::text AS asset_plate_number,
         nullif(btrim(regexp_replace(concat_ws(' ', l.first_name, l.middle_name, l.last_name), '\s+', ' ', 'g')), '') AS lead_name,
         c.person_key,
         c.driver_id,
         c.trips_in_window AS trips_14d,
         c.window_end AS window_end_14d,
         CASE WHEN c.window_end IS NULL THEN NULL
              -- today once per query (an InitPlan), not a settings lookup per lead
              WHEN (SELECT canon.business_today()) < c.window_end THEN 'OPEN'
              ELSE 'CLOSED' END AS window_status,
         c.reached_m1 AS reached_m1_14d,
         c.reached_m5 AS reached_m5_14d,
         c.reached_m25 AS reached_m25_14d,
         c.expected_amount AS expected_amount_14d,
         c.has_claim_m1,
         c.has_claim_m5,
         c.has_claim_m25,
         c.limbo_stage,
         CASE WHEN c.person_key IS NULL AND u.status <> 'RESOLVED' THEN u.reason_code END AS reason_code,
         CASE WHEN c.person_key IS NULL AND u.status <> 'RESOLVED' THEN u.status END AS unmatched_status,
         u.note AS unmatched_note,
         u.attempts AS unmatched_attempts,
         jsonb_array_length(u.candidates) AS candidate_count,
         (SELECT coalesce(string_agg(x.value->>'driver_id', ', '), 'none')
          FROM jsonb_array_elements(u.candidates) x) AS candidate_drivers,
         c.evaluated_at
  FROM canon.v_cabinet_lead_status_current c
  LEFT JOIN public.module_ct_cabinet_leads l
    ON l.id = c.lead_id
  LEFT JOIN canon.identity_unmatched u
    ON u.source_table = 'module_ct_cabinet_leads'
   AND u.source_pk = c.lead_source_pk
) s;
COMMENT ON VIEW ops.v_cabinet_leads_limbo IS
  'One row per cabinet lead with lead_created_at: identity, driver, trips in the 14-day window, milestones, claims of this lead, limbo_stage (NO_IDENTITY, NO_DRIVER, NO_TRIPS_14D, TRIPS_NO_CLAIM, OK) and an actionable limbo_reason_detail.';

-- snapshot of sql/ops/ops.v_review_queue.sql
-- ops.v_review_queue: the leads waiting for a person (SPEC 6: AMBIGUOUS, CONFLICT,
-- WEAK_MATCH_ONLY and SHARED_KEY are never decided by the job), one row per lead key,
-- ranked: most money at stake first, then the oldest. Candidates side by side as jsonb,
-- each with the driver as public.drivers holds it (name, park, phone, plate, hire
-- date), the rule, score and name similarity the matcher recorded at its last
-- attempt (canon.identity_unmatched.candidates), why it was not linked, and what the lead
-- would claim with that driver (trips in the lead's window, amounts of canon.claim_rules).
-- Read by `cabinet-leads review`; for psql:
--   SELECT review_rank, lead_source_pk, reason_code, money_at_stake, jsonb_pretty(candidates)
--   FROM ops.v_review_queue ORDER BY review_rank LIMIT 20;
-- Decide with ops.resolve_lead(key, driver_id, note) or ops.ignore_lead(key, note).
CREATE OR REPLACE VIEW ops.v_review_queue AS
WITH waiting AS (
  SELECT u.source_pk AS lead_source_pk, u.reason_code, u.candidates, u.attempts,
         u.first_attempt_at, u.last_attempt_at, u.details
  FROM canon.identity_unmatched u
  WHERE u.status = 'OPEN'
    AND u.source_table = 'module_ct_cabinet_leads'
    AND u.reason_code IN ('AMBIGUOUS', 'CONFLICT', 'WEAK_MATCH_ONLY', 'SHARED_KEY')
),
leads AS (
  -- the key's first dated row (rows sharing a key are one lead)
  SELECT w.*, k.lead_id, k.lead_date, k.lead_name,
         l.park_phone::text AS park_phone, l.asset_plate_number::text AS asset_plate_number,
         rp.window_days, rp.currency,
         rp.m1_trips_threshold, rp.m1_amount, rp.m5_trips_threshold, rp.m5_amount, rp.m25_trips_threshold, rp.m25_amount
  FROM waiting w
  LEFT JOIN LATERAL (
    SELECT k.lead_id, k.lead_date, k.lead_name
    FROM canon.lead_keys k
    WHERE k.lead_source_pk = w.lead_source_pk
    ORDER BY k.lead_date IS NULL, k.lead_id
    LIMIT 1
  ) k ON true
  LEFT JOIN public.module_ct_cabinet_leads l ON l.id = k.lead_id
  LEFT JOIN canon.v_claim_rule_periods rp
    ON rp.period_from <= k.lead_date AND (rp.period_to IS NULL OR k.lead_date < rp.period_to)
),
candidates AS (
  SELECT le.lead_source_pk, c.pos,
         c.value->>'driver_id' AS driver_id,
         c.value->>'rule' AS rule,
         (c.value->>'score')::numeric AS score,
         (c.value->>'name_similarity')::numeric AS name_similarity,
         coalesce((c.value->>'kept')::boolean, c.value->>'reject_reason' IS NULL) AS kept,
         c.value->>'reject_reason' AS reject_reason,
         d.park_id, d.driver_name, d.phone, d.plate, d.hire_date,
         d.park_id IS NOT DISTINCT FROM canon.setting('target_park_id') AS in_target_park,
         d.driver_id IS NULL AS driver_gone,
         coalesce(t.trips, 0)::bigint AS trips_in_window,
         (CASE WHEN t.trips >= le.m1_trips_threshold THEN le.m1_amount ELSE 0 END
          + CASE WHEN t.trips >= le.m5_trips_threshold THEN le.m5_amount ELSE 0 END
          + CASE WHEN t.trips >= le.m25_trips_threshold THEN le.m25_amount ELSE 0 END)::numeric(12, 2) AS amount_in_window,
         CASE c.value->>'reject_reason'
           WHEN 'NAME_NOT_SIMILAR' THEN format('the plate is the same, the name is not similar enough (%s, below 0.66)', c.value->>'name_similarity')
           WHEN 'NAME_VETO' THEN 'the plate is the same and the name close, but a given name or surname differs (a relative?)'
           WHEN 'NAME_LESS_SIMILAR_THAN_BEST' THEN 'another driver of this plate has a clearly more similar name'
           WHEN 'PHONE_SHARED_BY_LEADS' THEN 'the phone is on other leads under other names (an office phone): no evidence'
           WHEN 'PHONE_SHARED_BY_DRIVERS' THEN 'the phone belongs to several drivers with other names: no evidence'
           WHEN 'OTHER_PARK_TARGET_PREFERRED' THEN 'another park: a target park driver was found'
           WHEN 'DRIVER_DELETED' THEN 'the driver is no longer in public.drivers'
           ELSE CASE le.reason_code
                  WHEN 'AMBIGUOUS' THEN 'fits as well as another driver of the same rule'
                  WHEN 'CONFLICT' THEN 'another rule points to another driver'
                  ELSE 'not decisive on its own'
                END
         END AS why_not_linked
  FROM leads le
  CROSS JOIN LATERAL jsonb_array_elements(le.candidates) WITH ORDINALITY AS c (value, pos)
  -- The row as one value (to_jsonb): a view naming upstream columns would stop the
  -- upstream owner from altering them; the source contract already checks they exist.
  LEFT JOIN LATERAL (
    SELECT r->>'driver_id' AS driver_id, r->>'park_id' AS park_id,
           coalesce(nullif(btrim(r->>'full_name'), ''),
                    nullif(btrim(concat_ws(' ', r->>'first_name', r->>'middle_name', r->>'last_name')), '')) AS driver_name,
           r->>'phone' AS phone, coalesce(r->>'car_number', r->>'car_normalized_number') AS plate, (r->>'hire_date')::date AS hire_date
    FROM (SELECT to_jsonb(x) AS r FROM public.drivers x WHERE x.driver_id = c.value->>'driver_id' LIMIT 1) y
  ) d ON true
  -- trips of this candidate in the lead's window, as canon.v_cabinet_lead_chain counts them
  LEFT JOIN LATERAL (
    SELECT sum(sd.count_orders_completed) AS trips
    FROM public.summary_daily sd
    WHERE sd.driver_id = c.value->>'driver_id'
      AND canon.parse_date_file(sd.date_file) >= le.lead_date
      AND canon.parse_date_file(sd.date_file) < le.lead_date + le.window_days
  ) t ON true
),
per_lead AS (
  SELECT c.lead_source_pk,
         max(c.amount_in_window) AS money_at_stake,
         jsonb_agg(jsonb_build_object(
           'driver_id', c.driver_id, 'driver_name', c.driver_name, 'park_id', c.park_id,
           'in_target_park', c.in_target_park, 'phone', c.phone, 'plate', c.plate,
           'hire_date', c.hire_date, 'driver_gone', c.driver_gone,
           'rule', c.rule, 'score', c.score, 'name_similarity', c.name_similarity,
           'kept', c.kept, 'reject_reason', c.reject_reason, 'why_not_linked', c.why_not_linked,
           'trips_in_window', c.trips_in_window, 'amount_in_window', c.amount_in_window)
           ORDER BY c.pos) AS candidates
  FROM candidates c
  GROUP BY c.lead_source_pk
)
SELECT row_number() OVER (ORDER BY coalesce(p.money_at_stake, 0) DESC, le.lead_date NULLS LAST, le.lead_source_pk) AS review_rank,
       le.lead_source_pk,
       le.lead_id,
       le.lead_date,
       canon.business_today() - le.lead_date AS age_days,
       le.lead_name,
       le.park_phone,
       le.asset_plate_number,
       le.reason_code,
       coalesce(p.money_at_stake, 0)::numeric(12, 2) AS money_at_stake,
       coalesce(le.currency, 'PEN') AS currency,
       jsonb_array_length(le.candidates) AS candidate_count,
       coalesce(p.candidates, '[]'::jsonb) AS candidates,
       le.attempts,
       le.first_attempt_at,
       le.last_attempt_at
FROM leads le
LEFT JOIN per_lead p ON p.lead_source_pk = le.lead_source_pk;
COMMENT ON VIEW ops.v_review_queue IS
  'Leads waiting for a person (OPEN AMBIGUOUS, CONFLICT, WEAK_MATCH_ONLY, SHARED_KEY), one row per lead key, review_rank 1 first (most money at stake, then oldest), candidates side by side as jsonb (driver, park, phone, plate, hire date, rule, score, why not linked, what the lead would claim with it). Decide with ops.resolve_lead / ops.ignore_lead.';
