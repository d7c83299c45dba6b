-- canon.generate_cabinet_claims: pipeline step 7 (SPEC 7). Brings the lead state
-- (canon_internal.cabinet_lead_state) up to date, then inserts, as 'generated', every missing
-- claim (lead_source_pk, milestone) whose milestone a lead of the scope
-- (lead_date >= p_scope_from, not only this run's batch) reached in
-- [lead_date, lead_date + window_days), with the rule's amount; existing claims (paid,
-- rejected, any status) are never touched. Its steps:
--   7a canon.schedule_lead_state   which lead rows to evaluate again, and why
--   7b canon.refresh_lead_state    evaluate them
--   7c canon.insert_missing_claims the missing claims, decided on the live chain
--   7d canon.move_claimed_leads_on the claimed rows' state follows their claims
--   7e marks committed meanwhile evaluated, the marks taken cleared, the figures
-- A sweep (every lead of the scope) runs on the first run of each business day, when
-- called by hand (p_run_id NULL: the lead rows written since the last read are keyed
-- first, as step 5 does) and after the claim rules changed. Returns step stats, including
-- lead_state {mode, trips, reasons, evaluated, written, removed}.
CREATE OR REPLACE FUNCTION canon.generate_cabinet_claims(p_run_id bigint, p_scope_from date, p_only_limbo boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET client_min_messages = warning
SET jit = off
AS $$
DECLARE
  v_today date := canon.business_today();
  v_meta canon_internal.cabinet_lead_state_meta%ROWTYPE;
  v_sweep boolean;
  v_keys jsonb;
  v_schedule jsonb;
  v_ids integer[];
  v_again_ids integer[];
  v_state jsonb;
  v_state2 jsonb;
  v_claimed_written integer;
  v_generated jsonb;
  v_existing jsonb;
  v_scope jsonb;
  v_stats jsonb;
BEGIN
  IF p_scope_from IS NULL THEN
    RAISE EXCEPTION 'canon.generate_cabinet_claims: p_scope_from is NULL: expected the first lead date of the scope'
      USING ERRCODE = '22023';
  END IF;
  SELECT * INTO v_meta FROM canon_internal.cabinet_lead_state_meta FOR UPDATE;
  v_sweep := p_run_id IS NULL OR v_meta.full_refresh_needed OR v_meta.last_sweep_date IS DISTINCT FROM v_today;
  IF p_run_id IS NULL THEN
    v_keys := canon.key_changed_leads(NULL);
  END IF;

  -- 7a, 7b: THE LEAD STATE ---------------------------------------------------------------
  v_schedule := canon.schedule_lead_state(p_run_id, p_scope_from, p_only_limbo, v_sweep);
  v_ids := ARRAY(SELECT t.lead_id FROM pg_temp.lead_state_todo t ORDER BY t.lead_id);
  v_state := canon.refresh_lead_state(p_run_id, v_ids);
  IF (v_state->>'written')::integer >= 10000 THEN
    ANALYZE canon_internal.cabinet_lead_state;
  END IF;

  -- 7c, 7d: THE CLAIMS -------------------------------------------------------------------
  -- Claims of the scope present before (never touched), by status.
  SELECT coalesce(jsonb_object_agg(e.status, e.n), '{}'::jsonb) INTO v_existing
  FROM (SELECT cl.status, count(*) AS n
        FROM canon.claims_yango_cabinet_14d cl
        WHERE cl.lead_date >= p_scope_from
        GROUP BY cl.status) e;
  -- Stored rows with a claim missing that 7b did not evaluate (a claim out of scope then,
  -- one that failed): evaluated again after the claims.
  v_again_ids := ARRAY(
    SELECT s.lead_id FROM canon_internal.cabinet_lead_state s
    WHERE s.limbo_stage = 'TRIPS_NO_CLAIM' AND s.lead_date >= p_scope_from
      AND NOT EXISTS (SELECT 1 FROM pg_temp.lead_state_todo t WHERE t.lead_id = s.lead_id));
  v_generated := canon.insert_missing_claims(p_run_id, p_scope_from);
  v_claimed_written := canon.move_claimed_leads_on(p_run_id,
    ARRAY(SELECT jsonb_array_elements_text(v_generated->'claimed_keys')));

  -- 7e: MARKS AND BOOKKEEPING -------------------------------------------------------------
  -- Marks committed by others while this step ran (visible now) are evaluated too; then
  -- the marks taken are removed.
  v_state2 := canon.refresh_lead_state(p_run_id, v_again_ids || canon.take_lead_state_marks());
  PERFORM canon.clear_lead_state_marks();
  UPDATE canon_internal.cabinet_lead_state_meta
  SET last_sweep_date = CASE WHEN v_sweep THEN v_today ELSE last_sweep_date END,
      last_sweep_at = CASE WHEN v_sweep THEN now() ELSE last_sweep_at END,
      full_refresh_needed = false,
      updated_at = now();

  -- FIGURES OF THE SCOPE -------------------------------------------------------------------
  -- From the stored rows' counters (canon_internal.cabinet_lead_state_counts,
  -- kept by a trigger as the state changes): a few hundred rows, whatever the scope holds.
  SELECT jsonb_build_object(
           'leads', coalesce(sum(c.leads), 0),
           'with_identity', coalesce(sum(c.leads) FILTER (WHERE c.with_identity), 0),
           'with_driver', coalesce(sum(c.leads) FILTER (WHERE c.with_driver), 0),
           'with_trips', coalesce(sum(c.leads) FILTER (WHERE c.with_trips), 0),
           'without_rule', coalesce(sum(c.leads) FILTER (WHERE NOT c.with_rule), 0),
           'trips_no_claim', coalesce(sum(c.leads) FILTER (WHERE c.limbo_stage = 'TRIPS_NO_CLAIM'), 0))
  INTO v_scope
  FROM canon_internal.cabinet_lead_state_counts c
  WHERE c.lead_date >= p_scope_from;

  WITH
  -- Per key (sorts the scope): on sweeps only; NULL in incremental runs.
  scope_keys AS (
    SELECT count(DISTINCT s.lead_source_pk) AS lead_keys,
           count(DISTINCT s.lead_source_pk) FILTER (WHERE s.reached_m1)
             + count(DISTINCT s.lead_source_pk) FILTER (WHERE s.reached_m5)
             + count(DISTINCT s.lead_source_pk) FILTER (WHERE s.reached_m25) AS milestones_reached
    FROM canon_internal.cabinet_lead_state s
    WHERE v_sweep AND s.lead_date >= p_scope_from
  ),
  -- (the evaluated ids joined, each probed by key: "lead_id = ANY (v_ids)" was planned as
  -- a scan of every stored row with a driver, each compared with the whole array)
  evaluated_drivers AS (
    SELECT DISTINCT s.driver_id
    FROM unnest(v_ids) x (lead_id)
    JOIN canon_internal.cabinet_lead_state s ON s.lead_id = x.lead_id
    WHERE s.driver_id IS NOT NULL AND s.lead_date >= p_scope_from
  ),
  unparseable AS (
    SELECT count(*) AS n
    FROM evaluated_drivers sd
    JOIN public.summary_daily t
      ON t.driver_id = sd.driver_id
     AND canon.parse_date_file(t.date_file) IS NULL
  )
  SELECT jsonb_build_object(
    'scope_from', p_scope_from,
    'leads_in_scope', (v_scope->>'leads')::bigint,
    'lead_keys_in_scope', CASE WHEN v_sweep THEN (SELECT k.lead_keys FROM scope_keys k) END,
    'leads_with_identity', (v_scope->>'with_identity')::bigint,
    'leads_with_driver', (v_scope->>'with_driver')::bigint,
    'leads_with_trips', (v_scope->>'with_trips')::bigint,
    'leads_without_claim_rule', (v_scope->>'without_rule')::bigint,
    'leads_in_trips_no_claim', (v_scope->>'trips_no_claim')::bigint,
    'trip_rows_read', (v_state->>'trip_rows_read')::bigint,
    'trip_rows_unparseable_scope_drivers', (SELECT n FROM unparseable),
    'milestones_reached', CASE WHEN v_sweep THEN (SELECT k.milestones_reached FROM scope_keys k) END,
    'claims_generated', v_generated->'claims_generated',
    'claims_generated_amount', v_generated->'claims_generated_amount',
    'claims_generated_by_milestone', v_generated->'claims_generated_by_milestone',
    'claims_already_present', (SELECT coalesce(sum(e.value::bigint), 0) FROM jsonb_each_text(v_existing) e),
    'claims_skipped_paid_or_rejected', (SELECT coalesce(sum(e.value::bigint), 0) FROM jsonb_each_text(v_existing) e
                                        WHERE e.key IN ('paid', 'rejected')),
    'claims_already_present_by_status', v_existing,
    'lead_state', jsonb_build_object(
      'mode', CASE WHEN v_sweep THEN 'sweep' ELSE 'incremental' END,
      'trips', v_schedule->'trips',
      'keys', v_keys,
      'reasons', v_schedule->'reasons',
      'evaluated', (v_state->>'evaluated')::integer + (v_state2->>'evaluated')::integer,
      'written', (v_state->>'written')::integer + (v_state2->>'written')::integer + v_claimed_written,
      'claimed_rows_moved_on', v_claimed_written,
      'removed', (v_state->>'removed')::integer + (v_state2->>'removed')::integer)
  ) INTO v_stats;
  RETURN v_stats;
END
$$;
COMMENT ON FUNCTION canon.generate_cabinet_claims(bigint, date, boolean) IS
  'Pipeline step 7: re-evaluates the lead state that may have changed (canon_internal.cabinet_lead_state), then inserts, as generated, every missing claim (lead_source_pk, milestone) reached in the window by leads with lead_date >= p_scope_from. Never touches existing claims. p_run_id NULL (by hand) sweeps the whole scope. Returns step stats.';
