-- canon.fs_name_block: the drivers of one name key in the probabilistic tier's name block:
-- every indexed driver whose name has the phonetic key (GIN driver_index_name_keys_idx, on
-- canon.name_phonetic_hashes), or
-- NULL when more than p_max do (name_block_max_drivers: the key is not rare after all and
-- blocks nothing). Read by canon.fs_blocked_pairs and canon.mark_retries_due.
CREATE OR REPLACE FUNCTION canon.fs_name_block(p_key text, p_max integer)
RETURNS text[]
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT CASE WHEN count(*) <= p_max THEN coalesce(array_agg(y.driver_id), '{}') END
  FROM (SELECT d.driver_id
        FROM canon_internal.driver_index d
        WHERE canon.name_phonetic_hashes(d.name_norm) @> ARRAY[hashtextextended(p_key, 0)] AND d.name_norm IS NOT NULL
          AND p_key = ANY (canon.name_phonetic_keys(d.name_norm)) -- the key itself, not a hash shared by chance
        LIMIT p_max + 1) y
$$;
COMMENT ON FUNCTION canon.fs_name_block(text, integer) IS
  'Probabilistic tier: the indexed drivers whose name has this phonetic key, NULL when more than p_max (the key blocks nothing).';
