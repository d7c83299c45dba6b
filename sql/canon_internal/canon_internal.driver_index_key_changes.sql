-- Internal marks: keys drivers lost (re-indexed with other keys, or removed), written by
-- canon.refresh_driver_index and consumed by canon.mark_retries_due, so an OPEN lead that shared
-- such a key, or had the driver as a probabilistic candidate (a plate one edit away with a
-- shared name token, a rare name key: hence the plate and the name together), is retried.
CREATE TABLE canon_internal.driver_index_key_changes (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  driver_id    text NOT NULL,
  change       text NOT NULL CHECK (change IN ('KEYS_CHANGED', 'REMOVED')),
  phone_norm   text,
  license_norm text,
  plate_norm   text,
  name_norm    text,
  logged_at    timestamptz NOT NULL DEFAULT now(),
  run_id       bigint
);

CREATE INDEX driver_index_key_changes_logged_at_idx ON canon_internal.driver_index_key_changes (logged_at);

COMMENT ON TABLE canon_internal.driver_index_key_changes IS
  'Keys drivers lost (re-indexed with other keys, or removed from canon_internal.driver_index) not yet checked against the OPEN unmatched leads; pruned by canon.mark_retries_due once checked.';
COMMENT ON COLUMN canon_internal.driver_index_key_changes.plate_norm IS
  'The plate before the change, logged with name_norm when either changed (the tier pairs a near plate with a shared name token).';
COMMENT ON COLUMN canon_internal.driver_index_key_changes.name_norm IS
  'The normalised name before the change, logged with plate_norm when either changed: its rare keys and tokens made the driver a probabilistic candidate.';
