-- canon.v_cabinet_lead_status_current: the state every view reads, one row per dated lead
-- row (finite lead_created_at), driven by the lead rows themselves, in one pass over them
-- and the stored state:
-- * the stored row of canon_internal.cabinet_lead_state (as of its evaluated_at) where it is still
--   current: it exists, its key and lead date are the lead row's own, its key is not marked
--   in canon_internal.cabinet_lead_state_dirty (a link or claim changed, whoever wrote it), and the
--   claim rules have not changed since;
-- * any other dated lead row evaluated live (canon.lead_status_live, evaluated_at = now()):
--   a row committed since the last run whatever its id, a row re-keyed or re-dated
--   upstream, a lead whose claim was deleted or link changed in psql a moment ago.
-- So links, claims and the lead rows are always as the tables say; trips are as of the
-- last run that read them (docs/change-detection.md).
CREATE OR REPLACE VIEW canon.v_cabinet_lead_status_current AS
SELECT l.id AS lead_id,
       -- The row's own key and date either way (a stored row is current only when they are
       -- its own): a filter on them reaches the lead rows, not the joins.
       canon.lead_source_pk(l.external_id, l.id) AS lead_source_pk,
       canon.lead_date_of(l.lead_created_at) AS lead_date,
       CASE WHEN v.lead_id IS NULL THEN s.person_key ELSE v.person_key END AS person_key,
       CASE WHEN v.lead_id IS NULL THEN s.driver_id ELSE v.driver_id END AS driver_id,
       CASE WHEN v.lead_id IS NULL THEN s.window_days ELSE v.window_days END AS window_days,
       CASE WHEN v.lead_id IS NULL THEN s.window_end ELSE v.window_end END AS window_end,
       CASE WHEN v.lead_id IS NULL THEN s.trips_in_window ELSE v.trips_in_window END AS trips_in_window,
       CASE WHEN v.lead_id IS NULL THEN s.trip_rows_in_window ELSE v.trip_rows_in_window END AS trip_rows_in_window,
       CASE WHEN v.lead_id IS NULL THEN s.currency ELSE v.currency END AS currency,
       CASE WHEN v.lead_id IS NULL THEN s.m1_trips_threshold ELSE v.m1_trips_threshold END AS m1_trips_threshold,
       CASE WHEN v.lead_id IS NULL THEN s.m1_amount ELSE v.m1_amount END AS m1_amount,
       CASE WHEN v.lead_id IS NULL THEN s.reached_m1 ELSE v.reached_m1 END AS reached_m1,
       CASE WHEN v.lead_id IS NULL THEN s.m5_trips_threshold ELSE v.m5_trips_threshold END AS m5_trips_threshold,
       CASE WHEN v.lead_id IS NULL THEN s.m5_amount ELSE v.m5_amount END AS m5_amount,
       CASE WHEN v.lead_id IS NULL THEN s.reached_m5 ELSE v.reached_m5 END AS reached_m5,
       CASE WHEN v.lead_id IS NULL THEN s.m25_trips_threshold ELSE v.m25_trips_threshold END AS m25_trips_threshold,
       CASE WHEN v.lead_id IS NULL THEN s.m25_amount ELSE v.m25_amount END AS m25_amount,
       CASE WHEN v.lead_id IS NULL THEN s.reached_m25 ELSE v.reached_m25 END AS reached_m25,
       CASE WHEN v.lead_id IS NULL THEN s.expected_amount ELSE v.expected_amount END AS expected_amount,
       CASE WHEN v.lead_id IS NULL THEN s.has_claim_m1 ELSE v.has_claim_m1 END AS has_claim_m1,
       CASE WHEN v.lead_id IS NULL THEN s.has_claim_m5 ELSE v.has_claim_m5 END AS has_claim_m5,
       CASE WHEN v.lead_id IS NULL THEN s.has_claim_m25 ELSE v.has_claim_m25 END AS has_claim_m25,
       CASE WHEN v.lead_id IS NULL THEN s.limbo_stage ELSE v.limbo_stage END AS limbo_stage,
       CASE WHEN v.lead_id IS NULL THEN s.evaluated_at ELSE now() END AS evaluated_at,
       CASE WHEN v.lead_id IS NULL THEN s.key_rows ELSE v.key_rows END AS key_rows
FROM public.module_ct_cabinet_leads l
LEFT JOIN canon_internal.cabinet_lead_state s ON s.lead_id = l.id
LEFT JOIN canon_internal.cabinet_lead_state_dirty d ON d.lead_source_pk = s.lead_source_pk
-- (not current: evaluated live; the condition is a one-time filter of this subquery, so
-- a current row costs no evaluation)
LEFT JOIN LATERAL (
  SELECT x.*
  FROM canon.lead_status_live(l.id) x
  WHERE s.lead_id IS NULL
     OR s.lead_date IS DISTINCT FROM canon.lead_date_of(l.lead_created_at)
     OR s.lead_source_pk IS DISTINCT FROM canon.lead_source_pk(l.external_id, l.id)
     OR d.lead_source_pk IS NOT NULL
     OR (SELECT m.full_refresh_needed FROM canon_internal.cabinet_lead_state_meta m)
  OFFSET 0
) v ON true
WHERE isfinite(l.lead_created_at);
COMMENT ON VIEW canon.v_cabinet_lead_status_current IS
  'One row per dated cabinet lead row: the stored state (canon_internal.cabinet_lead_state) where it is current (same key and date, key not marked dirty, rules unchanged), else the live state. Read by ops.v_cabinet_leads_limbo and the claim views.';
