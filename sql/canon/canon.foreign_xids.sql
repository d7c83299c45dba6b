-- canon.foreign_xids: the transactions in progress now in other databases of the cluster
-- (their 32-bit xids, from pg_stat_activity, as of now: the statistics snapshot is cleared
-- first). Read just before a source table is read, so that canon.local_snapshot_xmin can
-- leave them out of what the next read must go back to: a transaction writes one database
-- only. One started between this call and the read's snapshot is not in the list (counted
-- as local: read again, never skipped).
CREATE OR REPLACE FUNCTION canon.foreign_xids()
RETURNS bigint[]
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM pg_stat_clear_snapshot();
  RETURN ARRAY(
    SELECT a.backend_xid::text::bigint
    FROM pg_stat_activity a
    WHERE a.backend_xid IS NOT NULL
      AND a.datid IS DISTINCT FROM (SELECT d.oid FROM pg_database d WHERE d.datname = current_database()));
END
$$;
COMMENT ON FUNCTION canon.foreign_xids() IS
  'xids (32-bit, as bigint) of the transactions in progress in other databases, as of now: for canon.local_snapshot_xmin.';
