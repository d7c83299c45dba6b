-- canon.local_snapshot_xmin: the oldest transaction of a snapshot that could still write
-- this database's tables: the smallest xid of its in-progress list that is not this
-- transaction's own nor one of p_foreign (transactions of other databases, read by
-- canon.foreign_xids just before the snapshot was taken: a transaction writes one database
-- only), else the snapshot's xmax. A row version the snapshot did not show was written by
-- such a transaction or a later one (a subtransaction's xid follows its parent's), so its
-- xmin is at least this: what canon_internal.source_scan_state.seen_xmin keeps. A long transaction
-- in another database of the cluster then does not make every run read again all that
-- was written since it began; any xid not known to be foreign counts (read again, never
-- skipped).
CREATE OR REPLACE FUNCTION canon.local_snapshot_xmin(p_snapshot pg_snapshot, p_foreign bigint[])
RETURNS xid8
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT coalesce(min(x.xid), pg_snapshot_xmax(p_snapshot))
  FROM pg_snapshot_xip(p_snapshot) x (xid)
  WHERE x.xid IS DISTINCT FROM pg_current_xact_id_if_assigned()
    AND NOT (x.xid::text::bigint % 4294967296 = ANY (coalesce(p_foreign, '{}')))
$$;
COMMENT ON FUNCTION canon.local_snapshot_xmin(pg_snapshot, bigint[]) IS
  'Oldest in-progress xid of the snapshot that could write this database (not ours, not in p_foreign), else its xmax: the seen_xmin of a read taken with it.';
