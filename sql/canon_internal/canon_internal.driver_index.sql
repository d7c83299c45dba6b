-- Internal cache: the normalised matching keys of every driver of public.drivers (step 4).
-- Written by canon.refresh_driver_index; read by the matcher. Checked by ops.check_caches
-- (DRIVER_INDEX_CURRENT) against canon.driver_source_hash of the live rows.
CREATE TABLE canon_internal.driver_index (
  driver_id         text PRIMARY KEY,
  park_id           text,
  phone_norm        text,
  license_norm      text,
  plate_norm        text,
  name_norm         text,
  hire_date         date,
  source_hash       text NOT NULL,
  source_changed_at timestamp,
  indexed_at        timestamptz NOT NULL DEFAULT now(),
  indexed_run_id    bigint
);

CREATE INDEX driver_index_indexed_at_idx ON canon_internal.driver_index (indexed_at);
CREATE INDEX driver_index_license_idx ON canon_internal.driver_index (license_norm)
  WHERE license_norm IS NOT NULL;
CREATE INDEX driver_index_phone_idx ON canon_internal.driver_index (phone_norm)
  WHERE phone_norm IS NOT NULL;
CREATE INDEX driver_index_plate_idx ON canon_internal.driver_index (plate_norm)
  WHERE plate_norm IS NOT NULL;
-- The probabilistic tier's blocks: plates one edit apart, names by phonetic key. Fast update
-- (a run's new drivers are appended to a pending list), merged by the tier before it probes
-- (canon.flush_driver_index_keys).
CREATE INDEX driver_index_plate_edit_keys_idx ON canon_internal.driver_index USING gin (canon.plate_edit_hashes(plate_norm))
  WHERE plate_norm IS NOT NULL;
CREATE INDEX driver_index_name_keys_idx ON canon_internal.driver_index USING gin (canon.name_phonetic_hashes(name_norm))
  WHERE name_norm IS NOT NULL;

CREATE TRIGGER driver_index_name_roles_delete
  AFTER DELETE ON canon_internal.driver_index REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.sync_driver_name_roles();
CREATE TRIGGER driver_index_name_roles_insert
  AFTER INSERT ON canon_internal.driver_index REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.sync_driver_name_roles();
CREATE TRIGGER driver_index_name_roles_truncate
  AFTER TRUNCATE ON canon_internal.driver_index
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.sync_driver_name_roles();
CREATE TRIGGER driver_index_name_roles_update
  AFTER UPDATE ON canon_internal.driver_index REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.sync_driver_name_roles();

COMMENT ON TABLE canon_internal.driver_index IS
  'Normalised matching keys of every driver of public.drivers, refreshed incrementally by each run (step 4).';
