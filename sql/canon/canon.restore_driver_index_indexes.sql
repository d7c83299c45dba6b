-- canon.restore_driver_index_indexes: creates every secondary index of
-- canon_internal.driver_index (canon.driver_index_secondary_indexes) that does not exist,
-- by one sort of the table each. Called right after the first build's rows, and at the start
-- of every build (a no-op when all exist: an index dropped by hand comes back by the next
-- run). Returns the number created. SECURITY DEFINER: creating an index needs the table's
-- owner; it takes no argument, so it can create only these.
CREATE OR REPLACE FUNCTION canon.restore_driver_index_indexes()
RETURNS integer
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- the plate keys of 1M drivers (7M) sort in memory
SET maintenance_work_mem = '256MB'
AS $$
DECLARE
  r record;
  n integer := 0;
BEGIN
  FOR r IN
    SELECT s.definition FROM canon.driver_index_secondary_indexes() s
    WHERE to_regclass(format('canon_internal.%I', s.index_name)) IS NULL
  LOOP
    EXECUTE r.definition;
    n := n + 1;
  END LOOP;
  RETURN n;
END
$$;
COMMENT ON FUNCTION canon.restore_driver_index_indexes() IS
  'Creates the secondary indexes of canon_internal.driver_index that do not exist (after the first build, or dropped by hand); returns how many. SECURITY DEFINER (the table owner''s right).';
