-- ops.limbo_week_counts: leads per limbo stage for each lead week (week_start = ISO
-- Monday of lead_date), the one definition of the counts that snapshots store and alert
-- rules test. p_run_id NULL: live, the counts of ops.v_cabinet_leads_limbo without a
-- pass over it (see below); a run id: the rows stored for that run in
-- ops.limbo_snapshot_weeks. PL/pgSQL so that only the branch taken is planned; jit off
-- (the live part's estimate over the lead view once triggered a JIT compilation that
-- took longer than the whole count).
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
    -- The view's rows are the stored state (counted as it changes, in
    -- canon.cabinet_lead_state_counts) and the lead rows newer than the last evaluation
    -- (read live, usually none): counted here from those two parts, equal to a pass over
    -- ops.v_cabinet_leads_limbo grouped by week_start (tests: test/invariants/pipeline.test.ts,
    -- test/sql/canon.count_lead_state_changes.test.ts).
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
    FROM (
      SELECT date_trunc('week', c.lead_date::timestamp)::date AS week_start, c.limbo_stage,
             c.with_identity, c.with_driver, c.leads
      FROM canon.cabinet_lead_state_counts c
      UNION ALL
      SELECT date_trunc('week', v.lead_date::timestamp)::date, v.limbo_stage,
             v.person_key IS NOT NULL, v.driver_id IS NOT NULL, 1
      FROM canon.v_cabinet_lead_status v
      WHERE v.lead_id > canon.lead_state_watermark()
        AND NOT EXISTS (SELECT 1 FROM canon.cabinet_lead_state s WHERE s.lead_id = v.lead_id)
    ) x
    GROUP BY x.week_start
    ORDER BY x.week_start;
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
