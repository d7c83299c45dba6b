-- ops.v_cabinet_leads_limbo: where every cabinet lead is stuck on the chain
-- lead -> person -> driver -> trips in window -> claim (SPEC 8). Exactly one row per lead
-- row with lead_created_at; rows sharing a lead key show the same key-based data.
-- Built on canon.v_cabinet_lead_status_current: the lead state stored by the pipeline
-- (canon_internal.cabinet_lead_state, defined by canon.v_cabinet_lead_status: driver from
-- canon.v_person_driver, window and amounts from canon.claim_rules, claims of THIS lead's
-- key, any status) as of evaluated_at, the last run that re-evaluated the lead; leads newer
-- than the last run are evaluated live. Stage = first that applies: NO_IDENTITY,
-- NO_DRIVER, NO_TRIPS_14D, TRIPS_NO_CLAIM, OK. Lead columns (phone, plate, name), the
-- unmatched reason and window_status are always current.
--   SELECT limbo_stage, COUNT(*) AS count FROM ops.v_cabinet_leads_limbo
--   GROUP BY limbo_stage ORDER BY count DESC;
CREATE OR REPLACE VIEW ops.v_cabinet_leads_limbo AS
SELECT s.lead_id,
       s.lead_source_pk,
       s.lead_date,
       s.week_start,
       s.park_phone,
       s.asset_plate_number,
       s.lead_name,
       s.person_key,
       s.driver_id,
       s.trips_14d,
       s.window_end_14d,
       s.window_status,
       s.reached_m1_14d,
       s.reached_m5_14d,
       s.reached_m25_14d,
       s.expected_amount_14d,
       s.has_claim_m1,
       s.has_claim_m5,
       s.has_claim_m25,
       s.limbo_stage,
       CASE s.limbo_stage
         WHEN 'NO_IDENTITY' THEN
           CASE
             WHEN s.unmatched_status IS NULL THEN
               format('Lead %s has no identity: not evaluated yet; the next run matches it (leads older than the run''s days_back are not selected: CALL ops.reconcile_cabinet_leads_pipeline(p_days_back => %s)).',
                      s.lead_source_pk, greatest(canon.business_today() - s.lead_date + 1, 0))
             WHEN s.unmatched_status = 'IGNORED' THEN
               format('Lead %s has no identity: %s, marked IGNORED by hand (%s); set status = ''OPEN'' in canon.identity_unmatched to have the job retry it.',
                      s.lead_source_pk, s.reason_code, coalesce(s.unmatched_note, 'no note'))
             WHEN s.reason_code = 'AMBIGUOUS' THEN
               format('Lead %s has no identity: AMBIGUOUS (%s candidate drivers: %s, for plate %s / phone %s); check the candidates in canon.identity_unmatched and link the right driver by hand.',
                      s.lead_source_pk, s.candidate_count, s.candidate_drivers, coalesce(s.asset_plate_number, '-'), coalesce(s.park_phone, '-'))
             WHEN s.reason_code = 'CONFLICT' THEN
               format('Lead %s has no identity: CONFLICT (rules point to different drivers: %s); check the candidates in canon.identity_unmatched and link the right driver by hand.',
                      s.lead_source_pk, s.candidate_drivers)
             WHEN s.reason_code = 'WEAK_MATCH_ONLY' THEN
               format('Lead %s has no identity: WEAK_MATCH_ONLY (plate %s found on %s, but no driver name is similar to "%s"); correct the lead name or link the driver by hand.',
                      s.lead_source_pk, coalesce(s.asset_plate_number, '-'), s.candidate_drivers, coalesce(s.lead_name, ''))
             WHEN s.reason_code = 'SHARED_KEY' THEN
               format('Lead %s has no identity: SHARED_KEY (its only key, phone %s, is shared by several people); add the driver''s plate or license to the lead.',
                      s.lead_source_pk, coalesce(s.park_phone, '-'))
             -- scope once per query (an InitPlan): leads before it are not retried
             WHEN s.reason_code = 'NO_CANDIDATES' AND s.lead_date < (SELECT x.scope_from FROM canon.last_run_scope() x) THEN
               format('Lead %s has no identity: NO_CANDIDATES (no driver had phone %s or plate %s, %s attempts) and its lead date %s is before the runs'' days_back: it is not retried; to retry it once: cabinet-leads reconcile --days-back %s.',
                      s.lead_source_pk, coalesce(s.park_phone, '-'), coalesce(s.asset_plate_number, '-'), s.unmatched_attempts,
                      s.lead_date, canon.business_today() - s.lead_date)
             WHEN s.reason_code = 'NO_CANDIDATES' THEN
               format('Lead %s has no identity: NO_CANDIDATES (no driver has phone %s or plate %s yet, %s attempts); retried when a driver with that phone or plate arrives, else check the lead''s phone and plate.',
                      s.lead_source_pk, coalesce(s.park_phone, '-'), coalesce(s.asset_plate_number, '-'), s.unmatched_attempts)
             WHEN s.reason_code = 'MISSING_KEYS' THEN
               format('Lead %s has no identity: MISSING_KEYS (no phone, plate or license on the lead); complete the lead in the cabinet.',
                      s.lead_source_pk)
             ELSE
               format('Lead %s has no identity: %s; see canon.identity_unmatched.', s.lead_source_pk, s.reason_code)
           END
         WHEN 'NO_DRIVER' THEN
           format('Lead %s is linked to person %s, who has no driver link; link the person''s driver (canon.identity_links, source_table ''drivers'').',
                  s.lead_source_pk, s.person_key)
         WHEN 'NO_TRIPS_14D' THEN
           CASE
             WHEN s.window_end_14d IS NULL THEN
               format('Lead %s has no claim rule for lead date %s; add one to canon.claim_rules.', s.lead_source_pk, s.lead_date)
             WHEN s.window_status = 'OPEN' THEN
               format('Lead %s: driver %s has no trips yet in [%s, %s), window open for %s more day(s); wait for summary_daily.',
                      s.lead_source_pk, s.driver_id, s.lead_date, s.window_end_14d, s.window_end_14d - canon.business_today())
             ELSE
               format('Lead %s: driver %s had no trips in [%s, %s) and the window is closed; nothing to claim unless summary_daily is late (check ops.v_trip_rows_unparseable for driver %s).',
                      s.lead_source_pk, s.driver_id, s.lead_date, s.window_end_14d, s.driver_id)
           END
         WHEN 'TRIPS_NO_CLAIM' THEN
           format('Lead %s: driver %s reached %s with %s trips in [%s, %s) but has no claim for %s; run the pipeline, or SELECT canon.generate_cabinet_claims(NULL, DATE ''%s'') for a lead older than its days_back.',
                  s.lead_source_pk, s.driver_id,
                  concat_ws(', ', CASE WHEN s.reached_m1_14d THEN 'M1' END, CASE WHEN s.reached_m5_14d THEN 'M5' END, CASE WHEN s.reached_m25_14d THEN 'M25' END),
                  s.trips_14d, s.lead_date, s.window_end_14d,
                  concat_ws(', ', CASE WHEN s.reached_m1_14d AND NOT s.has_claim_m1 THEN 'M1' END,
                                  CASE WHEN s.reached_m5_14d AND NOT s.has_claim_m5 THEN 'M5' END,
                                  CASE WHEN s.reached_m25_14d AND NOT s.has_claim_m25 THEN 'M25' END),
                  s.lead_date)
         ELSE
           format('Lead %s is complete: driver %s, %s trips in [%s, %s), a claim for every milestone reached (%s).',
                  s.lead_source_pk, s.driver_id, s.trips_14d, s.lead_date, s.window_end_14d,
                  coalesce(nullif(concat_ws(', ', CASE WHEN s.reached_m1_14d THEN 'M1' END, CASE WHEN s.reached_m5_14d THEN 'M5' END,
                                                  CASE WHEN s.reached_m25_14d THEN 'M25' END), ''), 'none'))
       END AS limbo_reason_detail,
       s.reason_code,
       s.evaluated_at
FROM (
  SELECT c.lead_id,
         c.lead_source_pk,
         c.lead_date,
         date_trunc('week', c.lead_date::timestamp)::date AS week_start,
         l.park_phone::text AS park_phone,
         l.asset_plate_number::text AS asset_plate_number,
         nullif(btrim(regexp_replace(concat_ws(' ', l.first_name, l.middle_name, l.last_name), '\s+', ' ', 'g')), '') AS lead_name,
         c.person_key,
         c.driver_id,
         c.trips_in_window AS trips_14d,
         c.window_end AS window_end_14d,
         CASE WHEN c.window_end IS NULL THEN NULL
              -- today once per query (an InitPlan), not a settings lookup per lead
              WHEN (SELECT canon.business_today()) < c.window_end THEN 'OPEN'
              ELSE 'CLOSED' END AS window_status,
         c.reached_m1 AS reached_m1_14d,
         c.reached_m5 AS reached_m5_14d,
         c.reached_m25 AS reached_m25_14d,
         c.expected_amount AS expected_amount_14d,
         c.has_claim_m1,
         c.has_claim_m5,
         c.has_claim_m25,
         c.limbo_stage,
         CASE WHEN c.person_key IS NULL AND u.status <> 'RESOLVED' THEN u.reason_code END AS reason_code,
         CASE WHEN c.person_key IS NULL AND u.status <> 'RESOLVED' THEN u.status END AS unmatched_status,
         u.note AS unmatched_note,
         u.attempts AS unmatched_attempts,
         jsonb_array_length(u.candidates) AS candidate_count,
         (SELECT coalesce(string_agg(x.value->>'driver_id', ', '), 'none')
          FROM jsonb_array_elements(u.candidates) x) AS candidate_drivers,
         c.evaluated_at
  FROM canon.v_cabinet_lead_status_current c
  LEFT JOIN public.module_ct_cabinet_leads l
    ON l.id = c.lead_id
  LEFT JOIN canon.identity_unmatched u
    ON u.source_table = 'module_ct_cabinet_leads'
   AND u.source_pk = c.lead_source_pk
) s;
COMMENT ON VIEW ops.v_cabinet_leads_limbo IS
  'One row per cabinet lead with lead_created_at: identity, driver, trips in the 14-day window, milestones, claims of this lead, limbo_stage (NO_IDENTITY, NO_DRIVER, NO_TRIPS_14D, TRIPS_NO_CLAIM, OK) and an actionable limbo_reason_detail.';
