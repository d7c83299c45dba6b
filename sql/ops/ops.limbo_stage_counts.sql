-- ops.limbo_stage_counts: current number of leads per limbo stage as one jsonb object
-- with all five stages (0 when none), as ops.v_cabinet_leads_limbo counts them
-- (canon.limbo_week_counts_of_state: no pass over every lead). Recorded in the
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
    SELECT w.stage, sum(w.n) AS n
    FROM canon.limbo_week_counts_of_state(true) c
    CROSS JOIN LATERAL (VALUES ('NO_IDENTITY', c.limbo_no_identity), ('NO_DRIVER', c.limbo_no_driver),
                               ('NO_TRIPS_14D', c.limbo_no_trips_14d), ('TRIPS_NO_CLAIM', c.limbo_trips_no_claim),
                               ('OK', c.limbo_ok)) w (stage, n)
    GROUP BY w.stage
  ) c ON c.stage = s.stage
$$;
COMMENT ON FUNCTION ops.limbo_stage_counts() IS
  'Leads per limbo stage from ops.v_cabinet_leads_limbo, all five stages present, e.g. {"NO_IDENTITY": 3, "NO_DRIVER": 0, "NO_TRIPS_14D": 1, "TRIPS_NO_CLAIM": 0, "OK": 10}.';
