-- canon.v_cabinet_lead_chain: the chain lead -> person -> driver -> trips in window, one
-- row per dated lead row (a finite lead_created_at; two rows sharing a lead key both appear, with the
-- same person, driver and claims). The one definition read by ops.v_cabinet_leads_limbo,
-- the claim views and canon.generate_cabinet_claims:
--   lead_date = lead_created_at::date; person from the lead link (by lead_source_pk);
--   driver from canon.v_person_driver; window [lead_date, lead_date + window_days) and
--   thresholds/amounts from the claim rules valid on lead_date; trips = summary_daily rows
--   of the driver whose parsed day is in the window, summed (index lookups).
CREATE OR REPLACE VIEW canon.v_cabinet_lead_chain AS
SELECT l.id AS lead_id,
       k.lead_source_pk,
       l.lead_created_at,
       k.lead_date,
       l.park_phone::text AS park_phone,
       l.asset_plate_number::text AS asset_plate_number,
       nullif(btrim(regexp_replace(concat_ws(' ', l.first_name, l.middle_name, l.last_name), '\s+', ' ', 'g')), '') AS lead_name,
       lk.person_key,
       pd.driver_id,
       rp.window_days,
       k.lead_date + rp.window_days AS window_end,
       coalesce(t.trips, 0)::bigint AS trips_in_window,
       coalesce(t.trip_rows, 0)::bigint AS trip_rows_in_window,
       rp.currency,
       rp.m1_trips_threshold,
       rp.m1_amount,
       coalesce(t.trips >= rp.m1_trips_threshold, false) AS reached_m1,
       rp.m5_trips_threshold,
       rp.m5_amount,
       coalesce(t.trips >= rp.m5_trips_threshold, false) AS reached_m5,
       rp.m25_trips_threshold,
       rp.m25_amount,
       coalesce(t.trips >= rp.m25_trips_threshold, false) AS reached_m25,
       (CASE WHEN t.trips >= rp.m1_trips_threshold THEN rp.m1_amount ELSE 0 END
        + CASE WHEN t.trips >= rp.m5_trips_threshold THEN rp.m5_amount ELSE 0 END
        + CASE WHEN t.trips >= rp.m25_trips_threshold THEN rp.m25_amount ELSE 0 END)::numeric(12, 2) AS expected_amount
FROM public.module_ct_cabinet_leads l
CROSS JOIN LATERAL (
  SELECT canon.lead_source_pk(l.external_id, l.id) AS lead_source_pk,
         l.lead_created_at::date AS lead_date
) k
LEFT JOIN canon.identity_links lk
  ON lk.source_table = 'module_ct_cabinet_leads'
 AND lk.source_pk = k.lead_source_pk
LEFT JOIN canon.v_person_driver pd
  ON pd.person_key = lk.person_key
LEFT JOIN canon.v_claim_rule_periods rp
  ON rp.period_from <= k.lead_date
 AND (rp.period_to IS NULL OR k.lead_date < rp.period_to)
LEFT JOIN LATERAL (
  SELECT sum(sd.count_orders_completed) AS trips,
         count(*) AS trip_rows
  FROM public.summary_daily sd
  WHERE sd.driver_id = pd.driver_id
    AND canon.parse_date_file(sd.date_file) >= k.lead_date
    AND canon.parse_date_file(sd.date_file) < k.lead_date + rp.window_days
) t ON true
WHERE isfinite(l.lead_created_at);
COMMENT ON VIEW canon.v_cabinet_lead_chain IS
  'Lead -> person -> driver (canon.v_person_driver) -> trips in [lead_date, lead_date + window_days), with the claim rules of lead_date. One row per dated lead row (finite lead_created_at).';
