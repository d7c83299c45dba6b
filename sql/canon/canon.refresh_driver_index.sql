-- canon.refresh_driver_index: pipeline step 4, brings the driver matching index up to
-- date with public.drivers. Not implemented yet (matching issue): reports so in stats.
CREATE OR REPLACE FUNCTION canon.refresh_driver_index(p_run_id bigint)
RETURNS jsonb
LANGUAGE sql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT jsonb_build_object('implemented', false)
$$;
COMMENT ON FUNCTION canon.refresh_driver_index(bigint) IS 'Pipeline step 4: incremental refresh of the driver matching index. Returns step stats.';
