-- ops.limbo_stage_counts: current number of leads per limbo stage as one jsonb object
-- with all five stages (0 when none), from ops.v_cabinet_leads_limbo. Recorded in the
-- run stats before and after each run (limbo_before, limbo_after). jit is off: compiling
-- the view's large expressions costs about a second and saves nothing on this query.
CREATE OR REPLACE FUNCTION ops.limbo_stage_counts()
RETURNS jsonb
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
  SELECT jsonb_object_agg(s.stage, coalesce(c.n, 0) ORDER BY s.ord)
  FROM unnest(ARRAY['NO_IDENTITY', 'NO_DRIVER', 'NO_TRIPS_14D', 'TRIPS_NO_CLAIM', 'OK']) WITH ORDINALITY s (stage, ord)
  LEFT JOIN (
    SELECT l.limbo_stage, count(*) AS n
    FROM ops.v_cabinet_leads_limbo l
    GROUP BY l.limbo_stage
  ) c ON c.limbo_stage = s.stage
$$;
COMMENT ON FUNCTION ops.limbo_stage_counts() IS
  'Leads per limbo stage from ops.v_cabinet_leads_limbo, all five stages present, e.g. {"NO_IDENTITY": 3, "NO_DRIVER": 0, "NO_TRIPS_14D": 1, "TRIPS_NO_CLAIM": 0, "OK": 10}.';
