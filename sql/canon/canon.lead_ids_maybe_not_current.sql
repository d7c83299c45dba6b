-- canon.lead_ids_maybe_not_current: the lead row ids whose stored state may not be current,
-- for the counts that add the stored state's counters and correct them for these rows
-- (canon.limbo_week_counts_of_state, ops.funnel_week_counts): the marked ones
-- (canon_internal.cabinet_lead_state_pending, keys in canon_internal.cabinet_lead_state_dirty)
-- and, with p_read_leads, the lead rows written since the last read (by commit order, one
-- pass over the lead rows without a function per row). When the counters corrected for
-- them do not come to the dated lead rows (rows deleted since, or a drift), or the claim
-- rules changed, every lead row and stored row instead. Without p_read_leads the lead rows
-- are taken as of the last read (the snapshot of a run, moments after its own read).
CREATE OR REPLACE FUNCTION canon.lead_ids_maybe_not_current(p_read_leads boolean)
RETURNS integer[]
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
  v_limit integer;
  v_dated bigint;
  v_ids integer[] := '{}';
  v_total bigint;
BEGIN
  IF NOT (SELECT m.full_refresh_needed FROM canon_internal.cabinet_lead_state_meta m) THEN
    IF p_read_leads THEN
      v_limit := canon.xmin_age_limit((SELECT s.seen_xmin FROM canon_internal.source_scan_state s
                                       WHERE s.source_table = 'module_ct_cabinet_leads'));
      SELECT count(*) FILTER (WHERE isfinite(l.lead_created_at)),
             coalesce(array_agg(l.id) FILTER (WHERE v_limit IS NULL OR age(l.xmin) <= v_limit), '{}')
      INTO v_dated, v_ids
      FROM public.module_ct_cabinet_leads l;
    ELSE
      v_dated := (SELECT s.rows_dated FROM canon_internal.source_scan_state s WHERE s.source_table = 'module_ct_cabinet_leads');
    END IF;
    v_ids := v_ids
      || ARRAY(SELECT p.lead_id FROM canon_internal.cabinet_lead_state_pending p)
      || canon.lead_ids_of_keys(ARRAY(SELECT d.lead_source_pk FROM canon_internal.cabinet_lead_state_dirty d));
    v_ids := ARRAY(SELECT DISTINCT unnest(v_ids));
    -- The rows the corrected counters count: stored ones less the stored rows of these,
    -- plus these as the views show them (one per dated lead row).
    SELECT (SELECT coalesce(sum(c.leads), 0) FROM canon_internal.cabinet_lead_state_counts c)
           - count(*) FILTER (WHERE n.stored) + count(*) FILTER (WHERE n.dated)
    INTO v_total
    FROM canon.lead_ids_not_current(v_ids) n;
    IF v_dated IS NOT NULL AND v_total = v_dated THEN
      RETURN v_ids;
    END IF;
  END IF;
  -- Every dated lead row and every stored row (set-based: the stored rows that are
  -- current, the others evaluated live once).
  RETURN ARRAY(SELECT l.id FROM public.module_ct_cabinet_leads l WHERE isfinite(l.lead_created_at)
               UNION SELECT s.lead_id FROM canon_internal.cabinet_lead_state s);
END
$$;
COMMENT ON FUNCTION canon.lead_ids_maybe_not_current(boolean) IS
  'Lead row ids whose stored state may not be current (marked, or written since the last lead read when p_read_leads); every lead and stored row when the counters corrected for them do not add up or the claim rules changed.';
