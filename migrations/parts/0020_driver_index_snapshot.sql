-- The driver index refresh re-reads an hour behind its watermark (rows committed late
-- with an older updated_at). A row version the previous refresh could already see was
-- read by it: only versions written by transactions that were not visible to that
-- refresh's snapshot are looked at again (their xmin, against the snapshot kept here).
ALTER TABLE canon.driver_index_state ADD COLUMN IF NOT EXISTS refreshed_snapshot pg_snapshot;
COMMENT ON COLUMN canon.driver_index_state.refreshed_snapshot IS
  'Snapshot of the last refresh of canon.driver_index: rows of public.drivers visible to it were read then, and the next incremental refresh skips them in its hour of overlap. NULL: every row of the overlap is read.';
