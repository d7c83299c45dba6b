-- Internal bookkeeping of the driver index (one row): when it last changed, when it was last
-- reconciled whole with public.drivers.
CREATE TABLE canon_internal.driver_index_state (
  singleton        boolean DEFAULT true PRIMARY KEY CHECK (singleton),
  last_full_at     timestamptz,
  last_refresh_at  timestamptz,
  last_run_id      bigint,
  changed_at       timestamptz,
  retry_checked_at timestamptz
);

COMMENT ON TABLE canon_internal.driver_index_state IS
  'When the driver index last changed and was last reconciled whole with public.drivers (one row).';
COMMENT ON COLUMN canon_internal.driver_index_state.changed_at IS
  'Last time canon.refresh_driver_index wrote or removed rows of canon_internal.driver_index (reported by runs; OPEN unmatched leads are retried when due, see canon.identity_unmatched.retry_due).';
COMMENT ON COLUMN canon_internal.driver_index_state.retry_checked_at IS
  'Driver index rows indexed (and keys logged in canon_internal.driver_index_key_changes) after this time are still to be checked against the OPEN unmatched leads by canon.mark_retries_due. NULL: never checked (every OPEN lead is due).';
