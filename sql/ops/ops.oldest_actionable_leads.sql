-- ops.oldest_actionable_leads: the p_per_stage oldest leads (by lead_date, then lead_id) of
-- each stage that a person can act on now (as ops.limbo_stage_actions counts them), with
-- their limbo row's reason and stage_total, the actionable leads of the stage. Without a
-- pass over the limbo view: the NO_IDENTITY ones through their unmatched records
-- (canon.actionable_no_identity_leads); for NO_DRIVER and TRIPS_NO_CLAIM, the oldest
-- stored rows of the stage that are current (partial indexes on lead_date) merged with the
-- rows that may not be current (canon.lead_ids_maybe_not_current) as the view shows them.
-- Read by `cabinet-leads report`. SECURITY DEFINER (it only reads; a fixed search_path).
CREATE OR REPLACE FUNCTION ops.oldest_actionable_leads(p_per_stage integer)
RETURNS TABLE (limbo_stage text, lead_id integer, lead_source_pk text, lead_date date, age_days integer,
               lead_name text, reason_code text, limbo_reason_detail text, stage_total bigint)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
  v_ids integer[] := canon.lead_ids_maybe_not_current(true);
BEGIN
  RETURN QUERY
  WITH maybe_not_current AS MATERIALIZED (
    SELECT unnest(v_ids) AS lead_id
  ),
  stage_leads AS MATERIALIZED (
    SELECT x.limbo_stage, sum(x.leads)::bigint AS leads FROM canon.limbo_counts_delta(v_ids) x GROUP BY x.limbo_stage
  ),
  -- (the rows that may not be current as the view shows them, evaluated once for both stages)
  maybe_not_current_rows AS MATERIALIZED (
    SELECT c.lead_id, c.lead_date, c.limbo_stage FROM canon.v_cabinet_lead_status_current c
    WHERE c.lead_id IN (SELECT m.lead_id FROM maybe_not_current m) AND c.limbo_stage IN ('NO_DRIVER', 'TRIPS_NO_CLAIM')
  ),
  no_identity AS MATERIALIZED (
    SELECT a.lead_id, a.lead_date FROM canon.actionable_no_identity_leads(v_ids) a
  ),
  -- (the stage written out in each branch, so that its partial index is used)
  picked AS (
    (SELECT 'NO_IDENTITY'::text AS limbo_stage, n.lead_id, n.lead_date, (SELECT count(*) FROM no_identity) AS stage_total
     FROM no_identity n
     ORDER BY n.lead_date, n.lead_id
     LIMIT p_per_stage)
    UNION ALL
    (SELECT 'NO_DRIVER', x.lead_id, x.lead_date, (SELECT t.leads FROM stage_leads t WHERE t.limbo_stage = 'NO_DRIVER')
     FROM ((SELECT s.lead_id, s.lead_date FROM canon_internal.cabinet_lead_state s
            WHERE s.limbo_stage = 'NO_DRIVER' AND NOT EXISTS (SELECT 1 FROM maybe_not_current m WHERE m.lead_id = s.lead_id)
            ORDER BY s.lead_date, s.lead_id
            LIMIT p_per_stage)
           UNION ALL
           SELECT r.lead_id, r.lead_date FROM maybe_not_current_rows r WHERE r.limbo_stage = 'NO_DRIVER') x
     ORDER BY x.lead_date, x.lead_id
     LIMIT p_per_stage)
    UNION ALL
    (SELECT 'TRIPS_NO_CLAIM', x.lead_id, x.lead_date, (SELECT t.leads FROM stage_leads t WHERE t.limbo_stage = 'TRIPS_NO_CLAIM')
     FROM ((SELECT s.lead_id, s.lead_date FROM canon_internal.cabinet_lead_state s
            WHERE s.limbo_stage = 'TRIPS_NO_CLAIM' AND NOT EXISTS (SELECT 1 FROM maybe_not_current m WHERE m.lead_id = s.lead_id)
            ORDER BY s.lead_date, s.lead_id
            LIMIT p_per_stage)
           UNION ALL
           SELECT r.lead_id, r.lead_date FROM maybe_not_current_rows r WHERE r.limbo_stage = 'TRIPS_NO_CLAIM') x
     ORDER BY x.lead_date, x.lead_id
     LIMIT p_per_stage)
  )
  SELECT p.limbo_stage, l.lead_id, l.lead_source_pk, l.lead_date, canon.business_today() - l.lead_date,
         l.lead_name, l.reason_code, l.limbo_reason_detail, p.stage_total
  FROM picked p
  CROSS JOIN LATERAL (SELECT v.* FROM ops.v_cabinet_leads_limbo v WHERE v.lead_id = p.lead_id) l
  ORDER BY array_position(ARRAY['NO_IDENTITY', 'NO_DRIVER', 'NO_TRIPS_14D', 'TRIPS_NO_CLAIM'], p.limbo_stage),
           l.lead_date, l.lead_id;
END
$$;
COMMENT ON FUNCTION ops.oldest_actionable_leads(integer) IS
  'The p_per_stage oldest leads of each stage a person can act on now (NO_IDENTITY awaiting review or missing every key, NO_DRIVER, TRIPS_NO_CLAIM), with their limbo reason and the stage''s actionable total; read by cabinet-leads report.';
