-- canon.suspend_driver_index_indexes: for the first build of the driver index only. When
-- canon_internal.driver_index is empty and no other session holds a lock on it, drops its
-- secondary indexes (canon.driver_index_secondary_indexes) in the caller's transaction, so
-- that the build inserts its rows into the bare table; canon.restore_driver_index_indexes
-- creates them again, in the same transaction (a failure rolls the drops back). Returns
-- false, dropping nothing, when the table has rows or is in use: the build then inserts as
-- every later run does. SECURITY DEFINER: dropping an index needs the table's owner, and
-- the job role changes no schema; it takes no argument, so it can do nothing else.
CREATE OR REPLACE FUNCTION canon.suspend_driver_index_indexes()
RETURNS boolean
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  r record;
BEGIN
  BEGIN
    -- readers of the index would wait for the whole build: only when none is there
    LOCK TABLE canon_internal.driver_index IN ACCESS EXCLUSIVE MODE NOWAIT;
  EXCEPTION WHEN lock_not_available THEN
    RETURN false;
  END;
  IF EXISTS (SELECT 1 FROM canon_internal.driver_index) THEN
    RETURN false;
  END IF;
  FOR r IN SELECT s.index_name FROM canon.driver_index_secondary_indexes() s LOOP
    EXECUTE format('DROP INDEX IF EXISTS canon_internal.%I', r.index_name);
  END LOOP;
  RETURN true;
END
$$;
COMMENT ON FUNCTION canon.suspend_driver_index_indexes() IS
  'First build only: drops the secondary indexes of an empty, unused canon_internal.driver_index in the caller''s transaction (restored by canon.restore_driver_index_indexes); false when it did nothing. SECURITY DEFINER (the table owner''s right).';
