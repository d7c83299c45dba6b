-- Leads per limbo stage and those a person can act on, as one pass over the limbo view
-- (what `cabinet-leads report` ran before ops.limbo_stage_actions): the reference
-- test/sql/ops.oldest_actionable_leads.test.ts compares the function with, and part of the
-- report's baseline in bench/limbo-scale.ts.
SELECT l.limbo_stage, count(*) AS leads, count(*) FILTER (WHERE (l.limbo_stage IN ('NO_DRIVER', 'TRIPS_NO_CLAIM')
 OR (l.limbo_stage = 'NO_IDENTITY' AND u.status = 'OPEN'
     AND u.reason_code IN ('AMBIGUOUS', 'CONFLICT', 'WEAK_MATCH_ONLY', 'SHARED_KEY', 'PROBABLE_MATCH', 'MISSING_KEYS')))) AS actionable
FROM ops.v_cabinet_leads_limbo l
LEFT JOIN canon.identity_unmatched u ON u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = l.lead_source_pk
WHERE l.limbo_stage <> 'OK'
GROUP BY l.limbo_stage
ORDER BY array_position(ARRAY['NO_IDENTITY', 'NO_DRIVER', 'NO_TRIPS_14D', 'TRIPS_NO_CLAIM'], l.limbo_stage)
