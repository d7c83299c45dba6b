-- canon.limbo_week_counts_of_state: leads per limbo stage for each lead week, as
-- ops.v_cabinet_leads_limbo would count them, without a pass over every lead: the counters
-- of the stored state (canon_internal.cabinet_lead_state_counts), less the stored rows that may not
-- be current, plus the view's rows for those leads. The rows that may not be current are
-- the marked ones (canon_internal.cabinet_lead_state_pending, keys in canon_internal.cabinet_lead_state_dirty)
-- and, with p_read_leads, the lead rows written since the last read (by commit order, one
-- pass over the lead rows without a function per row). When the total does not come to the
-- dated lead rows (rows deleted since, or a drift), or the claim rules changed, every lead
-- row is taken instead. Without p_read_leads the lead rows are taken as of the last
-- read (the snapshot of a run, moments after its own read).
-- Callers: ops.limbo_week_counts (live), ops.snapshot_limbo.
CREATE OR REPLACE FUNCTION canon.limbo_week_counts_of_state(p_read_leads boolean)
RETURNS TABLE (
  week_start            date,
  leads                 integer,
  leads_with_identity   integer,
  leads_with_driver     integer,
  limbo_no_identity     integer,
  limbo_no_driver       integer,
  limbo_no_trips_14d    integer,
  limbo_trips_no_claim  integer,
  limbo_ok              integer
)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
  v_limit integer;
  v_dated bigint;
  v_ids integer[] := '{}';
  v_total bigint;
  v_full boolean;
BEGIN
  v_full := (SELECT m.full_refresh_needed FROM canon_internal.cabinet_lead_state_meta m);
  IF NOT v_full THEN
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
    SELECT coalesce(sum(x.leads), 0) INTO v_total FROM canon.limbo_counts_delta(v_ids) x;
    v_full := v_dated IS NULL OR v_total <> v_dated;
  END IF;

  IF v_full THEN
    -- Every dated lead row, as the view counts it (set-based: the stored rows that are
    -- current, the others evaluated live once).
    v_ids := ARRAY(SELECT l.id FROM public.module_ct_cabinet_leads l WHERE isfinite(l.lead_created_at)
                   UNION SELECT s.lead_id FROM canon_internal.cabinet_lead_state s);
  END IF;

  RETURN QUERY
  SELECT x.week_start,
         sum(x.leads)::integer,
         coalesce(sum(x.leads) FILTER (WHERE x.with_identity), 0)::integer,
         coalesce(sum(x.leads) FILTER (WHERE x.with_driver), 0)::integer,
         coalesce(sum(x.leads) FILTER (WHERE x.limbo_stage = 'NO_IDENTITY'), 0)::integer,
         coalesce(sum(x.leads) FILTER (WHERE x.limbo_stage = 'NO_DRIVER'), 0)::integer,
         coalesce(sum(x.leads) FILTER (WHERE x.limbo_stage = 'NO_TRIPS_14D'), 0)::integer,
         coalesce(sum(x.leads) FILTER (WHERE x.limbo_stage = 'TRIPS_NO_CLAIM'), 0)::integer,
         coalesce(sum(x.leads) FILTER (WHERE x.limbo_stage = 'OK'), 0)::integer
  FROM canon.limbo_counts_delta(v_ids) x
  GROUP BY x.week_start
  HAVING sum(x.leads) <> 0
  ORDER BY x.week_start;
END
$$;
COMMENT ON FUNCTION canon.limbo_week_counts_of_state(boolean) IS
  'Leads per limbo stage per lead week as ops.v_cabinet_leads_limbo counts them, from the stored state''s counters corrected for the rows that may not be current (marked, or written since the last lead read when p_read_leads); counts the view in full when they do not add up.';
