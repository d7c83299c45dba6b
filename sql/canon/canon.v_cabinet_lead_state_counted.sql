-- canon.v_cabinet_lead_state_counted: the live definition of the counters
-- canon_internal.cabinet_lead_state_counts: the stored lead state rows grouped by lead date,
-- stage and flags, with their sums. The counting trigger (canon.count_lead_state_changes)
-- groups its transition rows the same way; the check LEAD_STATE_COUNTS compares the
-- counters with this view and ops.recount_lead_state_counts writes it into them.
CREATE OR REPLACE VIEW canon.v_cabinet_lead_state_counted AS
SELECT s.lead_date,
       s.limbo_stage,
       s.person_key IS NOT NULL AS with_identity,
       s.driver_id IS NOT NULL AS with_driver,
       s.trips_in_window > 0 AS with_trips,
       s.window_days IS NOT NULL AS with_rule,
       coalesce(s.window_days, 0) AS window_days,
       s.reached_m1,
       s.reached_m5,
       s.reached_m25,
       s.has_claim_m1,
       s.has_claim_m5,
       s.has_claim_m25,
       count(*) AS leads,
       sum(s.trips_in_window) AS trips,
       coalesce(sum(s.m1_amount), 0) AS m1_amount,
       coalesce(sum(s.m5_amount), 0) AS m5_amount,
       coalesce(sum(s.m25_amount), 0) AS m25_amount,
       sum(s.paid_claims) AS paid_claims,
       sum(s.paid_amount) AS paid_amount
FROM canon_internal.cabinet_lead_state s
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13;
COMMENT ON VIEW canon.v_cabinet_lead_state_counted IS
  'The stored lead state counted as canon_internal.cabinet_lead_state_counts counts it (by lead_date, stage and flags, with the sums of trips, milestone amounts and paid claims): what the counters must equal.';
