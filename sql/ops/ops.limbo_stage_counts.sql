-- ops.limbo_stage_counts: current number of leads per limbo stage as one jsonb object,
-- recorded before and after each run. NULL until the limbo view exists (limbo issue).
CREATE OR REPLACE FUNCTION ops.limbo_stage_counts()
RETURNS jsonb
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT NULL::jsonb
$$;
COMMENT ON FUNCTION ops.limbo_stage_counts() IS 'Leads per limbo stage, e.g. {"NO_IDENTITY": 3, "OK": 10}.';
