-- ops.v_cabinet_14d_funnel_weekly: the 14-day funnel per lead week (ISO Monday of
-- lead_date): leads, with identity, with driver, with trips, milestones reached, claims
-- expected / present / missing with amounts, leads per limbo stage and percentages.
-- The counts are those of ops.v_cabinet_leads_limbo (lead rows) and
-- ops.v_cabinet_claims_expected_14d (claims: lead keys x milestones, a key shared by two
-- rows claims once), read from the stored state's counters corrected for the rows that
-- may not be current (ops.funnel_week_counts: no pass over every lead); a test compares
-- them with the views (test/sql/ops.funnel_week_counts.test.ts). By construction
-- claims_expected = claims_present + claims_missing and the stage counts add up to leads.
-- An amount is 0 where no claim is counted (as a sum over no row would be).
CREATE OR REPLACE VIEW ops.v_cabinet_14d_funnel_weekly AS
SELECT f.week_start,
       f.leads,
       f.leads_with_identity,
       f.leads_with_driver,
       f.leads_with_trips_14d,
       f.leads_window_open,
       f.reached_m1_14d,
       f.reached_m5_14d,
       f.reached_m25_14d,
       f.trips_14d,
       f.claims_expected,
       CASE WHEN f.claims_expected = 0 THEN 0 ELSE f.claims_expected_amount END AS claims_expected_amount,
       f.claims_present,
       CASE WHEN f.claims_present = 0 THEN 0 ELSE f.claims_present_amount END AS claims_present_amount,
       f.claims_expected - f.claims_present AS claims_missing,
       CASE WHEN f.claims_expected = f.claims_present THEN 0
            ELSE f.claims_expected_amount - f.claims_present_amount END AS claims_missing_amount,
       f.claims_paid,
       CASE WHEN f.claims_paid = 0 THEN 0 ELSE f.claims_paid_amount END AS claims_paid_amount,
       f.limbo_no_identity,
       f.limbo_no_driver,
       f.limbo_no_trips_14d,
       f.limbo_trips_no_claim,
       f.limbo_ok,
       round(100.0 * f.leads_with_identity / nullif(f.leads, 0), 2) AS pct_with_identity,
       round(100.0 * f.leads_with_driver / nullif(f.leads, 0), 2) AS pct_with_driver,
       round(100.0 * f.leads_with_trips_14d / nullif(f.leads, 0), 2) AS pct_with_trips_14d,
       round(100.0 * f.limbo_ok / nullif(f.leads, 0), 2) AS pct_ok,
       round(100.0 * f.claims_present / nullif(f.claims_expected, 0), 2) AS pct_claims_present
FROM ops.funnel_week_counts() f;
COMMENT ON VIEW ops.v_cabinet_14d_funnel_weekly IS
  'Weekly 14-day funnel (week_start = ISO Monday of lead_date): the counts of ops.v_cabinet_leads_limbo and ops.v_cabinet_claims_expected_14d per lead week, read from the stored state''s counters corrected for the rows that may not be current (ops.funnel_week_counts); percentages are of leads (pct_claims_present of claims expected).';
