-- canon.lead_rows_since_read: the lead rows written since the last read of
-- public.module_ct_cabinet_leads (by commit order: canon.source_scan_state.seen_xmin), with
-- their key and whether they are dated; every row when none was read yet. What canon.lead_keys
-- may not hold yet: canon.v_cabinet_lead_status counts a key's rows from both.
CREATE OR REPLACE FUNCTION canon.lead_rows_since_read()
RETURNS TABLE (lead_id integer, lead_source_pk text, dated boolean)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
  WITH seen AS (
    SELECT canon.xmin_age_limit((SELECT s.seen_xmin FROM canon.source_scan_state s
                                 WHERE s.source_table = 'module_ct_cabinet_leads')) AS age_limit
  )
  SELECT l.id, canon.lead_source_pk(l.external_id, l.id), isfinite(l.lead_created_at)
  FROM public.module_ct_cabinet_leads l
  CROSS JOIN seen
  WHERE seen.age_limit IS NULL OR age(l.xmin) <= seen.age_limit
$$;
COMMENT ON FUNCTION canon.lead_rows_since_read() IS
  'Lead rows written since the last read of the lead table (all rows before the first), with their lead_source_pk and whether they are dated.';
