-- Up Migration
-- snapshot of sql/canon/canon.protect_settled_claims.sql
-- canon.protect_settled_claims: trigger function of canon.claims_yango_cabinet_14d that
-- keeps settled money (paid or rejected claims) safe from the job. Two roles:
--   the guard (trigger claims_protect_settled, BEFORE UPDATE OR DELETE, per row): inside
--   a pipeline run (the run sets cabinet.in_pipeline = 'on' for its transaction) a paid
--   or rejected claim can never change or disappear (SQLSTATE CL012); outside a run
--   (finance corrections in psql) every change is allowed;
--   the record (triggers claims_record_settled_*, AFTER each statement): every allowed
--   change is copied into canon.claims_settled, the last known content of each settled
--   claim, which ops.check_invariants() compares with the table to find settled claims
--   changed behind the guard's back (trigger disabled, session_replication_role).
CREATE OR REPLACE FUNCTION canon.protect_settled_claims()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF TG_LEVEL = 'ROW' THEN
    IF OLD.status IN ('paid', 'rejected') AND coalesce(current_setting('cabinet.in_pipeline', true), '') = 'on'
       AND (TG_OP = 'DELETE' OR to_jsonb(NEW) IS DISTINCT FROM to_jsonb(OLD)) THEN
      RAISE EXCEPTION 'claim (%, M%) is % and cannot be changed by a pipeline run', OLD.lead_source_pk, OLD.milestone, OLD.status
        USING ERRCODE = 'CL012',
              HINT = 'Settled claims are changed by finance outside a run; the job only inserts missing claims.';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
  END IF;

  -- Statement level, after the change: bring the record of settled claims in step.
  IF TG_OP = 'TRUNCATE' THEN
    DELETE FROM canon.claims_settled;
    RETURN NULL;
  END IF;
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    DELETE FROM canon.claims_settled s
    USING old_claims o
    WHERE o.status IN ('paid', 'rejected')
      AND s.lead_source_pk = o.lead_source_pk AND s.milestone = o.milestone;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    INSERT INTO canon.claims_settled AS s (
      lead_source_pk, milestone, status, amount_expected, currency, person_key, driver_id, lead_date,
      generated_at, paid_at, run_id)
    SELECT n.lead_source_pk, n.milestone, n.status, n.amount_expected, n.currency, n.person_key, n.driver_id,
           n.lead_date, n.generated_at, n.paid_at, n.run_id
    FROM new_claims n
    WHERE n.status IN ('paid', 'rejected')
    ON CONFLICT (lead_source_pk, milestone) DO UPDATE
      SET status = excluded.status, amount_expected = excluded.amount_expected, currency = excluded.currency,
          person_key = excluded.person_key, driver_id = excluded.driver_id, lead_date = excluded.lead_date,
          generated_at = excluded.generated_at, paid_at = excluded.paid_at, run_id = excluded.run_id,
          recorded_at = now(), recorded_by = current_user;
  END IF;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION canon.protect_settled_claims() IS
  'Trigger: a pipeline run can never change or delete a paid or rejected claim (SQLSTATE CL012); every allowed change of a settled claim is recorded in canon.claims_settled.';

-- snapshot of migrations/parts/0009_reliability.sql
-- Reliability (issue 8): settled claims guarded against the job and recorded, so that
-- ops.check_invariants() (and `cabinet-leads doctor`) can tell when one changed anyway.

CREATE TABLE canon.claims_settled (
  lead_source_pk   text NOT NULL,
  milestone        integer NOT NULL,
  status           text NOT NULL CHECK (status IN ('paid', 'rejected')),
  amount_expected  numeric(12, 2) NOT NULL,
  currency         text NOT NULL,
  person_key       uuid,
  driver_id        text,
  lead_date        date NOT NULL,
  generated_at     timestamptz,
  paid_at          timestamptz,
  run_id           bigint,
  recorded_at      timestamptz NOT NULL DEFAULT now(),
  recorded_by      text NOT NULL DEFAULT current_user,
  PRIMARY KEY (lead_source_pk, milestone)
);
-- No foreign key to the claims on purpose: a settled claim deleted behind the guard's
-- back must leave its record behind, so that the invariant check can name it.
COMMENT ON TABLE canon.claims_settled IS
  'Last known content of every paid or rejected claim, kept by the triggers of canon.claims_yango_cabinet_14d on every allowed change; ops.check_invariants() reports claims that differ from it (SETTLED_CLAIM_CHANGED).';

-- Settled before this migration: recorded as they are now.
INSERT INTO canon.claims_settled (
  lead_source_pk, milestone, status, amount_expected, currency, person_key, driver_id, lead_date,
  generated_at, paid_at, run_id)
SELECT c.lead_source_pk, c.milestone, c.status, c.amount_expected, c.currency, c.person_key, c.driver_id,
       c.lead_date, c.generated_at, c.paid_at, c.run_id
FROM canon.claims_yango_cabinet_14d c
WHERE c.status IN ('paid', 'rejected');

-- The guard: a pipeline run can never change or delete a settled claim.
CREATE TRIGGER claims_protect_settled
  BEFORE UPDATE OR DELETE ON canon.claims_yango_cabinet_14d
  FOR EACH ROW EXECUTE FUNCTION canon.protect_settled_claims();
-- The record: every allowed change of a settled claim, once per statement.
CREATE TRIGGER claims_record_settled_insert
  AFTER INSERT ON canon.claims_yango_cabinet_14d
  REFERENCING NEW TABLE AS new_claims
  FOR EACH STATEMENT EXECUTE FUNCTION canon.protect_settled_claims();
CREATE TRIGGER claims_record_settled_update
  AFTER UPDATE ON canon.claims_yango_cabinet_14d
  REFERENCING OLD TABLE AS old_claims NEW TABLE AS new_claims
  FOR EACH STATEMENT EXECUTE FUNCTION canon.protect_settled_claims();
CREATE TRIGGER claims_record_settled_delete
  AFTER DELETE ON canon.claims_yango_cabinet_14d
  REFERENCING OLD TABLE AS old_claims
  FOR EACH STATEMENT EXECUTE FUNCTION canon.protect_settled_claims();
CREATE TRIGGER claims_record_settled_truncate
  AFTER TRUNCATE ON canon.claims_yango_cabinet_14d
  FOR EACH STATEMENT EXECUTE FUNCTION canon.protect_settled_claims();

-- snapshot of sql/ops/ops.check_invariants.sql
-- ops.check_invariants: every invariant of the spec with its number of violations (0 =
-- holds) and up to 5 examples. Also `cabinet-leads doctor`, which exits 1 when any
-- invariant is violated, and the last statement of every reliability test. Read-only;
-- safe to run at any time, also while a run is in progress.
--   SELECT * FROM ops.check_invariants() WHERE violations > 0;
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
    FROM (SELECT s.id FROM public.module_ct_cabinet_leads s WHERE s.lead_created_at IS NOT NULL) l
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
    FULL JOIN canon.claims_settled s
      ON s.lead_source_pk = c.lead_source_pk AND s.milestone = c.milestone
    WHERE c.lead_source_pk IS NULL
       OR s.lead_source_pk IS NULL
       OR (c.status, c.amount_expected, c.currency, c.person_key, c.driver_id, c.lead_date, c.generated_at, c.paid_at, c.run_id)
          IS DISTINCT FROM
          (s.status, s.amount_expected, s.currency, s.person_key, s.driver_id, s.lead_date, s.generated_at, s.paid_at, s.run_id)
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
    SELECT 5, 'LIMBO_ROW_COUNT', 'ops.v_cabinet_leads_limbo must have exactly one row per lead with lead_created_at',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM limbo_mismatch ORDER BY example LIMIT 5) x), (SELECT count(*) FROM limbo_mismatch)
    UNION ALL
    SELECT 6, 'SETTLED_CLAIM_UNGUARDED', 'the triggers that keep pipeline runs off paid and rejected claims, and record them, must exist and be enabled',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM settled_guard ORDER BY example LIMIT 5) x), (SELECT count(*) FROM settled_guard)
    UNION ALL
    SELECT 7, 'SETTLED_CLAIM_CHANGED', 'paid or rejected claims that differ from canon.claims_settled (changed, deleted or settled while the guard was off)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM settled_changed ORDER BY example LIMIT 5) x), (SELECT count(*) FROM settled_changed)
  )
  SELECT c.invariant, c.n, coalesce(c.examples, '[]'::jsonb), c.description FROM checks c ORDER BY c.ord
$$;
COMMENT ON FUNCTION ops.check_invariants() IS
  'Every spec invariant with its violation count (0 = holds) and up to 5 examples: SELECT * FROM ops.check_invariants() WHERE violations > 0; cabinet-leads doctor exits 1 when any is violated.';

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
  -- Settled claims are out of the run's reach (trigger claims_protect_settled).
  PERFORM set_config('cabinet.in_pipeline', 'on', true);
  -- A canon table locked by someone else fails the run instead of hanging it: after 30 s,
  -- or sooner when the session asks for less (e.g. PGOPTIONS='-c lock_timeout=5s').
  IF (SELECT s.setting::bigint FROM pg_catalog.pg_settings s WHERE s.name = 'lock_timeout') NOT BETWEEN 1 AND 30000 THEN
    PERFORM set_config('lock_timeout', '30s', true);
  END IF;

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
