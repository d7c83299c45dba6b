-- canon.lock_lead_claims: the claims of one lead, locked FOR UPDATE in milestone order and
-- read as committed, for the operator tools (ops.unlink_lead, ops.resolve_lead,
-- ops.ignore_lead) to decide on before they change anything. A claim that another
-- transaction is settling (finance's UPDATE ... SET status = 'paid') is waited for and
-- then read as finance left it; a claim locked here cannot be settled until the tool's
-- transaction ends, so finance's UPDATE waits and then sees what the tool did. One lock
-- order for every tool (the primary key's), so that two of them never deadlock.
CREATE OR REPLACE FUNCTION canon.lock_lead_claims(p_lead_source_pk text)
RETURNS SETOF canon.claims_yango_cabinet_14d
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '30s'
AS $$
BEGIN
  RETURN QUERY
    SELECT c.*
    FROM canon.claims_yango_cabinet_14d c
    WHERE c.lead_source_pk = p_lead_source_pk
    ORDER BY c.milestone
    FOR UPDATE;
EXCEPTION WHEN lock_not_available THEN
  RAISE EXCEPTION 'the claims of lead % are being changed by another transaction (finance?) that has held them for more than 30 s: try again when it has committed', quote_literal(p_lead_source_pk)
    USING ERRCODE = '55P03';
END
$$;
COMMENT ON FUNCTION canon.lock_lead_claims(text) IS
  'The claims of one lead locked FOR UPDATE in milestone order and read as committed (a settlement in flight is waited for, up to 30 s: 55P03), for the operator tools to decide on.';
