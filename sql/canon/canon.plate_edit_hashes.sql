-- canon.plate_edit_hashes: canon.plate_edit_keys as 64-bit hashes (hashtextextended, seed 0),
-- the form the GIN index of canon_internal.driver_index holds: an integer key compares and
-- merges several times faster than a text key in the database's collation, which is most of
-- a full build of the index (7 keys a plate). Two plates sharing a key share its hash; a
-- hash shared by chance only proposes a pair that canon.plate_comparison then rejects.
-- The same loop as canon.plate_edit_keys, hashed as it goes (a query per call would cost
-- more than the hashing); a test holds the two equal.
CREATE OR REPLACE FUNCTION canon.plate_edit_hashes(p_plate text)
RETURNS bigint[]
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  keys bigint[] := ARRAY[hashtextextended(p_plate, 0)];
BEGIN
  IF length(p_plate) > 1 THEN
    FOR i IN 1 .. length(p_plate) LOOP
      keys := keys || hashtextextended(overlay(p_plate PLACING '' FROM i FOR 1), 0);
    END LOOP;
  END IF;
  RETURN keys;
END
$$;
COMMENT ON FUNCTION canon.plate_edit_hashes(text) IS
  'canon.plate_edit_keys hashed (hashtextextended, seed 0): the keys of the near-plate GIN index on canon_internal.driver_index.';
