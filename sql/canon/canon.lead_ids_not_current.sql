-- canon.lead_ids_not_current: of the given lead row ids, those whose stored state is not
-- current by the rule of canon.v_cabinet_lead_status_current (no stored row, no lead row,
-- another key or date, key marked dirty, claim rules changed), each with whether it has a
-- stored row and whether it is a dated lead row (then the views show it live). The one
-- test shared by the counts that correct the counters for such rows:
-- canon.limbo_counts_delta, canon.funnel_counts_delta, canon.lead_ids_maybe_not_current.
CREATE OR REPLACE FUNCTION canon.lead_ids_not_current(p_lead_ids integer[])
RETURNS TABLE (lead_id integer, stored boolean, dated boolean)
LANGUAGE sql
STABLE
ROWS 10
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
  SELECT x.lead_id, s.lead_id IS NOT NULL, coalesce(isfinite(l.lead_created_at), false)
  FROM (SELECT DISTINCT unnest(p_lead_ids) AS lead_id) x
  LEFT JOIN public.module_ct_cabinet_leads l ON l.id = x.lead_id
  LEFT JOIN canon_internal.cabinet_lead_state s ON s.lead_id = x.lead_id
  WHERE s.lead_id IS NULL OR l.id IS NULL
     OR s.lead_date IS DISTINCT FROM canon.lead_date_of(l.lead_created_at)
     OR s.lead_source_pk IS DISTINCT FROM canon.lead_source_pk(l.external_id, l.id)
     OR EXISTS (SELECT 1 FROM canon_internal.cabinet_lead_state_dirty d WHERE d.lead_source_pk = s.lead_source_pk)
     OR (SELECT m.full_refresh_needed FROM canon_internal.cabinet_lead_state_meta m)
$$;
COMMENT ON FUNCTION canon.lead_ids_not_current(integer[]) IS
  'The given lead row ids whose stored state is not current (the rule of canon.v_cabinet_lead_status_current), with whether each has a stored row and is a dated lead row.';
