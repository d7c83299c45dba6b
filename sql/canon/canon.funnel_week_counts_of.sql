-- canon.funnel_week_counts_of: the weekly funnel's counts (ops.v_cabinet_14d_funnel_weekly)
-- without a pass over every lead, when p_lead_ids holds every lead row whose stored state
-- may not be current (canon.lead_ids_maybe_not_current): the counters of the stored state
-- (canon_internal.cabinet_lead_state_counts) with the rows set apart taken off and counted
-- as the views show them. Set apart: the given rows whose stored state is not current
-- (canon.lead_ids_not_current; shown live, one canon.lead_status_live each), the stored
-- rows sharing a lead key (key_rows > 1: a shared key's claims count once, from the row
-- ops.v_cabinet_claims_expected_14d chooses). Every other row is a current stored row
-- alone on its key: its claims are its milestones with a threshold, present when
-- has_claim_m* says so (a claim written or deleted marks its key dirty), paid as
-- paid_claims and paid_amount say, unless a claim of its key was paid, unpaid or
-- re-amounted since (canon_internal.cabinet_lead_state_paid_dirty): then its paid claims
-- are read now (the definition of canon.v_cabinet_lead_status's paid_claims). Called by
-- ops.funnel_week_counts; test/sql/ops.funnel_week_counts.test.ts compares it with the views.
CREATE OR REPLACE FUNCTION canon.funnel_week_counts_of(p_lead_ids integer[])
RETURNS TABLE (
  week_start             date,
  leads                  bigint,
  leads_with_identity    bigint,
  leads_with_driver      bigint,
  leads_with_trips_14d   bigint,
  leads_window_open      bigint,
  reached_m1_14d         bigint,
  reached_m5_14d         bigint,
  reached_m25_14d        bigint,
  trips_14d              numeric,
  claims_expected        bigint,
  claims_expected_amount numeric,
  claims_present         bigint,
  claims_present_amount  numeric,
  claims_paid            bigint,
  claims_paid_amount     numeric,
  limbo_no_identity      bigint,
  limbo_no_driver        bigint,
  limbo_no_trips_14d     bigint,
  limbo_trips_no_claim   bigint,
  limbo_ok               bigint
)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
  WITH not_current AS MATERIALIZED (
    SELECT n.lead_id FROM canon.lead_ids_not_current(p_lead_ids) n
  ),
  apart AS MATERIALIZED (
    SELECT n.lead_id FROM not_current n
    UNION
    SELECT s.lead_id FROM canon_internal.cabinet_lead_state s WHERE s.key_rows > 1
  ),
  -- The stored rows counted from the counters whose paid claims changed since: their
  -- stored paid figures off, their paid claims now on.
  paid_marked AS MATERIALIZED (
    SELECT s.lead_source_pk, s.lead_date, s.paid_claims, s.paid_amount,
           s.m1_trips_threshold, s.m5_trips_threshold, s.m25_trips_threshold
    FROM canon_internal.cabinet_lead_state_paid_dirty d
    JOIN canon_internal.cabinet_lead_state s ON s.lead_source_pk = d.lead_source_pk
    WHERE NOT EXISTS (SELECT 1 FROM apart a WHERE a.lead_id = s.lead_id)
  ),
  paid_now AS (
    SELECT p.lead_date, -p.paid_claims::bigint AS paid_claims, -p.paid_amount AS paid_amount
    FROM paid_marked p
    UNION ALL
    SELECT p.lead_date, 1, c.amount_expected
    FROM paid_marked p
    JOIN canon.claims_yango_cabinet_14d c ON c.lead_source_pk = p.lead_source_pk
    WHERE c.status = 'paid'
      AND CASE c.milestone WHEN 1 THEN p.m1_trips_threshold WHEN 5 THEN p.m5_trips_threshold
                           WHEN 25 THEN p.m25_trips_threshold END IS NOT NULL
  ),
  -- The rows set apart as the views show them: live when not current, else stored.
  shown AS MATERIALIZED (
    SELECT v.lead_id, v.lead_source_pk, v.lead_date, v.person_key, v.driver_id, v.window_days, v.trips_in_window,
           v.m1_trips_threshold, v.m1_amount, v.reached_m1, v.m5_trips_threshold, v.m5_amount, v.reached_m5,
           v.m25_trips_threshold, v.m25_amount, v.reached_m25, v.has_claim_m1, v.has_claim_m5, v.has_claim_m25,
           v.limbo_stage, v.key_rows
    FROM not_current n
    CROSS JOIN LATERAL canon.lead_status_live(n.lead_id) v
    UNION ALL
    SELECT s.lead_id, s.lead_source_pk, s.lead_date, s.person_key, s.driver_id, s.window_days, s.trips_in_window,
           s.m1_trips_threshold, s.m1_amount, s.reached_m1, s.m5_trips_threshold, s.m5_amount, s.reached_m5,
           s.m25_trips_threshold, s.m25_amount, s.reached_m25, s.has_claim_m1, s.has_claim_m5, s.has_claim_m25,
           s.limbo_stage, s.key_rows
    FROM apart a
    JOIN canon_internal.cabinet_lead_state s ON s.lead_id = a.lead_id
    WHERE a.lead_id NOT IN (SELECT n.lead_id FROM not_current n)
  ),
  -- Lead rows in the counters' shape, signed: the counters, less the stored rows set
  -- apart, plus the rows shown (whose claims are counted per key below, not by flags).
  counted AS (
    SELECT c.lead_date, c.limbo_stage, c.with_identity, c.with_driver, c.with_trips, c.window_days,
           c.reached_m1, c.reached_m5, c.reached_m25, c.has_claim_m1, c.has_claim_m5, c.has_claim_m25,
           c.leads, c.trips, c.m1_amount, c.m5_amount, c.m25_amount, c.paid_claims, c.paid_amount, false AS shown
    FROM canon_internal.cabinet_lead_state_counts c
    UNION ALL
    SELECT s.lead_date, s.limbo_stage, s.person_key IS NOT NULL, s.driver_id IS NOT NULL, s.trips_in_window > 0,
           coalesce(s.window_days, 0), s.reached_m1, s.reached_m5, s.reached_m25,
           s.has_claim_m1, s.has_claim_m5, s.has_claim_m25,
           -1, -s.trips_in_window, -coalesce(s.m1_amount, 0), -coalesce(s.m5_amount, 0), -coalesce(s.m25_amount, 0),
           -s.paid_claims, -s.paid_amount, false
    FROM apart a
    JOIN canon_internal.cabinet_lead_state s ON s.lead_id = a.lead_id
    UNION ALL
    SELECT h.lead_date, h.limbo_stage, h.person_key IS NOT NULL, h.driver_id IS NOT NULL, h.trips_in_window > 0,
           coalesce(h.window_days, 0), h.reached_m1, h.reached_m5, h.reached_m25,
           h.has_claim_m1, h.has_claim_m5, h.has_claim_m25,
           1, h.trips_in_window, coalesce(h.m1_amount, 0), coalesce(h.m5_amount, 0), coalesce(h.m25_amount, 0),
           0, 0, true
    FROM shown h
  ),
  -- The claims of the rows shown: one row per key and milestone with a threshold, a
  -- shared key's from its earliest row that reached it (else its earliest row), as
  -- ops.v_cabinet_claims_expected_14d chooses; with the claim present now.
  expected AS (
    SELECT h.lead_date, h.amount, h.reached, cl.status AS claim_status, cl.amount_expected AS claim_amount
    FROM (
      SELECT h.lead_source_pk, h.lead_date, m.milestone, m.amount, m.reached
      FROM shown h
      CROSS JOIN LATERAL canon.milestone_rows(h.m1_trips_threshold, h.m1_amount, h.reached_m1,
                                              h.m5_trips_threshold, h.m5_amount, h.reached_m5,
                                              h.m25_trips_threshold, h.m25_amount, h.reached_m25) m
      WHERE m.trips_threshold IS NOT NULL
        AND h.key_rows = 1
      UNION ALL
      (SELECT DISTINCT ON (h.lead_source_pk, m.milestone) h.lead_source_pk, h.lead_date, m.milestone, m.amount, m.reached
       FROM shown h
       CROSS JOIN LATERAL canon.milestone_rows(h.m1_trips_threshold, h.m1_amount, h.reached_m1,
                                               h.m5_trips_threshold, h.m5_amount, h.reached_m5,
                                               h.m25_trips_threshold, h.m25_amount, h.reached_m25) m
       WHERE m.trips_threshold IS NOT NULL
         AND h.key_rows > 1
       ORDER BY h.lead_source_pk, m.milestone, m.reached DESC, h.lead_date, h.lead_id)
    ) h
    LEFT JOIN canon.claims_yango_cabinet_14d cl
      ON cl.lead_source_pk = h.lead_source_pk
     AND cl.milestone = h.milestone
  ),
  parts AS (
    -- As canon.v_cabinet_lead_chain defines them: a window ends at lead_date + window_days
    -- (window_days 0: no rule, no window), and a milestone reached has a threshold (an
    -- expected claim).
    SELECT date_trunc('week', x.lead_date::timestamp)::date AS week_start,
           sum(x.leads) AS leads,
           coalesce(sum(x.leads) FILTER (WHERE x.with_identity), 0) AS leads_with_identity,
           coalesce(sum(x.leads) FILTER (WHERE x.with_driver), 0) AS leads_with_driver,
           coalesce(sum(x.leads) FILTER (WHERE x.with_trips), 0) AS leads_with_trips_14d,
           coalesce(sum(x.leads) FILTER (WHERE x.window_days > 0 AND x.lead_date + x.window_days > (SELECT canon.business_today())), 0) AS leads_window_open,
           coalesce(sum(x.leads) FILTER (WHERE x.reached_m1), 0) AS reached_m1_14d,
           coalesce(sum(x.leads) FILTER (WHERE x.reached_m5), 0) AS reached_m5_14d,
           coalesce(sum(x.leads) FILTER (WHERE x.reached_m25), 0) AS reached_m25_14d,
           sum(x.trips) AS trips_14d,
           coalesce(sum(x.leads * (x.reached_m1::int + x.reached_m5::int + x.reached_m25::int)) FILTER (WHERE NOT x.shown), 0) AS claims_expected,
           coalesce(sum(CASE WHEN x.reached_m1 THEN x.m1_amount ELSE 0 END + CASE WHEN x.reached_m5 THEN x.m5_amount ELSE 0 END
                        + CASE WHEN x.reached_m25 THEN x.m25_amount ELSE 0 END) FILTER (WHERE NOT x.shown), 0) AS claims_expected_amount,
           coalesce(sum(x.leads * ((x.reached_m1 AND x.has_claim_m1)::int + (x.reached_m5 AND x.has_claim_m5)::int
                                   + (x.reached_m25 AND x.has_claim_m25)::int)) FILTER (WHERE NOT x.shown), 0) AS claims_present,
           coalesce(sum(CASE WHEN x.reached_m1 AND x.has_claim_m1 THEN x.m1_amount ELSE 0 END
                        + CASE WHEN x.reached_m5 AND x.has_claim_m5 THEN x.m5_amount ELSE 0 END
                        + CASE WHEN x.reached_m25 AND x.has_claim_m25 THEN x.m25_amount ELSE 0 END) FILTER (WHERE NOT x.shown), 0) AS claims_present_amount,
           coalesce(sum(x.paid_claims) FILTER (WHERE NOT x.shown), 0) AS claims_paid,
           coalesce(sum(x.paid_amount) FILTER (WHERE NOT x.shown), 0) AS claims_paid_amount,
           coalesce(sum(x.leads) FILTER (WHERE x.limbo_stage = 'NO_IDENTITY'), 0) AS limbo_no_identity,
           coalesce(sum(x.leads) FILTER (WHERE x.limbo_stage = 'NO_DRIVER'), 0) AS limbo_no_driver,
           coalesce(sum(x.leads) FILTER (WHERE x.limbo_stage = 'NO_TRIPS_14D'), 0) AS limbo_no_trips_14d,
           coalesce(sum(x.leads) FILTER (WHERE x.limbo_stage = 'TRIPS_NO_CLAIM'), 0) AS limbo_trips_no_claim,
           coalesce(sum(x.leads) FILTER (WHERE x.limbo_stage = 'OK'), 0) AS limbo_ok
    FROM counted x
    GROUP BY 1
    UNION ALL
    SELECT date_trunc('week', e.lead_date::timestamp)::date,
           0, 0, 0, 0, 0, 0, 0, 0, 0,
           count(*) FILTER (WHERE e.reached),
           coalesce(sum(e.amount) FILTER (WHERE e.reached), 0),
           count(*) FILTER (WHERE e.reached AND e.claim_status IS NOT NULL),
           coalesce(sum(e.amount) FILTER (WHERE e.reached AND e.claim_status IS NOT NULL), 0),
           count(*) FILTER (WHERE e.claim_status = 'paid'),
           coalesce(sum(e.claim_amount) FILTER (WHERE e.claim_status = 'paid'), 0),
           0, 0, 0, 0, 0
    FROM expected e
    GROUP BY 1
    UNION ALL
    SELECT date_trunc('week', p.lead_date::timestamp)::date,
           0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
           sum(p.paid_claims), sum(p.paid_amount),
           0, 0, 0, 0, 0
    FROM paid_now p
    GROUP BY 1
  )
  SELECT p.week_start,
         sum(p.leads)::bigint, sum(p.leads_with_identity)::bigint, sum(p.leads_with_driver)::bigint,
         sum(p.leads_with_trips_14d)::bigint, sum(p.leads_window_open)::bigint, sum(p.reached_m1_14d)::bigint,
         sum(p.reached_m5_14d)::bigint, sum(p.reached_m25_14d)::bigint, sum(p.trips_14d),
         sum(p.claims_expected)::bigint, sum(p.claims_expected_amount), sum(p.claims_present)::bigint,
         sum(p.claims_present_amount), sum(p.claims_paid)::bigint, sum(p.claims_paid_amount),
         sum(p.limbo_no_identity)::bigint, sum(p.limbo_no_driver)::bigint, sum(p.limbo_no_trips_14d)::bigint,
         sum(p.limbo_trips_no_claim)::bigint, sum(p.limbo_ok)::bigint
  FROM parts p
  GROUP BY p.week_start
  HAVING sum(p.leads) <> 0
  ORDER BY p.week_start
$$;
COMMENT ON FUNCTION canon.funnel_week_counts_of(integer[]) IS
  'The weekly funnel''s counts per lead week from the stored state''s counters, with the given rows whose state is not current and the rows sharing a key counted as the views show them, and the paid claims of keys marked paid read now; exact when the given rows include every row whose stored state may not be current.';
