-- canon.generate_cabinet_claims: pipeline step 7, inserts the missing 14-day claims of
-- the leads in scope. Not implemented yet (claims issue): reports so in stats.
CREATE OR REPLACE FUNCTION canon.generate_cabinet_claims(p_run_id bigint, p_scope_from date)
RETURNS jsonb
LANGUAGE sql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT jsonb_build_object('implemented', false)
$$;
COMMENT ON FUNCTION canon.generate_cabinet_claims(bigint, date) IS 'Pipeline step 7: generate missing claims for leads with lead_date >= p_scope_from. Returns step stats.';
