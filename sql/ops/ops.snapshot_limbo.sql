-- ops.snapshot_limbo: pipeline step 8, stores the limbo counts of a completed run and
-- evaluates the alert rules. Not implemented yet (alerts issue): reports so in stats.
CREATE OR REPLACE FUNCTION ops.snapshot_limbo(p_run_id bigint)
RETURNS jsonb
LANGUAGE sql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT jsonb_build_object('implemented', false)
$$;
COMMENT ON FUNCTION ops.snapshot_limbo(bigint) IS 'Pipeline step 8: snapshot limbo counts per stage and lead week, evaluate alerts. Returns step stats.';
