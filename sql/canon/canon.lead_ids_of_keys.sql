-- canon.lead_ids_of_keys: the lead rows (ids) that carry the given lead keys, as keyed in
-- canon_internal.lead_keys or stored in canon_internal.cabinet_lead_state (a row re-keyed since it was
-- stored is found under both keys). What a changed key means for the lead state: used by
-- step 7 and ops.refresh_cabinet_lead_state to turn keys into rows to re-evaluate.
CREATE OR REPLACE FUNCTION canon.lead_ids_of_keys(p_keys text[])
RETURNS integer[]
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT ARRAY(
    SELECT k.lead_id FROM canon_internal.lead_keys k WHERE k.lead_source_pk = ANY (p_keys)
    UNION
    -- (joined to the keys, not "= ANY (p_keys)": through the hash index that became a
    -- bitmap scan whose recheck compared every row of the blocks read with the whole
    -- array, 290 ms for 7,440 keys of a backfill run; probed key by key it is 10 ms)
    SELECT s.lead_id
    FROM unnest(p_keys) x (lead_source_pk)
    JOIN canon_internal.cabinet_lead_state s ON s.lead_source_pk = x.lead_source_pk
    ORDER BY 1)
$$;
COMMENT ON FUNCTION canon.lead_ids_of_keys(text[]) IS
  'Lead row ids carrying the given lead keys (canon_internal.lead_keys and canon_internal.cabinet_lead_state).';
