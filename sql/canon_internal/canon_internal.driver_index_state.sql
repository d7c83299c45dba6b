-- Internal bookkeeping of the driver index (one row): when it last changed, when it was last
-- reconciled whole with public.drivers.
CREATE TABLE canon_internal.driver_index_state (
  singleton        boolean DEFAULT true PRIMARY KEY CHECK (singleton),
  last_full_at     timestamptz,
  last_refresh_at  timestamptz,
  last_run_id      bigint,
  changed_at       timestamptz,
  retry_checked_at timestamptz,
  odd_future_from  timestamp,
  odd_future_rows  bigint,
  odd_untimed_rows bigint,
  odd_versions     tid[],
  odd_version_xmins xid[],
  odd_relfilenode  oid
);

COMMENT ON TABLE canon_internal.driver_index_state IS
  'When the driver index last changed and was last reconciled whole with public.drivers (one row).';
COMMENT ON COLUMN canon_internal.driver_index_state.changed_at IS
  'Last time canon.refresh_driver_index wrote or removed rows of canon_internal.driver_index (reported by runs; OPEN unmatched leads are retried when due, see canon.identity_unmatched.retry_due).';
COMMENT ON COLUMN canon_internal.driver_index_state.retry_checked_at IS
  'Driver index rows indexed (and keys logged in canon_internal.driver_index_key_changes) after this time are still to be checked against the OPEN unmatched leads by canon.mark_retries_due. NULL: never checked (every OPEN lead is due).';
COMMENT ON COLUMN canon_internal.driver_index_state.odd_future_from IS
  'The threshold of the last count of odd timestamps (now in the business time zone plus a day): a row with updated_at or created_at after it was FUTURE_TIMESTAMP. A run whose threshold is earlier (the time zone changed) counts every row again.';
COMMENT ON COLUMN canon_internal.driver_index_state.odd_versions IS
  'The row versions of public.drivers (ctid, with odd_version_xmins their xmin) that were odd at the last count (a timestamp after odd_future_from, or neither timestamp). The next run counts these, where the same version is still there, and the versions written since the last read: a version not odd then is not odd later (the threshold only moves forward). NULL: count every row.';
COMMENT ON COLUMN canon_internal.driver_index_state.odd_version_xmins IS
  'The xmin of each version of odd_versions, in the same order: a slot reused by another row is not the version counted.';
COMMENT ON COLUMN canon_internal.driver_index_state.odd_relfilenode IS
  'The file of public.drivers when odd_versions were taken: a rewrite (VACUUM FULL, CLUSTER) moves every row, and the next run counts every row again.';
