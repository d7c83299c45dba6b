-- The weekly funnel as one pass over the two views it summarises (the definition of
-- ops.v_cabinet_14d_funnel_weekly before it read the stored state's counters): the
-- reference test/sql/ops.funnel_week_counts.test.ts compares the funnel with, and the
-- baseline bench/limbo-scale.ts times beside it.
WITH leads AS (
  SELECT l.week_start,
         count(*) AS leads,
         count(*) FILTER (WHERE l.person_key IS NOT NULL) AS leads_with_identity,
         count(*) FILTER (WHERE l.driver_id IS NOT NULL) AS leads_with_driver,
         count(*) FILTER (WHERE l.trips_14d > 0) AS leads_with_trips_14d,
         count(*) FILTER (WHERE l.window_status = 'OPEN') AS leads_window_open,
         count(*) FILTER (WHERE l.reached_m1_14d) AS reached_m1_14d,
         count(*) FILTER (WHERE l.reached_m5_14d) AS reached_m5_14d,
         count(*) FILTER (WHERE l.reached_m25_14d) AS reached_m25_14d,
         coalesce(sum(l.trips_14d), 0) AS trips_14d,
         count(*) FILTER (WHERE l.limbo_stage = 'NO_IDENTITY') AS limbo_no_identity,
         count(*) FILTER (WHERE l.limbo_stage = 'NO_DRIVER') AS limbo_no_driver,
         count(*) FILTER (WHERE l.limbo_stage = 'NO_TRIPS_14D') AS limbo_no_trips_14d,
         count(*) FILTER (WHERE l.limbo_stage = 'TRIPS_NO_CLAIM') AS limbo_trips_no_claim,
         count(*) FILTER (WHERE l.limbo_stage = 'OK') AS limbo_ok
  FROM ops.v_cabinet_leads_limbo l
  GROUP BY l.week_start
),
claims AS (
  SELECT e.week_start,
         count(*) FILTER (WHERE e.expected) AS claims_expected,
         coalesce(sum(e.amount) FILTER (WHERE e.expected), 0) AS claims_expected_amount,
         count(*) FILTER (WHERE e.expected AND e.claim_status IS NOT NULL) AS claims_present,
         coalesce(sum(e.amount) FILTER (WHERE e.expected AND e.claim_status IS NOT NULL), 0) AS claims_present_amount,
         count(*) FILTER (WHERE e.expected AND e.claim_status IS NULL) AS claims_missing,
         coalesce(sum(e.amount) FILTER (WHERE e.expected AND e.claim_status IS NULL), 0) AS claims_missing_amount,
         count(*) FILTER (WHERE e.claim_status = 'paid') AS claims_paid,
         coalesce(sum(e.claim_amount) FILTER (WHERE e.claim_status = 'paid'), 0) AS claims_paid_amount
  FROM ops.v_cabinet_claims_expected_14d e
  GROUP BY e.week_start
)
SELECT w.week_start,
       coalesce(l.leads, 0) AS leads, coalesce(l.leads_with_identity, 0) AS leads_with_identity,
       coalesce(l.leads_with_driver, 0) AS leads_with_driver, coalesce(l.leads_with_trips_14d, 0) AS leads_with_trips_14d,
       coalesce(l.leads_window_open, 0) AS leads_window_open, coalesce(l.reached_m1_14d, 0) AS reached_m1_14d,
       coalesce(l.reached_m5_14d, 0) AS reached_m5_14d, coalesce(l.reached_m25_14d, 0) AS reached_m25_14d,
       coalesce(l.trips_14d, 0) AS trips_14d,
       coalesce(c.claims_expected, 0) AS claims_expected, coalesce(c.claims_expected_amount, 0) AS claims_expected_amount,
       coalesce(c.claims_present, 0) AS claims_present, coalesce(c.claims_present_amount, 0) AS claims_present_amount,
       coalesce(c.claims_missing, 0) AS claims_missing, coalesce(c.claims_missing_amount, 0) AS claims_missing_amount,
       coalesce(c.claims_paid, 0) AS claims_paid, coalesce(c.claims_paid_amount, 0) AS claims_paid_amount,
       coalesce(l.limbo_no_identity, 0) AS limbo_no_identity, coalesce(l.limbo_no_driver, 0) AS limbo_no_driver,
       coalesce(l.limbo_no_trips_14d, 0) AS limbo_no_trips_14d, coalesce(l.limbo_trips_no_claim, 0) AS limbo_trips_no_claim,
       coalesce(l.limbo_ok, 0) AS limbo_ok,
       round(100.0 * l.leads_with_identity / nullif(l.leads, 0), 2) AS pct_with_identity,
       round(100.0 * l.leads_with_driver / nullif(l.leads, 0), 2) AS pct_with_driver,
       round(100.0 * l.leads_with_trips_14d / nullif(l.leads, 0), 2) AS pct_with_trips_14d,
       round(100.0 * l.limbo_ok / nullif(l.leads, 0), 2) AS pct_ok,
       round(100.0 * c.claims_present / nullif(c.claims_expected, 0), 2) AS pct_claims_present
FROM (SELECT week_start FROM leads UNION SELECT week_start FROM claims) w
LEFT JOIN leads l ON l.week_start = w.week_start
LEFT JOIN claims c ON c.week_start = w.week_start
