-- ops.limbo_week_counts: leads per limbo stage for each lead week (week_start = ISO
-- Monday of lead_date), the one definition of the counts that snapshots store and alert
-- rules test. p_run_id NULL: live, one pass over ops.v_cabinet_leads_limbo; a run id:
-- the rows stored for that run in ops.limbo_snapshot_weeks (no pass over the view).
-- PL/pgSQL so that only the branch taken is planned (the limbo view is costly to plan);
-- jit off because the view's cost estimate triggers JIT compilation that takes longer
-- (about 0.3 s) than the whole aggregate.
CREATE OR REPLACE FUNCTION ops.limbo_week_counts(p_run_id bigint DEFAULT NULL)
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
BEGIN
  IF p_run_id IS NULL THEN
    RETURN QUERY
    SELECT l.week_start,
           count(*)::integer,
           (count(*) FILTER (WHERE l.person_key IS NOT NULL))::integer,
           (count(*) FILTER (WHERE l.driver_id IS NOT NULL))::integer,
           (count(*) FILTER (WHERE l.limbo_stage = 'NO_IDENTITY'))::integer,
           (count(*) FILTER (WHERE l.limbo_stage = 'NO_DRIVER'))::integer,
           (count(*) FILTER (WHERE l.limbo_stage = 'NO_TRIPS_14D'))::integer,
           (count(*) FILTER (WHERE l.limbo_stage = 'TRIPS_NO_CLAIM'))::integer,
           (count(*) FILTER (WHERE l.limbo_stage = 'OK'))::integer
    FROM ops.v_cabinet_leads_limbo l
    GROUP BY l.week_start
    ORDER BY l.week_start;
  ELSE
    RETURN QUERY
    SELECT w.week_start, w.leads, w.leads_with_identity, w.leads_with_driver, w.limbo_no_identity,
           w.limbo_no_driver, w.limbo_no_trips_14d, w.limbo_trips_no_claim, w.limbo_ok
    FROM ops.limbo_snapshot_weeks w
    WHERE w.run_id = p_run_id
    ORDER BY w.week_start;
  END IF;
END
$$;
COMMENT ON FUNCTION ops.limbo_week_counts(bigint) IS
  'Leads per limbo stage per lead week: live from ops.v_cabinet_leads_limbo (p_run_id NULL) or as stored in the snapshot of run p_run_id.';
