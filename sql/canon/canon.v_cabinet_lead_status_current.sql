-- canon.v_cabinet_lead_status_current: the state every view reads, one row per lead row
-- with lead_created_at: the stored row of canon.cabinet_lead_state (as of its
-- evaluated_at, the last run that touched the lead), and, for lead rows newer than the
-- last evaluation, the live row of canon.v_cabinet_lead_status (evaluated_at = now()).
-- The second branch reads only leads above the watermark (primary key range), so counting
-- every lead's stage is one pass over the stored rows.
CREATE OR REPLACE VIEW canon.v_cabinet_lead_status_current AS
SELECT s.lead_id, s.lead_source_pk, s.lead_date, s.person_key, s.driver_id, s.window_days, s.window_end,
       s.trips_in_window, s.trip_rows_in_window, s.currency,
       s.m1_trips_threshold, s.m1_amount, s.reached_m1,
       s.m5_trips_threshold, s.m5_amount, s.reached_m5,
       s.m25_trips_threshold, s.m25_amount, s.reached_m25,
       s.expected_amount, s.has_claim_m1, s.has_claim_m5, s.has_claim_m25, s.limbo_stage,
       s.evaluated_at, s.key_rows
FROM canon.cabinet_lead_state s
UNION ALL
SELECT v.lead_id, v.lead_source_pk, v.lead_date, v.person_key, v.driver_id, v.window_days, v.window_end,
       v.trips_in_window, v.trip_rows_in_window, v.currency,
       v.m1_trips_threshold, v.m1_amount, v.reached_m1,
       v.m5_trips_threshold, v.m5_amount, v.reached_m5,
       v.m25_trips_threshold, v.m25_amount, v.reached_m25,
       v.expected_amount, v.has_claim_m1, v.has_claim_m5, v.has_claim_m25, v.limbo_stage,
       now() AS evaluated_at, v.key_rows
FROM canon.v_cabinet_lead_status v
WHERE v.lead_id > canon.lead_state_watermark()
  AND NOT EXISTS (SELECT 1 FROM canon.cabinet_lead_state s WHERE s.lead_id = v.lead_id);
COMMENT ON VIEW canon.v_cabinet_lead_status_current IS
  'One row per cabinet lead row with lead_created_at: stored state (canon.cabinet_lead_state) or, for leads newer than the last evaluation, the live state. Read by ops.v_cabinet_leads_limbo and the claim views.';
