-- canon.plate_edit_keys: the plate and every form of it with one character deleted (its
-- deletion neighbourhood). Two plates one edit apart (a character changed, missing or
-- added, or two adjacent ones swapped) always share one of these keys, so the GIN index
-- of canon_internal.driver_index on them finds near plates by key, never by scanning.
-- Read by canon.probabilistic_candidates (lead side) and the index (driver side).
CREATE OR REPLACE FUNCTION canon.plate_edit_keys(p_plate text)
RETURNS text[]
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
STRICT
SET search_path = pg_catalog, pg_temp
AS $$
-- a loop, not a query: called per lead and per indexed driver
DECLARE
  keys text[] := ARRAY[p_plate];
BEGIN
  IF length(p_plate) > 1 THEN
    FOR i IN 1 .. length(p_plate) LOOP
      keys := keys || overlay(p_plate PLACING '' FROM i FOR 1);
    END LOOP;
  END IF;
  RETURN keys;
END
$$;
COMMENT ON FUNCTION canon.plate_edit_keys(text) IS
  'The plate and its one-deletion forms (ABC123: ABC123, BC123, AC123, ...): plates one edit apart (substitution, insertion, deletion, adjacent swap) share a key. Indexed on canon_internal.driver_index.';
