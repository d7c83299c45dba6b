-- canon.never_evaluated_drift: dated lead keys neither linked nor unmatched none of whose
-- rows is listed in canon_internal.lead_keys_pending: no batch would ever select them. Read by
-- ops.check_caches, repaired by ops.repair_caches.
CREATE OR REPLACE FUNCTION canon.never_evaluated_drift()
RETURNS TABLE (lead_id integer, example text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT min(k.lead_id), format('lead key %s (lead id %s) is not listed', left(k.lead_source_pk, 40), min(k.lead_id))
  FROM canon_internal.lead_keys k
  WHERE k.lead_date IS NOT NULL
    AND NOT EXISTS (SELECT 1 FROM canon.identity_links l WHERE l.source_table = 'module_ct_cabinet_leads' AND l.source_pk = k.lead_source_pk)
    AND NOT EXISTS (SELECT 1 FROM canon.identity_unmatched u WHERE u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = k.lead_source_pk)
  GROUP BY k.lead_source_pk
  HAVING NOT bool_or(EXISTS (SELECT 1 FROM canon_internal.lead_keys_pending q WHERE q.lead_id = k.lead_id))
$$;
COMMENT ON FUNCTION canon.never_evaluated_drift() IS
  'Dated lead keys never evaluated (no link, no unmatched row) with no row in canon_internal.lead_keys_pending.';
