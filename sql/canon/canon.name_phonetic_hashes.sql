-- canon.name_phonetic_hashes: canon.name_phonetic_keys as 64-bit hashes (hashtextextended,
-- seed 0), the form the name GIN index of canon_internal.driver_index holds (integer keys
-- merge several times faster than text keys in the database's collation). A probe asks for
-- the hash of one key and checks the key itself on the rows found. The statement of
-- canon.name_phonetic_keys hashed as it goes (calling it would add a function call a row to
-- every index build); a test holds the two equal.
CREATE OR REPLACE FUNCTION canon.name_phonetic_hashes(p_name_norm text)
RETURNS bigint[]
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
STRICT
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT coalesce(array_agg(DISTINCT hashtextextended(canon.name_phonetic(t), 0)), '{}')
  FROM unnest(string_to_array(p_name_norm, ' ')) t
  WHERE length(t) >= 3
$$;
COMMENT ON FUNCTION canon.name_phonetic_hashes(text) IS
  'canon.name_phonetic_keys hashed (hashtextextended, seed 0): the keys of the name GIN index on canon_internal.driver_index.';
