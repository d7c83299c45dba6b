-- canon.lead_state_drift: lead rows whose stored state (canon_internal.cabinet_lead_state) is not
-- what the live definition gives and no mark or pending read explains it: a dated row
-- without a stored row, a stored row of a row gone or undated, a stored row under another
-- key or date, and (for the leads of the last doctor_lead_state_days days) a stored row
-- whose values differ from canon.v_cabinet_lead_status. Not drift: rows written since the
-- last read, rows and keys marked, trips of the lead's driver written since the last whole
-- read of summary_daily or any trip row deleted or updated since, changed claim rules.
-- Read by ops.check_caches, repaired by ops.repair_caches.
CREATE OR REPLACE FUNCTION canon.lead_state_drift()
RETURNS TABLE (lead_id integer, example text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
  WITH seen AS (
    SELECT canon.xmin_age_limit(max(s.seen_xmin) FILTER (WHERE s.source_table = 'module_ct_cabinet_leads')) AS leads_limit,
           canon.xmin_age_limit(max(s.full_seen_xmin) FILTER (WHERE s.source_table = 'summary_daily')) AS trips_limit,
           coalesce(bool_or(s.source_table = 'summary_daily'
                   AND (s.tuples_deleted IS DISTINCT FROM pg_stat_get_tuples_deleted('public.summary_daily'::regclass)
                        OR s.tuples_updated IS DISTINCT FROM pg_stat_get_tuples_updated('public.summary_daily'::regclass))), true) AS trips_gone_since
    FROM canon_internal.source_scan_state s
  ),
  rules_changed AS (
    SELECT m.full_refresh_needed AS changed FROM canon_internal.cabinet_lead_state_meta m
  ),
  marked AS (
    SELECT p.lead_id FROM canon_internal.cabinet_lead_state_pending p
    UNION
    SELECT unnest(canon.lead_ids_of_keys(ARRAY(SELECT d.lead_source_pk FROM canon_internal.cabinet_lead_state_dirty d
                                               UNION SELECT d.lead_source_pk FROM canon_internal.cabinet_lead_state_paid_dirty d)))
  ),
  leads AS (
    SELECT l.id, canon.lead_source_pk(l.external_id, l.id) AS lead_source_pk, l.lead_created_at::date AS lead_date,
           (se.leads_limit IS NULL OR age(l.xmin) <= se.leads_limit) AS written_since_read
    FROM public.module_ct_cabinet_leads l CROSS JOIN seen se
    WHERE isfinite(l.lead_created_at)
  ),
  membership AS (
    SELECT coalesce(l.id, s.lead_id) AS lead_id,
           format('lead id %s: %s', coalesce(l.id, s.lead_id),
                  CASE WHEN s.lead_id IS NULL THEN 'dated, no stored state'
                       WHEN l.id IS NULL THEN 'stored state of a lead row gone or undated'
                       ELSE 'stored under the key or date of another version of the row' END) AS example
    FROM leads l
    FULL JOIN canon_internal.cabinet_lead_state s ON s.lead_id = l.id
    WHERE (s.lead_id IS NULL OR l.id IS NULL OR s.lead_source_pk <> l.lead_source_pk OR s.lead_date <> l.lead_date)
      AND NOT coalesce(l.written_since_read, false)
  ),
  recent AS (
    SELECT s.*
    FROM canon_internal.cabinet_lead_state s
    -- (the server's date: a day either way does not matter here, and a broken business time
    -- zone, which doctor reports, must not stop the other checks)
    WHERE s.lead_date >= current_date - canon.setting('doctor_lead_state_days')::integer
  ),
  values_differ AS (
    SELECT s.lead_id, s.driver_id,
           format('lead id %s: stored %s with %s trips, live %s with %s trips', s.lead_id, s.limbo_stage, s.trips_in_window,
                  v.limbo_stage, v.trips_in_window) AS example
    FROM recent s
    CROSS JOIN LATERAL (SELECT * FROM canon.v_cabinet_lead_status c WHERE c.lead_id = s.lead_id OFFSET 0) v
    WHERE s.lead_source_pk = v.lead_source_pk AND s.lead_date = v.lead_date
      AND (s.person_key, s.driver_id, s.window_end, s.trips_in_window, s.trip_rows_in_window,
           s.reached_m1, s.reached_m5, s.reached_m25, s.expected_amount,
           s.has_claim_m1, s.has_claim_m5, s.has_claim_m25, s.limbo_stage, s.key_rows, s.paid_claims, s.paid_amount)
          IS DISTINCT FROM
          (v.person_key, v.driver_id, v.window_end, v.trips_in_window, v.trip_rows_in_window,
           v.reached_m1, v.reached_m5, v.reached_m25, v.expected_amount,
           v.has_claim_m1, v.has_claim_m5, v.has_claim_m25, v.limbo_stage, v.key_rows, v.paid_claims, v.paid_amount)
  )
  SELECT x.lead_id, x.example
  FROM (SELECT m.lead_id, m.example FROM membership m
        UNION ALL
        SELECT d.lead_id, d.example
        FROM values_differ d CROSS JOIN seen se
        -- trips the next run reads: written since the last whole read, or rows gone since
        WHERE NOT se.trips_gone_since
          AND NOT EXISTS (SELECT 1 FROM public.summary_daily t
                          WHERE t.driver_id::text = d.driver_id
                            AND (se.trips_limit IS NULL OR age(t.xmin) <= se.trips_limit))) x
  WHERE NOT EXISTS (SELECT 1 FROM marked m WHERE m.lead_id = x.lead_id)
    AND NOT (SELECT r.changed FROM rules_changed r)
$$;
COMMENT ON FUNCTION canon.lead_state_drift() IS
  'Lead rows whose stored state is missing, orphaned, under another key or date, or (recent leads) differs from the live definition, with no mark or pending read to explain it.';
