-- canon.lead_status_live: the live state of one lead row (canon.v_cabinet_lead_status),
-- for canon.v_cabinet_lead_status_current to evaluate the rows whose stored state is not
-- current one by one. A function rather than a subquery so that the planner prices it as
-- the few rows it is called for (ROWS 1, COST), not as the chain of every lead, and never
-- JIT-compiles a count over the view for it; its own statement runs without JIT.
CREATE OR REPLACE FUNCTION canon.lead_status_live(p_lead_id integer)
RETURNS SETOF canon.v_cabinet_lead_status
LANGUAGE sql
STABLE
ROWS 1
COST 10
SET jit = off
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT * FROM canon.v_cabinet_lead_status v WHERE v.lead_id = p_lead_id
$$;
COMMENT ON FUNCTION canon.lead_status_live(integer) IS
  'The live state of one lead row (canon.v_cabinet_lead_status), priced as one row: how canon.v_cabinet_lead_status_current evaluates the rows it cannot read stored.';
