-- ops.limbo_week_counts: leads per limbo stage for each lead week (week_start = ISO
-- Monday of lead_date), the one definition of the counts that snapshots store and alert
-- rules test. p_run_id NULL: live, the counts of ops.v_cabinet_leads_limbo without a
-- pass over every lead (canon.limbo_week_counts_of_state); a run id: the rows stored for that run in
-- ops.limbo_snapshot_weeks. PL/pgSQL so that only the branch taken is planned; jit off
-- (the live part's estimate over the lead view once triggered a JIT compilation that
-- took longer than the whole count). SECURITY DEFINER (it only reads; a fixed
-- search_path): the live counts read the canon caches and the lead rows, which a
-- cabinet_leads_reader may not read, for ops.limbo_alert_metrics (status, alerts).
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
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
#variable_conflict use_column
BEGIN
  IF p_run_id IS NULL THEN
    -- The view's counts without a pass over it: the stored state's counters corrected for
    -- the rows that may not be current (canon.limbo_week_counts_of_state); equal to a pass
    -- over ops.v_cabinet_leads_limbo grouped by week_start (tests:
    -- test/invariants/pipeline.test.ts, test/sql/canon.count_lead_state_changes.test.ts).
    RETURN QUERY SELECT * FROM canon.limbo_week_counts_of_state(true);
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
