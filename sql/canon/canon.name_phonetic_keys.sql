-- canon.name_phonetic_keys: the phonetic keys (canon.name_phonetic) of the tokens of a
-- normalised name with 3 letters or more: the blocking keys of the probabilistic tier's name
-- block, indexed (GIN) on canon_internal.driver_index. Probed only with a lead's rare keys.
CREATE OR REPLACE FUNCTION canon.name_phonetic_keys(p_name_norm text)
RETURNS text[]
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
STRICT
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT coalesce(array_agg(DISTINCT canon.name_phonetic(t)), '{}')
  FROM unnest(string_to_array(p_name_norm, ' ')) t
  WHERE length(t) >= 3
$$;
COMMENT ON FUNCTION canon.name_phonetic_keys(text) IS
  'Phonetic keys (canon.name_phonetic) of the tokens of 3+ letters of a normalised name: the name block of the probabilistic tier (GIN index on canon_internal.driver_index).';
