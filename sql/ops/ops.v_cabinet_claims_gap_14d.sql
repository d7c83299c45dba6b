-- ops.v_cabinet_claims_gap_14d: claims that should exist but have no row in
-- canon.claims_yango_cabinet_14d (expected in ops.v_cabinet_claims_expected_14d, no claim
-- for that lead key and milestone). The next run generates those of leads within its
-- days_back; older ones need canon.generate_cabinet_claims(NULL, <lead_date>).
CREATE OR REPLACE VIEW ops.v_cabinet_claims_gap_14d AS
SELECT e.lead_source_pk,
       e.lead_id,
       e.lead_date,
       e.week_start,
       e.person_key,
       e.driver_id,
       e.milestone,
       e.amount,
       e.currency,
       e.trips_14d,
       e.window_end_14d,
       e.window_status,
       'CLAIM_NOT_GENERATED'::text AS gap_reason,
       format('Lead %s reached M%s (%s trips, threshold %s) in [%s, %s) but has no claim; run the pipeline, or SELECT canon.generate_cabinet_claims(NULL, DATE ''%s'').',
              e.lead_source_pk, e.milestone, e.trips_14d, e.trips_threshold, e.lead_date, e.window_end_14d, e.lead_date) AS gap_detail
FROM ops.v_cabinet_claims_expected_14d e
WHERE e.expected
  AND e.claim_status IS NULL;
COMMENT ON VIEW ops.v_cabinet_claims_gap_14d IS
  'Expected claims (lead key x milestone) with no row in canon.claims_yango_cabinet_14d: amount and gap_reason CLAIM_NOT_GENERATED.';
