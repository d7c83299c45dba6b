-- canon.limbo_week_counts_of_state: leads per limbo stage for each lead week, as
-- ops.v_cabinet_leads_limbo would count them, without a pass over every lead: the counters
-- of the stored state (canon_internal.cabinet_lead_state_counts), less the stored rows that may not
-- be current, plus the view's rows for those leads (canon.limbo_counts_delta). The rows
-- that may not be current: canon.lead_ids_maybe_not_current (marked, written since the
-- last read with p_read_leads; every lead row when the counts do not add up). Without
-- p_read_leads the lead rows are taken as of the last read (the snapshot of a run, moments
-- after its own read).
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
  v_ids integer[] := canon.lead_ids_maybe_not_current(p_read_leads);
BEGIN
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
