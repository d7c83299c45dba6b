-- canon.generate_cabinet_claims: pipeline step 7 (SPEC 7). Brings the lead state
-- (canon.cabinet_lead_state) up to date, then inserts, as 'generated', every missing
-- claim (lead_source_pk, milestone) whose milestone a lead of the scope
-- (lead_date >= p_scope_from, not only this run's batch) reached in
-- [lead_date, lead_date + window_days), with the rule's amount. Existing claims (paid,
-- rejected, any status) are never touched (INSERT ... ON CONFLICT DO NOTHING); a second
-- call inserts nothing. Two lead rows sharing a key get one set of claims (from the
-- earliest row that reached the milestone). A claim is decided on the lead's live chain
-- (canon.v_cabinet_lead_status), never on the stored state alone.
-- Which leads are re-evaluated (docs/change-detection.md):
--   * lead rows that changed (canon.cabinet_lead_state_pending, listed with their keys by
--     canon.refresh_lead_keys) and keys whose links or claims changed
--     (canon.cabinet_lead_state_dirty, marked by triggers); exactly the marks read are
--     removed, so a mark made meanwhile waits for the next evaluation;
--   * the leads (any scope) of the drivers with trip rows written since the last look
--     (canon.trip_drivers_changed); when rows may have gone (deletes, updates, a reset of
--     the statistics), every lead that had trip rows;
--   * a sweep, on the first run of each business day, when called without a run
--     (p_run_id NULL, by hand) or after the claim rules changed: every lead of the scope,
--     plus lead rows that appeared, vanished or changed key or date anywhere;
--   * with p_only_limbo, the scope's leads in NO_DRIVER and TRIPS_NO_CLAIM as well.
-- Returns step stats, including lead_state {mode, reasons, evaluated, written, removed}.
CREATE OR REPLACE FUNCTION canon.generate_cabinet_claims(p_run_id bigint, p_scope_from date, p_only_limbo boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
  v_today date := canon.business_today();
  v_meta canon.cabinet_lead_state_meta%ROWTYPE;
  v_sweep boolean;
  v_keys jsonb;
  v_trips jsonb;
  v_ids integer[];
  v_again_ids integer[];
  v_reasons jsonb;
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
  SELECT * INTO v_meta FROM canon.cabinet_lead_state_meta FOR UPDATE;
  v_sweep := p_run_id IS NULL OR v_meta.full_refresh_needed OR v_meta.last_sweep_date IS DISTINCT FROM v_today;
  -- By hand: the lead rows written since the last read are keyed first, as step 5 does.
  IF p_run_id IS NULL THEN
    v_keys := canon.key_changed_leads(NULL);
  END IF;
  v_trips := canon.trip_drivers_changed(p_run_id);

  -- The lead rows to re-evaluate, with the first reason that put them there.
  DROP TABLE IF EXISTS pg_temp.lead_state_todo;
  CREATE TEMP TABLE lead_state_todo (lead_id integer PRIMARY KEY, reason text NOT NULL) ON COMMIT DROP;

  -- Lead rows that changed, keys whose links or claims changed (the marks taken now are
  -- removed at the end, and only those).
  INSERT INTO pg_temp.lead_state_todo
  SELECT x.lead_id, 'lead_or_links_or_claims_changed'
  FROM unnest(canon.take_lead_state_marks()) x (lead_id)
  ON CONFLICT DO NOTHING;

  INSERT INTO pg_temp.lead_state_todo
  SELECT s.lead_id, 'trips_written'
  FROM pg_temp.trip_drivers_changed d
  JOIN canon.cabinet_lead_state s ON s.driver_id = d.driver_id
  ON CONFLICT DO NOTHING;

  -- Rows may have gone (deleted, or moved away by an update): only a lead that had trip
  -- rows can lose some (any scope); one without can only gain, and new rows are found.
  -- (the first look has nothing to compare with: every lead with a driver)
  IF (v_trips->>'rows_may_be_gone')::boolean THEN
    INSERT INTO pg_temp.lead_state_todo
    SELECT s.lead_id, 'trip_rows_gone'
    FROM canon.cabinet_lead_state s
    WHERE s.trip_rows_in_window > 0
       OR (v_trips->>'whole_read_reason' = 'first_read' AND s.driver_id IS NOT NULL)
    ON CONFLICT DO NOTHING;
  END IF;

  IF v_sweep THEN
    INSERT INTO pg_temp.lead_state_todo
    SELECT l.id, 'sweep_scope'
    FROM public.module_ct_cabinet_leads l
    WHERE l.lead_created_at >= p_scope_from::timestamp
    ON CONFLICT DO NOTHING;
    -- Lead rows evaluated but gone, undated, re-keyed or re-dated; dated rows never evaluated.
    INSERT INTO pg_temp.lead_state_todo
    SELECT coalesce(s.lead_id, l.id), 'sweep_membership'
    FROM canon.cabinet_lead_state s
    FULL JOIN (SELECT l.id, canon.lead_source_pk(l.external_id, l.id) AS lead_source_pk, canon.lead_date_of(l.lead_created_at) AS lead_date
               FROM public.module_ct_cabinet_leads l
               WHERE isfinite(l.lead_created_at)) l
      ON l.id = s.lead_id
    WHERE s.lead_id IS NULL OR l.id IS NULL
       OR s.lead_source_pk <> l.lead_source_pk OR s.lead_date <> l.lead_date
    ON CONFLICT DO NOTHING;
    IF v_meta.full_refresh_needed THEN
      INSERT INTO pg_temp.lead_state_todo
      SELECT s.lead_id, 'claim_rules_changed' FROM canon.cabinet_lead_state s
      ON CONFLICT DO NOTHING;
    END IF;
  END IF;

  IF p_only_limbo THEN
    INSERT INTO pg_temp.lead_state_todo
    SELECT s.lead_id, 'only_limbo'
    FROM canon.cabinet_lead_state s
    WHERE s.limbo_stage IN ('NO_DRIVER', 'TRIPS_NO_CLAIM') AND s.lead_date >= p_scope_from
    ON CONFLICT DO NOTHING;
  END IF;

  SELECT coalesce(jsonb_object_agg(r.reason, r.n), '{}'::jsonb) INTO v_reasons
  FROM (SELECT t.reason, count(*) AS n FROM pg_temp.lead_state_todo t GROUP BY t.reason) r;
  v_ids := ARRAY(SELECT t.lead_id FROM pg_temp.lead_state_todo t ORDER BY t.lead_id);
  v_state := canon.refresh_lead_state(p_run_id, v_ids);
  IF (v_state->>'written')::integer >= 10000 THEN
    ANALYZE canon.cabinet_lead_state;
  END IF;

  -- Claims of the scope present before this step (they are never touched), by status.
  SELECT coalesce(jsonb_object_agg(e.status, e.n), '{}'::jsonb) INTO v_existing
  FROM (SELECT cl.status, count(*) AS n
        FROM canon.claims_yango_cabinet_14d cl
        WHERE cl.lead_date >= p_scope_from
        GROUP BY cl.status) e;

  -- Stored rows with a claim missing that this step did not evaluate (a claim out of
  -- scope then, a claim insert that failed): evaluated again after the claims.
  v_again_ids := ARRAY(
    SELECT s.lead_id FROM canon.cabinet_lead_state s
    WHERE s.limbo_stage = 'TRIPS_NO_CLAIM' AND s.lead_date >= p_scope_from
      AND NOT EXISTS (SELECT 1 FROM pg_temp.lead_state_todo t WHERE t.lead_id = s.lead_id));

  -- Claims: every reached milestone without its claim.
  PERFORM set_config('cabinet.lead_state_marking', 'off', true);
  WITH
  -- Decided on the live chain of the leads the stored state shows with a claim missing:
  -- a trip row deleted since the state was stored cannot earn a claim.
  live AS MATERIALIZED (
    SELECT v.*
    FROM canon.v_cabinet_lead_status v
    WHERE v.lead_id IN (SELECT s.lead_id FROM canon.cabinet_lead_state s
                        WHERE s.limbo_stage = 'TRIPS_NO_CLAIM' AND s.lead_date >= p_scope_from)
  ),
  due AS (
    SELECT DISTINCT ON (s.lead_source_pk, m.milestone)
           s.lead_id, s.lead_source_pk, s.lead_date, s.person_key, s.driver_id, s.currency, m.milestone, m.amount
    FROM live s
    CROSS JOIN LATERAL (
      VALUES (1, s.m1_amount, s.reached_m1 AND NOT s.has_claim_m1),
             (5, s.m5_amount, s.reached_m5 AND NOT s.has_claim_m5),
             (25, s.m25_amount, s.reached_m25 AND NOT s.has_claim_m25)
    ) m (milestone, amount, missing)
    WHERE s.lead_date >= p_scope_from
      AND m.missing
    ORDER BY s.lead_source_pk, m.milestone, s.lead_date, s.lead_id
  ),
  inserted AS (
    INSERT INTO canon.claims_yango_cabinet_14d AS cl (
      lead_source_pk, milestone, person_key, driver_id, lead_date, amount_expected, currency,
      status, generated_at, run_id
    )
    SELECT d.lead_source_pk, d.milestone, d.person_key, d.driver_id, d.lead_date, d.amount, d.currency,
           'generated', now(), p_run_id
    FROM due d
    ORDER BY d.lead_source_pk, d.milestone
    ON CONFLICT (lead_source_pk, milestone) DO NOTHING
    RETURNING cl.lead_source_pk, cl.milestone, cl.amount_expected
  ),
  per_milestone AS (
    SELECT m.milestone, count(i.milestone) AS n, coalesce(sum(i.amount_expected), 0) AS amount
    FROM (VALUES (1), (5), (25)) m (milestone)
    LEFT JOIN inserted i ON i.milestone = m.milestone
    GROUP BY m.milestone
  )
  SELECT jsonb_build_object(
           'claims_generated', (SELECT count(*) FROM inserted),
           'claims_generated_amount', (SELECT coalesce(sum(i.amount_expected), 0) FROM inserted i),
           'claims_generated_by_milestone', (SELECT jsonb_object_agg('M' || p.milestone, jsonb_build_object('count', p.n, 'amount', p.amount))
                                             FROM per_milestone p),
           'claimed_keys', (SELECT coalesce(jsonb_agg(DISTINCT i.lead_source_pk), '[]'::jsonb) FROM inserted i))
  INTO v_generated;
  PERFORM set_config('cabinet.lead_state_marking', 'on', true);

  -- The claimed leads (every stored row of a claimed key): their claim flags and stage
  -- follow the claims just written. Their chain was evaluated by this step, or is stored
  -- and unchanged (a change would have marked it): their trips are not read again.
  WITH claimed AS (
    SELECT c.lead_source_pk,
           EXISTS (SELECT 1 FROM canon.claims_yango_cabinet_14d cl WHERE cl.lead_source_pk = c.lead_source_pk AND cl.milestone = 1) AS c1,
           EXISTS (SELECT 1 FROM canon.claims_yango_cabinet_14d cl WHERE cl.lead_source_pk = c.lead_source_pk AND cl.milestone = 5) AS c5,
           EXISTS (SELECT 1 FROM canon.claims_yango_cabinet_14d cl WHERE cl.lead_source_pk = c.lead_source_pk AND cl.milestone = 25) AS c25
    FROM (SELECT DISTINCT jsonb_array_elements_text(v_generated->'claimed_keys') AS lead_source_pk) c
  )
  UPDATE canon.cabinet_lead_state s
  SET has_claim_m1 = c.c1, has_claim_m5 = c.c5, has_claim_m25 = c.c25,
      limbo_stage = canon.limbo_stage_of(s.person_key, s.driver_id, s.trips_in_window,
                                         s.reached_m1, s.reached_m5, s.reached_m25, c.c1, c.c5, c.c25),
      evaluated_at = now(), evaluated_run_id = p_run_id
  FROM claimed c
  WHERE s.lead_source_pk = c.lead_source_pk
    AND (s.has_claim_m1, s.has_claim_m5, s.has_claim_m25) IS DISTINCT FROM (c.c1, c.c5, c.c25);
  GET DIAGNOSTICS v_claimed_written = ROW_COUNT;
  IF v_claimed_written > 0 THEN
    -- (as canon.refresh_lead_state does: counts and snapshots made before are stale)
    UPDATE canon.cabinet_lead_state_meta SET changed_at = now();
  END IF;
  -- Marks committed by others while this step ran (visible now) are evaluated too; then
  -- the marks taken are removed.
  v_state2 := canon.refresh_lead_state(p_run_id, v_again_ids || canon.take_lead_state_marks());
  PERFORM canon.clear_lead_state_marks();
  UPDATE canon.cabinet_lead_state_meta
  SET last_sweep_date = CASE WHEN v_sweep THEN v_today ELSE last_sweep_date END,
      last_sweep_at = CASE WHEN v_sweep THEN now() ELSE last_sweep_at END,
      full_refresh_needed = false,
      updated_at = now();

  -- The scope's figures, from the stored rows' counters (canon.cabinet_lead_state_counts,
  -- kept by a trigger as the state changes): a few hundred rows, whatever the scope holds.
  SELECT jsonb_build_object(
           'leads', coalesce(sum(c.leads), 0),
           'with_identity', coalesce(sum(c.leads) FILTER (WHERE c.with_identity), 0),
           'with_driver', coalesce(sum(c.leads) FILTER (WHERE c.with_driver), 0),
           'with_trips', coalesce(sum(c.leads) FILTER (WHERE c.with_trips), 0),
           'without_rule', coalesce(sum(c.leads) FILTER (WHERE NOT c.with_rule), 0),
           'trips_no_claim', coalesce(sum(c.leads) FILTER (WHERE c.limbo_stage = 'TRIPS_NO_CLAIM'), 0))
  INTO v_scope
  FROM canon.cabinet_lead_state_counts c
  WHERE c.lead_date >= p_scope_from;

  WITH
  -- Per key (sorts the scope): on sweeps only; NULL in incremental runs.
  scope_keys AS (
    SELECT count(DISTINCT s.lead_source_pk) AS lead_keys,
           count(DISTINCT s.lead_source_pk) FILTER (WHERE s.reached_m1)
             + count(DISTINCT s.lead_source_pk) FILTER (WHERE s.reached_m5)
             + count(DISTINCT s.lead_source_pk) FILTER (WHERE s.reached_m25) AS milestones_reached
    FROM canon.cabinet_lead_state s
    WHERE v_sweep AND s.lead_date >= p_scope_from
  ),
  -- (the evaluated ids joined, each probed by key: "lead_id = ANY (v_ids)" was planned as
  -- a scan of every stored row with a driver, each compared with the whole array)
  evaluated_drivers AS (
    SELECT DISTINCT s.driver_id
    FROM unnest(v_ids) x (lead_id)
    JOIN canon.cabinet_lead_state s ON s.lead_id = x.lead_id
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
      'trips', v_trips,
      'keys', v_keys,
      'reasons', v_reasons,
      'evaluated', (v_state->>'evaluated')::integer + (v_state2->>'evaluated')::integer,
      'written', (v_state->>'written')::integer + (v_state2->>'written')::integer + v_claimed_written,
      'claimed_rows_moved_on', v_claimed_written,
      'removed', (v_state->>'removed')::integer + (v_state2->>'removed')::integer)
  ) INTO v_stats;
  RETURN v_stats;
END
$$;
COMMENT ON FUNCTION canon.generate_cabinet_claims(bigint, date, boolean) IS
  'Pipeline step 7: re-evaluates the lead state that may have changed (canon.cabinet_lead_state), then inserts, as generated, every missing claim (lead_source_pk, milestone) reached in the window by leads with lead_date >= p_scope_from. Never touches existing claims. p_run_id NULL (by hand) sweeps the whole scope. Returns step stats.';
