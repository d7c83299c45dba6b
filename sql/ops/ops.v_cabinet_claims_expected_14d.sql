-- ops.v_cabinet_claims_expected_14d: one row per lead key and milestone of the claim rules
-- on its lead date: whether a claim is expected (the lead's driver reached the threshold in
-- [lead_date, window_end_14d)) and why, next to the claim actually present for THIS key.
-- Same lead state as the limbo view and canon.generate_cabinet_claims
-- (canon.v_cabinet_lead_status_current: stored by the pipeline, live for newer leads).
-- A key shared by two lead rows is shown once, from the earliest row that reached the
-- milestone (else the earliest row), which is the row generation takes; only those keys
-- (key_rows > 1 in the lead state) are sorted.
CREATE OR REPLACE VIEW ops.v_cabinet_claims_expected_14d AS
SELECT e.lead_source_pk,
       e.lead_id,
       e.lead_date,
       e.person_key,
       e.driver_id,
       e.milestone,
       e.trips_threshold,
       e.amount,
       e.trips_14d,
       e.window_end_14d,
       CASE WHEN e.window_end_14d IS NULL THEN NULL
            -- today once per query (an InitPlan), not a settings lookup per lead
            WHEN (SELECT canon.business_today()) < e.window_end_14d THEN 'OPEN'
            ELSE 'CLOSED' END AS window_status,
       e.expected,
       CASE
         WHEN e.person_key IS NULL THEN 'NO_IDENTITY'
         WHEN e.driver_id IS NULL THEN 'NO_DRIVER'
         WHEN e.expected THEN 'REACHED'
         ELSE 'NOT_REACHED'
       END AS reason,
       cl.status AS claim_status,
       date_trunc('week', e.lead_date::timestamp)::date AS week_start,
       e.currency,
       cl.amount_expected AS claim_amount
FROM (
  -- A key held by one lead row (almost all): that row, no sort.
  SELECT c.lead_source_pk, c.lead_id, c.lead_date, c.person_key, c.driver_id,
         m.milestone, m.trips_threshold, m.amount, c.currency,
         c.trips_in_window AS trips_14d, c.window_end AS window_end_14d,
         m.reached AS expected
  FROM canon.v_cabinet_lead_status_current c
  CROSS JOIN LATERAL canon.milestone_rows(c.m1_trips_threshold, c.m1_amount, c.reached_m1,
                                          c.m5_trips_threshold, c.m5_amount, c.reached_m5,
                                          c.m25_trips_threshold, c.m25_amount, c.reached_m25) m
  WHERE m.trips_threshold IS NOT NULL
    AND c.key_rows = 1
  UNION ALL
  (SELECT DISTINCT ON (c.lead_source_pk, m.milestone)
         c.lead_source_pk, c.lead_id, c.lead_date, c.person_key, c.driver_id,
         m.milestone, m.trips_threshold, m.amount, c.currency,
         c.trips_in_window AS trips_14d, c.window_end AS window_end_14d,
         m.reached AS expected
  FROM canon.v_cabinet_lead_status_current c
  CROSS JOIN LATERAL canon.milestone_rows(c.m1_trips_threshold, c.m1_amount, c.reached_m1,
                                          c.m5_trips_threshold, c.m5_amount, c.reached_m5,
                                          c.m25_trips_threshold, c.m25_amount, c.reached_m25) m
  WHERE m.trips_threshold IS NOT NULL
    AND c.key_rows > 1
  ORDER BY c.lead_source_pk, m.milestone, m.reached DESC, c.lead_date, c.lead_id)
) e
LEFT JOIN canon.claims_yango_cabinet_14d cl
  ON cl.lead_source_pk = e.lead_source_pk
 AND cl.milestone = e.milestone;
COMMENT ON VIEW ops.v_cabinet_claims_expected_14d IS
  'Lead key x milestone: trips threshold and amount from canon.claim_rules, trips in window, expected (reached) and reason (REACHED, NOT_REACHED, NO_DRIVER, NO_IDENTITY), and the status of the claim present for this key.';
