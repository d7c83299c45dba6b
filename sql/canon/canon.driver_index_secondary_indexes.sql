-- canon.driver_index_secondary_indexes: the indexes of canon_internal.driver_index besides its
-- primary key, each with the statement that creates it, as
-- sql/canon_internal/canon_internal.driver_index.sql creates it (a test holds the two equal).
-- The first build of the index fills the empty table without them and creates them after the
-- rows (canon.suspend_driver_index_indexes, canon.restore_driver_index_indexes): a sort per
-- index instead of a million random inserts into each, and the GIN indexes' keys merged once.
CREATE OR REPLACE FUNCTION canon.driver_index_secondary_indexes()
RETURNS TABLE (index_name text, definition text)
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
  VALUES
    ('driver_index_indexed_at_idx',
     'CREATE INDEX driver_index_indexed_at_idx ON canon_internal.driver_index (indexed_at)'),
    ('driver_index_license_idx',
     'CREATE INDEX driver_index_license_idx ON canon_internal.driver_index (license_norm) WHERE license_norm IS NOT NULL'),
    ('driver_index_phone_idx',
     'CREATE INDEX driver_index_phone_idx ON canon_internal.driver_index (phone_norm) WHERE phone_norm IS NOT NULL'),
    ('driver_index_plate_idx',
     'CREATE INDEX driver_index_plate_idx ON canon_internal.driver_index (plate_norm) WHERE plate_norm IS NOT NULL'),
    ('driver_index_plate_edit_keys_idx',
     'CREATE INDEX driver_index_plate_edit_keys_idx ON canon_internal.driver_index USING gin (canon.plate_edit_hashes(plate_norm)) WHERE plate_norm IS NOT NULL'),
    ('driver_index_name_keys_idx',
     'CREATE INDEX driver_index_name_keys_idx ON canon_internal.driver_index USING gin (canon.name_phonetic_hashes(name_norm)) WHERE name_norm IS NOT NULL')
$$;
COMMENT ON FUNCTION canon.driver_index_secondary_indexes() IS
  'The indexes of canon_internal.driver_index besides its primary key, with the statements that create them: dropped for the first build of an empty index and created after its rows.';
