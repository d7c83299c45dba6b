-- Internal bookkeeping of the driver index (one row): when it last changed, when it was last
-- reconciled whole with public.drivers.
CREATE TABLE canon_internal.driver_index_state (
  singleton        boolean DEFAULT true PRIMARY KEY CHECK (singleton),
  last_full_at     timestamptz,
  last_refresh_at  timestamptz,
  last_run_id      bigint,
  changed_at       timestamptz,
  retry_checked_at timestamptz,
  odd_rows         bigint,
  odd_future_from  timestamp,
  odd_valid_before timestamp,
  odd_future_rows  bigint,
  odd_untimed_rows bigint,
  odd_hint_writes  bigint
);

COMMENT ON TABLE canon_internal.driver_index_state IS
  'When the driver index last changed and was last reconciled whole with public.drivers (one row).';
COMMENT ON COLUMN canon_internal.driver_index_state.changed_at IS
  'Last time canon.refresh_driver_index wrote or removed rows of canon_internal.driver_index (reported by runs; OPEN unmatched leads are retried when due, see canon.identity_unmatched.retry_due).';
COMMENT ON COLUMN canon_internal.driver_index_state.retry_checked_at IS
  'Driver index rows indexed (and keys logged in canon_internal.driver_index_key_changes) after this time are still to be checked against the OPEN unmatched leads by canon.mark_retries_due. NULL: never checked (every OPEN lead is due).';
COMMENT ON COLUMN canon_internal.driver_index_state.odd_rows IS
  'The driver rows counted by the run that last counted the odd timestamps (odd_future_rows, odd_untimed_rows). A run reuses those counts only while the table is provably the same (this many rows, none written since its read) and the clock has not moved a row across the future threshold (odd_future_from, odd_valid_before); NULL: count again.';
COMMENT ON COLUMN canon_internal.driver_index_state.odd_future_from IS
  'The threshold the odd timestamps were counted against (now in the business time zone plus a day): a row with updated_at or created_at after it was FUTURE_TIMESTAMP.';
COMMENT ON COLUMN canon_internal.driver_index_state.odd_valid_before IS
  'The earliest time at which a row counted FUTURE_TIMESTAMP stops being one (the least, over those rows, of the later of updated_at and created_at); NULL when none was.';
COMMENT ON COLUMN canon_internal.driver_index_state.odd_hint_writes IS
  'The rows of public.drivers inserted, updated and deleted by the statistics system''s count when the odd timestamps were last counted: when it moved, the next run counts them in its pass (a hint for speed; the reuse of the counts does not rely on it).';
