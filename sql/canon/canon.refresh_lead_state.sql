-- canon.refresh_lead_state: re-evaluates the given lead rows from the live definition
-- (canon.v_cabinet_lead_status) into canon_internal.cabinet_lead_state, set-based: a row is
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
  v_gone integer[];
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

  INSERT INTO canon_internal.cabinet_lead_state AS s (
    lead_id, lead_source_pk, lead_date, person_key, driver_id, window_days, window_end,
    trips_in_window, trip_rows_in_window, currency,
    m1_trips_threshold, m1_amount, reached_m1, m5_trips_threshold, m5_amount, reached_m5,
    m25_trips_threshold, m25_amount, reached_m25, expected_amount,
    has_claim_m1, has_claim_m5, has_claim_m25, limbo_stage, key_rows, paid_claims, paid_amount, evaluated_at, evaluated_run_id)
  SELECT f.lead_id, f.lead_source_pk, f.lead_date, f.person_key, f.driver_id, f.window_days, f.window_end,
         f.trips_in_window, f.trip_rows_in_window, f.currency,
         f.m1_trips_threshold, f.m1_amount, f.reached_m1, f.m5_trips_threshold, f.m5_amount, f.reached_m5,
         f.m25_trips_threshold, f.m25_amount, f.reached_m25, f.expected_amount,
         f.has_claim_m1, f.has_claim_m5, f.has_claim_m25, f.limbo_stage, f.key_rows, f.paid_claims, f.paid_amount, now(), p_run_id
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
        limbo_stage = excluded.limbo_stage, key_rows = excluded.key_rows,
        paid_claims = excluded.paid_claims, paid_amount = excluded.paid_amount, evaluated_at = excluded.evaluated_at, evaluated_run_id = excluded.evaluated_run_id
    WHERE (s.lead_source_pk, s.lead_date, s.person_key, s.driver_id, s.window_days, s.window_end,
           s.trips_in_window, s.trip_rows_in_window, s.currency,
           s.m1_trips_threshold, s.m1_amount, s.reached_m1, s.m5_trips_threshold, s.m5_amount, s.reached_m5,
           s.m25_trips_threshold, s.m25_amount, s.reached_m25, s.expected_amount,
           s.has_claim_m1, s.has_claim_m5, s.has_claim_m25, s.limbo_stage, s.key_rows, s.paid_claims, s.paid_amount)
          IS DISTINCT FROM
          (excluded.lead_source_pk, excluded.lead_date, excluded.person_key, excluded.driver_id, excluded.window_days, excluded.window_end,
           excluded.trips_in_window, excluded.trip_rows_in_window, excluded.currency,
           excluded.m1_trips_threshold, excluded.m1_amount, excluded.reached_m1, excluded.m5_trips_threshold, excluded.m5_amount, excluded.reached_m5,
           excluded.m25_trips_threshold, excluded.m25_amount, excluded.reached_m25, excluded.expected_amount,
           excluded.has_claim_m1, excluded.has_claim_m5, excluded.has_claim_m25, excluded.limbo_stage, excluded.key_rows,
           excluded.paid_claims, excluded.paid_amount);
  GET DIAGNOSTICS v_written = ROW_COUNT;

  -- The rows evaluated and gone, found first (few or none) and removed by key: one
  -- statement with the anti-join was planned as a pass over every stored row.
  v_gone := ARRAY(SELECT x.lead_id FROM unnest(p_lead_ids) x (lead_id)
                  EXCEPT SELECT f.lead_id FROM pg_temp.lead_state_fresh f);
  v_removed := 0;
  IF cardinality(v_gone) > 0 THEN
    DELETE FROM canon_internal.cabinet_lead_state s WHERE s.lead_id = ANY (v_gone);
    GET DIAGNOSTICS v_removed = ROW_COUNT;
  END IF;

  DROP TABLE pg_temp.lead_state_fresh;
  -- What the limbo snapshot compares with to know whether it must recount.
  IF v_written + v_removed > 0 THEN
    UPDATE canon_internal.cabinet_lead_state_meta SET changed_at = now();
  END IF;
  RETURN jsonb_build_object('evaluated', v_evaluated, 'written', v_written, 'removed', v_removed,
                            'trip_rows_read', v_trip_rows);
END
$$;
COMMENT ON FUNCTION canon.refresh_lead_state(bigint, integer[]) IS
  'Re-evaluates the given lead rows into canon_internal.cabinet_lead_state from canon.v_cabinet_lead_status (rows rewritten only when changed, removed when the lead is gone). Returns {evaluated, written, removed, trip_rows_read}.';
