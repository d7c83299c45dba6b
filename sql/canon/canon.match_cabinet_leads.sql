-- canon.match_cabinet_leads: pipeline steps 5 and 6, selects the batch of leads to
-- evaluate and matches and links them. Not implemented yet (matching issue).
CREATE OR REPLACE FUNCTION canon.match_cabinet_leads(p_run_id bigint, p_scope_from date, p_limit integer, p_only_limbo boolean)
RETURNS jsonb
LANGUAGE sql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT jsonb_build_object('implemented', false)
$$;
COMMENT ON FUNCTION canon.match_cabinet_leads(bigint, date, integer, boolean) IS 'Pipeline steps 5-6: select the batch, match, link, record unmatched reasons. Returns step stats.';
