-- canon.insert_missing_claims: step 7c. Inserts, as 'generated', every claim
-- (lead_source_pk, milestone) a lead of the scope (lead_date >= p_scope_from) reached in
-- its window without having it, with the rule's amount: the leads the stored state shows in
-- TRIPS_NO_CLAIM, decided on their live chain (canon.v_cabinet_lead_status: a trip row
-- deleted since the state was stored earns nothing). One INSERT ... ON CONFLICT DO NOTHING:
-- an existing claim of any status is never changed; two lead rows of one key get one set of
-- claims (from the earliest row that reached the milestone). Its own claims do not mark
-- their keys dirty: canon.move_claimed_leads_on moves their state on. Returns
-- {claims_generated, claims_generated_amount, claims_generated_by_milestone, claimed_keys}.
CREATE OR REPLACE FUNCTION canon.insert_missing_claims(p_run_id bigint, p_scope_from date)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET client_min_messages = warning
SET jit = off
AS $$
DECLARE
  v_generated jsonb;
BEGIN
  PERFORM set_config('cabinet.lead_state_marking', 'off', true);
  WITH
  -- Decided on the live chain of the leads the stored state shows with a claim missing:
  -- a trip row deleted since the state was stored cannot earn a claim. The ids as an
  -- array, so the view is evaluated for them only (a semi-join evaluated it for every lead).
  live AS MATERIALIZED (
    SELECT v.*
    FROM canon.v_cabinet_lead_status v
    WHERE v.lead_id = ANY (ARRAY(SELECT s.lead_id FROM canon_internal.cabinet_lead_state s
                                 WHERE s.limbo_stage = 'TRIPS_NO_CLAIM' AND s.lead_date >= p_scope_from))
  ),
  due AS (
    SELECT DISTINCT ON (s.lead_source_pk, m.milestone)
           s.lead_id, s.lead_source_pk, s.lead_date, s.person_key, s.driver_id, s.currency, m.milestone, m.amount
    FROM live s
    -- per milestone: reached in the window and not claimed yet
    CROSS JOIN LATERAL canon.milestone_rows(s.m1_trips_threshold, s.m1_amount, s.reached_m1 AND NOT s.has_claim_m1,
                                            s.m5_trips_threshold, s.m5_amount, s.reached_m5 AND NOT s.has_claim_m5,
                                            s.m25_trips_threshold, s.m25_amount, s.reached_m25 AND NOT s.has_claim_m25)
      AS m (milestone, trips_threshold, amount, missing)
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
  RETURN v_generated;

END
$$;
COMMENT ON FUNCTION canon.insert_missing_claims(bigint, date) IS
  'Step 7c: inserts the missing claims of the scope''s leads in TRIPS_NO_CLAIM, decided on their live chain; never changes an existing claim. Returns counts, amounts and the keys claimed.';
