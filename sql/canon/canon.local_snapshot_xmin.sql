-- canon.local_snapshot_xmin: the oldest transaction of a snapshot that could still write
-- this database's tables: the smallest xid of its in-progress list that is not this
-- transaction's own and not positively known to belong to another database (a transaction
-- writes one database only; pg_stat_activity names its database, while it runs), else its
-- xmax. A row version the snapshot did not show was written by such a transaction or a
-- later one (a subtransaction's xid follows its parent's), so its xmin is at least this:
-- what canon.source_scan_state.seen_xmin keeps. A long transaction in another database of
-- the cluster then does not make every run read again all that was written since it began.
-- An xid whose backend is gone by now counts (as if local): re-read, never skipped.
CREATE OR REPLACE FUNCTION canon.local_snapshot_xmin(p_snapshot pg_snapshot)
RETURNS xid8
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT coalesce(min(x.xid), pg_snapshot_xmax(p_snapshot))
  FROM pg_snapshot_xip(p_snapshot) x (xid)
  WHERE x.xid IS DISTINCT FROM pg_current_xact_id_if_assigned()
    AND NOT EXISTS (
      SELECT 1
      FROM pg_stat_activity a
      WHERE a.backend_xid IS NOT NULL
        AND a.backend_xid::text::bigint = x.xid::text::bigint % 4294967296
        AND a.datid IS DISTINCT FROM (SELECT d.oid FROM pg_database d WHERE d.datname = current_database()))
$$;
COMMENT ON FUNCTION canon.local_snapshot_xmin(pg_snapshot) IS
  'Oldest in-progress xid of the snapshot that could write this database (not ours, not known to be another database''s), else its xmax: the seen_xmin of a read taken with it.';
