-- ops.limbo_stage_actions: per limbo stage other than OK that has leads, the leads in it
-- and those a person can act on now: every NO_DRIVER lead (link the person's driver),
-- every TRIPS_NO_CLAIM lead (get the claim generated), the NO_IDENTITY leads of
-- canon.actionable_no_identity_leads, no NO_TRIPS_14D lead (they wait for trips). Counted
-- from the stored state's counters corrected for the rows that may not be current, as
-- ops.limbo_stage_counts does (one pass over the lead rows, by commit order, not a pass
-- over the limbo view). Read by `cabinet-leads report`. SECURITY DEFINER (it only reads;
-- a fixed search_path): a reader runs the report.
CREATE OR REPLACE FUNCTION ops.limbo_stage_actions()
RETURNS TABLE (limbo_stage text, leads bigint, actionable bigint)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
  v_ids integer[] := canon.lead_ids_maybe_not_current(true);
BEGIN
  RETURN QUERY
  SELECT s.limbo_stage, s.leads,
         CASE s.limbo_stage
           WHEN 'NO_IDENTITY' THEN (SELECT count(*) FROM canon.actionable_no_identity_leads(v_ids))
           WHEN 'NO_TRIPS_14D' THEN 0
           ELSE s.leads
         END
  FROM (SELECT x.limbo_stage, sum(x.leads)::bigint AS leads
        FROM canon.limbo_counts_delta(v_ids) x
        WHERE x.limbo_stage <> 'OK'
        GROUP BY x.limbo_stage
        HAVING sum(x.leads) <> 0) s
  ORDER BY array_position(ARRAY['NO_IDENTITY', 'NO_DRIVER', 'NO_TRIPS_14D', 'TRIPS_NO_CLAIM'], s.limbo_stage);
END
$$;
COMMENT ON FUNCTION ops.limbo_stage_actions() IS
  'Per limbo stage other than OK (with leads): leads, and those a person can act on now (all NO_DRIVER and TRIPS_NO_CLAIM, the NO_IDENTITY leads awaiting review or missing every key, no NO_TRIPS_14D); read by cabinet-leads report.';
