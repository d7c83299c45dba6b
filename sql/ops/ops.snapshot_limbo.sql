-- ops.snapshot_limbo: pipeline step 8 (SPEC 7, 9). In one pass over
-- ops.v_cabinet_leads_limbo (ops.limbo_week_counts), or by copying the previous snapshot
-- when no lead state changed since, it stores the run's limbo counts per lead week
-- (ops.limbo_snapshot_weeks) and over all leads (ops.limbo_snapshots), then evaluates the
-- alert rules on that snapshot and records the firing alerts (ops.check_limbo_alerts).
-- It runs inside the run's all-or-nothing transaction: a failed or dry run keeps nothing,
-- so only COMPLETED runs have snapshots. Calling it again for a run replaces its snapshot.
-- Returns the step's stats: counts, rows written, alerts firing (codes, new ones).
CREATE OR REPLACE FUNCTION ops.snapshot_limbo(p_run_id bigint)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
  v_snap jsonb;
  v_weeks integer;
  v_alerts jsonb;
  v_prev_run bigint;
  v_prev_at timestamptz;
  v_reused boolean;
  v_in_run boolean;
BEGIN
  IF p_run_id IS NULL THEN
    RAISE EXCEPTION 'ops.snapshot_limbo: p_run_id is NULL: expected the id of a row of canon.ingestion_runs'
      USING ERRCODE = '22023';
  END IF;

  DELETE FROM ops.limbo_snapshots s WHERE s.run_id = p_run_id;

  -- The counts are those of the previous snapshot when no stored lead state changed since
  -- it was taken and nothing is marked to be evaluated again (the view would give the same
  -- numbers): copied, not recounted. Otherwise counted from the stored state's counters
  -- (canon.limbo_week_counts_of_state): inside a run as of its read of the lead rows (step
  -- 5, moments ago), by hand as of now.
  v_in_run := current_setting('cabinet.in_pipeline', true) IS NOT DISTINCT FROM 'on';
  SELECT s.run_id, s.taken_at INTO v_prev_run, v_prev_at
  FROM ops.limbo_snapshots s
  ORDER BY s.taken_at DESC, s.run_id DESC
  LIMIT 1;
  v_reused := v_in_run AND v_prev_run IS NOT NULL
    AND v_prev_at >= (SELECT m.changed_at FROM canon_internal.cabinet_lead_state_meta m)
    AND NOT EXISTS (SELECT 1 FROM canon_internal.cabinet_lead_state_pending)
    AND NOT EXISTS (SELECT 1 FROM canon_internal.cabinet_lead_state_dirty);

  WITH weeks AS (
    SELECT w.* FROM ops.limbo_week_counts(v_prev_run) w WHERE v_reused
    UNION ALL
    SELECT c.* FROM canon.limbo_week_counts_of_state(NOT v_in_run) c WHERE NOT v_reused
  ),
  snapshot AS (
    INSERT INTO ops.limbo_snapshots (
      run_id, taken_at, business_date, leads, leads_with_identity, leads_with_driver,
      limbo_no_identity, limbo_no_driver, limbo_no_trips_14d, limbo_trips_no_claim, limbo_ok)
    SELECT p_run_id, now(), canon.business_today(),
           coalesce(sum(w.leads), 0), coalesce(sum(w.leads_with_identity), 0), coalesce(sum(w.leads_with_driver), 0),
           coalesce(sum(w.limbo_no_identity), 0), coalesce(sum(w.limbo_no_driver), 0),
           coalesce(sum(w.limbo_no_trips_14d), 0), coalesce(sum(w.limbo_trips_no_claim), 0), coalesce(sum(w.limbo_ok), 0)
    FROM weeks w
    RETURNING *
  ),
  week_rows AS (
    INSERT INTO ops.limbo_snapshot_weeks (
      run_id, week_start, leads, leads_with_identity, leads_with_driver,
      limbo_no_identity, limbo_no_driver, limbo_no_trips_14d, limbo_trips_no_claim, limbo_ok)
    SELECT p_run_id, w.week_start, w.leads, w.leads_with_identity, w.leads_with_driver,
           w.limbo_no_identity, w.limbo_no_driver, w.limbo_no_trips_14d, w.limbo_trips_no_claim, w.limbo_ok
    FROM weeks w
    RETURNING 1
  )
  SELECT to_jsonb(s), (SELECT count(*)::integer FROM week_rows) INTO v_snap, v_weeks
  FROM snapshot s;

  SELECT coalesce(jsonb_agg(jsonb_build_object(
           'rule_code', a.rule_code, 'severity', a.severity, 'subject', a.subject,
           'current_value', a.current_value, 'threshold', a.threshold, 'is_new', a.is_new)), '[]'::jsonb)
  INTO v_alerts
  FROM ops.check_limbo_alerts(p_run_id, true) a;

  RETURN jsonb_build_object(
    'run_id', p_run_id,
    'taken_at', v_snap->'taken_at',
    'business_date', v_snap->'business_date',
    'leads', v_snap->'leads',
    'leads_with_identity', v_snap->'leads_with_identity',
    'leads_with_driver', v_snap->'leads_with_driver',
    'stages', jsonb_build_object(
      'NO_IDENTITY', v_snap->'limbo_no_identity', 'NO_DRIVER', v_snap->'limbo_no_driver',
      'NO_TRIPS_14D', v_snap->'limbo_no_trips_14d', 'TRIPS_NO_CLAIM', v_snap->'limbo_trips_no_claim',
      'OK', v_snap->'limbo_ok'),
    'weeks_written', v_weeks,
    'counts_copied_from_run', CASE WHEN v_reused THEN v_prev_run END,
    'rows_written', v_weeks + 1,
    'alerts_firing', jsonb_array_length(v_alerts),
    'alerts_new', (SELECT count(*) FROM jsonb_array_elements(v_alerts) x WHERE (x->>'is_new')::boolean),
    'alerts', v_alerts);
END
$$;
COMMENT ON FUNCTION ops.snapshot_limbo(bigint) IS
  'Pipeline step 8: stores the limbo counts of run p_run_id per stage, overall and per lead week (ops.limbo_snapshots, ops.limbo_snapshot_weeks), then evaluates and records the alerts. Returns step stats (counts, rows_written, alerts).';
