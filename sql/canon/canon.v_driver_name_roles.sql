-- canon.v_driver_name_roles: the live definition of canon_internal.driver_name_roles, every
-- indexed driver (canon.driver_name_roles_live(NULL): tokenises every driver's fields, a
-- full pass; the checks call the function with the drivers they sample).
CREATE OR REPLACE VIEW canon.v_driver_name_roles AS
SELECT l.driver_id, l.given_names, l.surnames, l.indexed_at, l.source_indexed
FROM canon.driver_name_roles_live(NULL) l;
COMMENT ON VIEW canon.v_driver_name_roles IS
  'Live definition of canon_internal.driver_name_roles: per indexed driver, the tokens of first+middle name (given_names) and of last_name (surnames) of the public.drivers row the index holds; source_indexed: that row still exists. A full pass.';
