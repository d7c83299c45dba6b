-- Internal cache, one row per canon_internal.driver_index row: the tokens of the driver's given names and
-- surnames (canon.name_field_tokens), written with the index row by the trigger
-- canon.sync_driver_name_roles. Live definition: canon.driver_name_roles_live.
CREATE TABLE canon_internal.driver_name_roles (
  driver_id   text PRIMARY KEY,
  given_names text[],
  surnames    text[],
  indexed_at  timestamptz NOT NULL
);

CREATE TRIGGER driver_name_roles_count_delete
  AFTER DELETE ON canon_internal.driver_name_roles REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.count_name_token_changes();
CREATE TRIGGER driver_name_roles_count_insert
  AFTER INSERT ON canon_internal.driver_name_roles REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.count_name_token_changes();
CREATE TRIGGER driver_name_roles_count_truncate
  AFTER TRUNCATE ON canon_internal.driver_name_roles
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.count_name_token_changes();
CREATE TRIGGER driver_name_roles_count_update
  AFTER UPDATE ON canon_internal.driver_name_roles REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.count_name_token_changes();

COMMENT ON TABLE canon_internal.driver_name_roles IS
  'Cache, one row per canon_internal.driver_index row, written with it by the trigger canon.sync_driver_name_roles: tokens (canon.name_field_tokens) of the driver''s first and middle name (given_names) and of its last name (surnames) from the public.drivers row the index was built from, else the newest (NULL: no such field, e.g. only full_name). Live definition: canon.v_driver_name_roles.';
COMMENT ON COLUMN canon_internal.driver_name_roles.indexed_at IS
  'canon_internal.driver_index.indexed_at of the index row it was written with (equal by construction).';
