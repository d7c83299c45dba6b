-- ops.v_review_queue: the leads waiting for a person (SPEC 6: AMBIGUOUS, CONFLICT,
-- WEAK_MATCH_ONLY and SHARED_KEY are never decided by the job; PROBABLE_MATCH is the
-- probabilistic tier's middle band), one row per lead key,
-- ranked: most money at stake first, then the oldest. Candidates side by side as jsonb,
-- each with the driver as public.drivers holds it (name, park, phone, plate, hire
-- date), the rule, score and name similarity the matcher recorded at its last
-- attempt (canon.identity_unmatched.candidates), why it was not linked, and what the lead
-- would claim with that driver (trips in the lead's window, amounts of canon.claim_rules).
-- Read by `cabinet-leads review`; for psql:
--   SELECT review_rank, lead_source_pk, reason_code, money_at_stake, jsonb_pretty(candidates)
--   FROM ops.v_review_queue ORDER BY review_rank LIMIT 20;
-- Decide with ops.resolve_lead(key, driver_id, note) or ops.ignore_lead(key, note).
CREATE OR REPLACE VIEW ops.v_review_queue AS
WITH waiting AS (
  SELECT u.source_pk AS lead_source_pk, u.reason_code, u.candidates, u.attempts,
         u.first_attempt_at, u.last_attempt_at, u.details
  FROM canon.identity_unmatched u
  WHERE u.status = 'OPEN'
    AND u.source_table = 'module_ct_cabinet_leads'
    AND u.reason_code IN ('AMBIGUOUS', 'CONFLICT', 'WEAK_MATCH_ONLY', 'SHARED_KEY', 'PROBABLE_MATCH')
),
leads AS (
  -- the key's first dated row (rows sharing a key are one lead)
  SELECT w.*, k.lead_id, k.lead_date, k.lead_name,
         l.park_phone::text AS park_phone, l.asset_plate_number::text AS asset_plate_number,
         rp.window_days, rp.currency,
         rp.m1_trips_threshold, rp.m1_amount, rp.m5_trips_threshold, rp.m5_amount, rp.m25_trips_threshold, rp.m25_amount
  FROM waiting w
  LEFT JOIN LATERAL (
    SELECT k.lead_id, k.lead_date, k.lead_name
    FROM canon_internal.lead_keys k
    WHERE k.lead_source_pk = w.lead_source_pk
    ORDER BY k.lead_date IS NULL, k.lead_id
    LIMIT 1
  ) k ON true
  LEFT JOIN public.module_ct_cabinet_leads l ON l.id = k.lead_id
  LEFT JOIN canon.v_claim_rule_periods rp
    ON rp.period_from <= k.lead_date AND (rp.period_to IS NULL OR k.lead_date < rp.period_to)
),
candidates AS (
  SELECT le.lead_source_pk, c.pos,
         c.value->>'driver_id' AS driver_id,
         c.value->>'rule' AS rule,
         (c.value->>'score')::numeric AS score,
         (c.value->>'name_similarity')::numeric AS name_similarity,
         coalesce((c.value->>'kept')::boolean, c.value->>'reject_reason' IS NULL) AS kept,
         c.value->>'reject_reason' AS reject_reason,
         d.park_id, d.driver_name, d.phone, d.plate, d.hire_date,
         d.park_id IS NOT DISTINCT FROM canon.setting('target_park_id') AS in_target_park,
         d.driver_id IS NULL AS driver_gone,
         coalesce(t.trips, 0)::bigint AS trips_in_window,
         (CASE WHEN t.trips >= le.m1_trips_threshold THEN le.m1_amount ELSE 0 END
          + CASE WHEN t.trips >= le.m5_trips_threshold THEN le.m5_amount ELSE 0 END
          + CASE WHEN t.trips >= le.m25_trips_threshold THEN le.m25_amount ELSE 0 END)::numeric(12, 2) AS amount_in_window,
         CASE WHEN c.value->>'rule' = 'R4_PROBABILISTIC' THEN
           -- the tier's evidence in words, after why it was not linked
           concat_ws(': ',
             CASE WHEN c.value->>'reject_reason' = 'NAME_VETO' THEN 'a given name or surname differs (a relative?)'
                  WHEN c.value->>'reject_reason' = 'NOT_THIS_DRIVER' THEN 'a person said it is not this driver'
                  WHEN c.value->>'reject_reason' = 'DRIVER_DELETED' THEN 'the driver is no longer in public.drivers'
                  WHEN c.pos = 1 THEN CASE le.details->'probabilistic'->>'why_not_linked'
                                        WHEN 'SECOND_CANDIDATE_CLOSE' THEN 'another candidate is nearly as likely'
                                        WHEN 'COMMON_NAME_ONLY' THEN 'only a common name on another car'
                                        ELSE 'probable, not certain' END
                  ELSE 'less likely than the first' END
             || format(' (probability %s)', c.value->>'probability'),
             c.value->>'evidence')
         ELSE CASE c.value->>'reject_reason'
           WHEN 'NAME_NOT_SIMILAR' THEN format('the plate is the same, the name is not similar enough (%s, below 0.66)', c.value->>'name_similarity')
           WHEN 'NAME_VETO' THEN 'the plate is the same and the name close, but a given name or surname differs (a relative?)'
           WHEN 'NAME_LESS_SIMILAR_THAN_BEST' THEN 'another driver of this plate has a clearly more similar name'
           WHEN 'PHONE_SHARED_BY_LEADS' THEN 'the phone is on other leads under other names (an office phone): no evidence'
           WHEN 'PHONE_SHARED_BY_DRIVERS' THEN 'the phone belongs to several drivers with other names: no evidence'
           WHEN 'OTHER_PARK_TARGET_PREFERRED' THEN 'another park: a target park driver was found'
           WHEN 'DRIVER_DELETED' THEN 'the driver is no longer in public.drivers'
           WHEN 'NOT_THIS_DRIVER' THEN 'a person said it is not this driver'
           ELSE CASE le.reason_code
                  WHEN 'AMBIGUOUS' THEN 'fits as well as another driver of the same rule'
                  WHEN 'CONFLICT' THEN 'another rule points to another driver'
                  ELSE 'not decisive on its own'
                END
         END END AS why_not_linked
  FROM leads le
  CROSS JOIN LATERAL jsonb_array_elements(le.candidates) WITH ORDINALITY AS c (value, pos)
  -- The row as one value (to_jsonb): a view naming upstream columns would stop the
  -- upstream owner from altering them; the source contract already checks they exist.
  LEFT JOIN LATERAL (
    SELECT r->>'driver_id' AS driver_id, r->>'park_id' AS park_id,
           coalesce(nullif(btrim(r->>'full_name'), ''),
                    nullif(btrim(concat_ws(' ', r->>'first_name', r->>'middle_name', r->>'last_name')), '')) AS driver_name,
           r->>'phone' AS phone, coalesce(r->>'car_number', r->>'car_normalized_number') AS plate, (r->>'hire_date')::date AS hire_date
    FROM (SELECT to_jsonb(x) AS r FROM public.drivers x WHERE x.driver_id = c.value->>'driver_id' LIMIT 1) y
  ) d ON true
  -- trips of this candidate in the lead's window, as canon.v_cabinet_lead_chain counts them
  LEFT JOIN LATERAL (
    SELECT sum(sd.count_orders_completed) AS trips
    FROM public.summary_daily sd
    WHERE sd.driver_id = c.value->>'driver_id'
      AND canon.parse_date_file(sd.date_file) >= le.lead_date
      AND canon.parse_date_file(sd.date_file) < le.lead_date + le.window_days
  ) t ON true
),
per_lead AS (
  SELECT c.lead_source_pk,
         max(c.amount_in_window) AS money_at_stake,
         jsonb_agg(jsonb_build_object(
           'driver_id', c.driver_id, 'driver_name', c.driver_name, 'park_id', c.park_id,
           'in_target_park', c.in_target_park, 'phone', c.phone, 'plate', c.plate,
           'hire_date', c.hire_date, 'driver_gone', c.driver_gone,
           'rule', c.rule, 'score', c.score, 'name_similarity', c.name_similarity,
           'kept', c.kept, 'reject_reason', c.reject_reason, 'why_not_linked', c.why_not_linked,
           'trips_in_window', c.trips_in_window, 'amount_in_window', c.amount_in_window)
           ORDER BY c.pos) AS candidates
  FROM candidates c
  GROUP BY c.lead_source_pk
)
SELECT row_number() OVER (ORDER BY coalesce(p.money_at_stake, 0) DESC, le.lead_date NULLS LAST, le.lead_source_pk) AS review_rank,
       le.lead_source_pk,
       le.lead_id,
       le.lead_date,
       canon.business_today() - le.lead_date AS age_days,
       le.lead_name,
       le.park_phone,
       le.asset_plate_number,
       le.reason_code,
       coalesce(p.money_at_stake, 0)::numeric(12, 2) AS money_at_stake,
       coalesce(le.currency, 'PEN') AS currency,
       jsonb_array_length(le.candidates) AS candidate_count,
       coalesce(p.candidates, '[]'::jsonb) AS candidates,
       le.attempts,
       le.first_attempt_at,
       le.last_attempt_at
FROM leads le
LEFT JOIN per_lead p ON p.lead_source_pk = le.lead_source_pk;
COMMENT ON VIEW ops.v_review_queue IS
  'Leads waiting for a person (OPEN AMBIGUOUS, CONFLICT, WEAK_MATCH_ONLY, SHARED_KEY, PROBABLE_MATCH), one row per lead key, review_rank 1 first (most money at stake, then oldest), candidates side by side as jsonb (driver, park, phone, plate, hire date, rule, score, why not linked, what the lead would claim with it). Decide with ops.resolve_lead / ops.ignore_lead.';
