-- The triggers that keep the name role caches equal to their sources, and their first fill.

DROP TRIGGER IF EXISTS driver_index_name_roles_insert ON canon.driver_index;
CREATE TRIGGER driver_index_name_roles_insert
  AFTER INSERT ON canon.driver_index
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION canon.sync_driver_name_roles();
DROP TRIGGER IF EXISTS driver_index_name_roles_update ON canon.driver_index;
CREATE TRIGGER driver_index_name_roles_update
  AFTER UPDATE ON canon.driver_index
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION canon.sync_driver_name_roles();
DROP TRIGGER IF EXISTS driver_index_name_roles_delete ON canon.driver_index;
CREATE TRIGGER driver_index_name_roles_delete
  AFTER DELETE ON canon.driver_index
  REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION canon.sync_driver_name_roles();
DROP TRIGGER IF EXISTS driver_index_name_roles_truncate ON canon.driver_index;
CREATE TRIGGER driver_index_name_roles_truncate
  AFTER TRUNCATE ON canon.driver_index
  FOR EACH STATEMENT EXECUTE FUNCTION canon.sync_driver_name_roles();

DROP TRIGGER IF EXISTS driver_name_roles_count_insert ON canon.driver_name_roles;
CREATE TRIGGER driver_name_roles_count_insert
  AFTER INSERT ON canon.driver_name_roles
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION canon.count_name_token_changes();
DROP TRIGGER IF EXISTS driver_name_roles_count_update ON canon.driver_name_roles;
CREATE TRIGGER driver_name_roles_count_update
  AFTER UPDATE ON canon.driver_name_roles
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION canon.count_name_token_changes();
DROP TRIGGER IF EXISTS driver_name_roles_count_delete ON canon.driver_name_roles;
CREATE TRIGGER driver_name_roles_count_delete
  AFTER DELETE ON canon.driver_name_roles
  REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION canon.count_name_token_changes();
DROP TRIGGER IF EXISTS driver_name_roles_count_truncate ON canon.driver_name_roles;
CREATE TRIGGER driver_name_roles_count_truncate
  AFTER TRUNCATE ON canon.driver_name_roles
  FOR EACH STATEMENT EXECUTE FUNCTION canon.count_name_token_changes();

-- First fill from what is indexed (one pass over the index; the triggers count the stats).
INSERT INTO canon.driver_name_roles (driver_id, given_names, surnames, indexed_at)
SELECT v.driver_id, v.given_names, v.surnames, v.indexed_at
FROM canon.v_driver_name_roles v
ON CONFLICT (driver_id) DO NOTHING;
