-- Internal marks: keys drivers lost (re-indexed with other keys, or removed), written by
-- canon.refresh_driver_index and consumed by canon.mark_retries_due, so an OPEN lead that shared
-- such a key is retried.
CREATE TABLE canon_internal.driver_index_key_changes (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  driver_id    text NOT NULL,
  change       text NOT NULL CHECK (change IN ('KEYS_CHANGED', 'REMOVED')),
  phone_norm   text,
  license_norm text,
  plate_norm   text,
  logged_at    timestamptz NOT NULL DEFAULT now(),
  run_id       bigint
);

CREATE INDEX driver_index_key_changes_logged_at_idx ON canon_internal.driver_index_key_changes (logged_at);

COMMENT ON TABLE canon_internal.driver_index_key_changes IS
  'Keys drivers lost (re-indexed with other keys, or removed from canon_internal.driver_index) not yet checked against the OPEN unmatched leads; pruned by canon.mark_retries_due once checked.';
