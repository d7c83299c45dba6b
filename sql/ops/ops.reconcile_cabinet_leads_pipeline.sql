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
  v_match jsonb;
  v_pending_cleared integer;
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
  IF NOT canon.try_job_lock() THEN
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

  v_stats := jsonb_build_object('abandoned_runs_marked', v_abandoned);

  -- Steps 3-8: all or nothing. Each step is a function of its own; its stats go under its
  -- name, its time to stats.steps (canon.step_done).
  BEGIN
    -- Step 3: the upstream tables have what the product reads.
    v_t := clock_timestamp();
    v_stats := v_stats || jsonb_build_object('source_contract_columns', canon.check_source_contract());
    v_steps := v_steps || canon.step_done('check_source_contract', v_t);

    -- Limbo is counted once per run: "before" is the snapshot of the previous completed run
    -- (live counts only when there is none yet), "after" is this run's own in step 8.
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

    -- Step 4: the driver index, and the unmatched leads its changes make due.
    v_t := clock_timestamp();
    v_stats := v_stats || jsonb_build_object('driver_index', canon.refresh_driver_index(v_run_id));
    v_steps := v_steps || canon.step_done('refresh_driver_index', v_t);
    PERFORM canon.failpoint('after_refresh_driver_index');
    v_t := clock_timestamp();
    v_match := canon.mark_retries_due(v_run_id);
    v_steps := v_steps || canon.step_done('mark_retries_due', v_t);

    -- Step 5: every lead row written since the last read keyed; the batch.
    v_t := clock_timestamp();
    v_step_out := canon.key_changed_leads(v_run_id);
    v_match := v_match || jsonb_build_object(
      'lead_keys', v_step_out,
      'leads_keyed', v_step_out->'lead_rows_written',
      'leads_without_lead_created_at', v_step_out->'lead_rows_undated',
      'leads_with_oversized_key', v_step_out->'leads_with_oversized_key');
    v_steps := v_steps || canon.step_done('key_changed_leads', v_t);
    v_t := clock_timestamp();
    v_step_out := canon.select_lead_batch(v_scope_from, p_limit, p_only_limbo);
    v_match := v_match || (v_step_out - 'pending_cleared');
    v_pending_cleared := (v_step_out->>'pending_cleared')::integer;
    v_steps := v_steps || canon.step_done('select_lead_batch', v_t);

    -- Step 6: the batch decided and linked.
    v_t := clock_timestamp();
    v_step_out := canon.link_decisions(v_run_id, p_only_limbo);
    v_match := v_match || (v_step_out - 'pending_cleared')
               || jsonb_build_object('pending_flags_cleared', v_pending_cleared + (v_step_out->>'pending_cleared')::integer);
    v_stats := v_stats || jsonb_build_object('match', v_match);
    v_steps := v_steps || canon.step_done('link_decisions', v_t);
    -- Step 6b: the probabilistic tier on the leads the rules left behind.
    v_t := clock_timestamp();
    v_stats := v_stats || jsonb_build_object('probabilistic', canon.link_probabilistic(v_run_id));
    v_steps := v_steps || canon.step_done('link_probabilistic', v_t);
    PERFORM canon.failpoint('after_match');
    -- A large batch (backfill) changes these tables faster than autovacuum analyses
    -- them; the next statements would be planned for the tables as they were.
    IF (v_match->>'leads_evaluated')::integer >= 5000 THEN
      ANALYZE canon.identity_links, canon.identity_unmatched, canon_internal.lead_keys, canon.identity_registry;
    END IF;

    -- Step 7: the lead state brought up to date, the missing claims generated.
    v_t := clock_timestamp();
    v_stats := v_stats || jsonb_build_object('claims', canon.generate_cabinet_claims(v_run_id, v_scope_from, p_only_limbo));
    v_steps := v_steps || canon.step_done('generate_cabinet_claims', v_t);
    PERFORM canon.failpoint('after_claims');

    -- Step 8: the limbo snapshot and the alert rules.
    v_t := clock_timestamp();
    v_step_out := ops.snapshot_limbo(v_run_id);
    v_stats := v_stats || jsonb_build_object('snapshot', v_step_out, 'limbo_after', v_step_out->'stages');
    v_steps := v_steps || canon.step_done('snapshot_limbo', v_t);
    PERFORM canon.failpoint('after_snapshot');

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
                    || jsonb_build_object(
                         'match', (SELECT sum((s->>'ms')::numeric) FROM jsonb_array_elements(v_steps) s
                                   WHERE s->>'step' IN ('mark_retries_due', 'key_changed_leads', 'select_lead_batch', 'link_decisions')),
                         'total', round((extract(epoch FROM clock_timestamp() - v_t0) * 1000)::numeric, 1)));
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
