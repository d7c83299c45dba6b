-- canon.actionable_no_identity_leads: the NO_IDENTITY lead rows a person can act on now:
-- an OPEN unmatched record the matcher will not decide by itself (AMBIGUOUS, CONFLICT,
-- WEAK_MATCH_ONLY, SHARED_KEY, PROBABLE_MATCH: cabinet-leads review) or whose lead lacks every key
-- (MISSING_KEYS); not a lead the job retries (not evaluated yet, NO_CANDIDATES) or one
-- marked IGNORED. As canon.v_cabinet_lead_status_current shows them, reached through the
-- keys of those records (canon.lead_ids_of_keys: the rows keyed so by the last read) and
-- p_lead_ids, which must hold every row whose key or state may have changed since
-- (canon.lead_ids_maybe_not_current): no pass over every lead. Callers:
-- ops.limbo_stage_actions, ops.oldest_actionable_leads (the report).
CREATE OR REPLACE FUNCTION canon.actionable_no_identity_leads(p_lead_ids integer[])
RETURNS TABLE (lead_id integer, lead_date date)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
  WITH open_records AS MATERIALIZED (
    SELECT u.source_pk
    FROM canon.identity_unmatched u
    WHERE u.source_table = 'module_ct_cabinet_leads'
      AND u.status = 'OPEN'
      AND u.reason_code IN ('AMBIGUOUS', 'CONFLICT', 'WEAK_MATCH_ONLY', 'SHARED_KEY', 'PROBABLE_MATCH', 'MISSING_KEYS')
  ),
  reachable AS MATERIALIZED (
    SELECT unnest(canon.lead_ids_of_keys(ARRAY(SELECT o.source_pk FROM open_records o))) AS lead_id
    UNION
    SELECT unnest(p_lead_ids)
  )
  SELECT c.lead_id, c.lead_date
  FROM canon.v_cabinet_lead_status_current c
  WHERE c.lead_id IN (SELECT r.lead_id FROM reachable r)
    AND c.limbo_stage = 'NO_IDENTITY'
    AND c.lead_source_pk IN (SELECT o.source_pk FROM open_records o)
$$;
COMMENT ON FUNCTION canon.actionable_no_identity_leads(integer[]) IS
  'NO_IDENTITY lead rows with an OPEN unmatched record a person must decide (AMBIGUOUS, CONFLICT, WEAK_MATCH_ONLY, SHARED_KEY, PROBABLE_MATCH) or complete (MISSING_KEYS); exact when p_lead_ids holds every row whose key or state may have changed since the last read.';
