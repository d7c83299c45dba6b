-- The oldest leads a person can act on, per stage, as one pass over the limbo view (what
-- `cabinet-leads report` ran before ops.oldest_actionable_leads; $1 = leads per stage):
-- the reference test/sql/ops.oldest_actionable_leads.test.ts compares the function with,
-- and part of the report's baseline in bench/limbo-scale.ts.
SELECT x.limbo_stage, x.lead_id, x.lead_source_pk, x.lead_date::text AS lead_date, x.age_days, x.lead_name,
       x.reason_code, x.limbo_reason_detail, x.stage_total
FROM (
  SELECT l.limbo_stage, l.lead_id, l.lead_source_pk, l.lead_date, canon.business_today() - l.lead_date AS age_days,
         l.lead_name, l.reason_code, l.limbo_reason_detail,
         row_number() OVER (PARTITION BY l.limbo_stage ORDER BY l.lead_date, l.lead_id) AS rn,
         count(*) OVER (PARTITION BY l.limbo_stage) AS stage_total
  FROM ops.v_cabinet_leads_limbo l
  LEFT JOIN canon.identity_unmatched u ON u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = l.lead_source_pk
  WHERE (l.limbo_stage IN ('NO_DRIVER', 'TRIPS_NO_CLAIM')
 OR (l.limbo_stage = 'NO_IDENTITY' AND u.status = 'OPEN'
     AND u.reason_code IN ('AMBIGUOUS', 'CONFLICT', 'WEAK_MATCH_ONLY', 'SHARED_KEY', 'PROBABLE_MATCH', 'MISSING_KEYS')))
) x
WHERE x.rn <= $1
ORDER BY array_position(ARRAY['NO_IDENTITY', 'NO_DRIVER', 'NO_TRIPS_14D', 'TRIPS_NO_CLAIM'], x.limbo_stage), x.rn
