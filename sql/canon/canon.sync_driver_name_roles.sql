-- canon.sync_driver_name_roles: statement-level trigger function on canon_internal.driver_index
-- (INSERT, UPDATE, DELETE with transition tables new_rows / old_rows; TRUNCATE). Keeps
-- canon_internal.driver_name_roles one row per indexed driver, written in the same statement as the
-- index row: the tokens (canon.name_field_tokens) of the driver's given-name fields
-- (first and middle name) and of its last-name field, from the public.drivers row the
-- index was built from (its hash is the row's source_hash; the newest row when none has
-- it, e.g. changed since: the next run re-indexes it): the same choice as
-- canon.driver_name_roles_live, also between two rows of one driver_id and one timestamp.
-- Whatever writes the index (the run's incremental or full refresh, a repair, a test),
-- the roles follow it.
CREATE OR REPLACE FUNCTION canon.sync_driver_name_roles()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    TRUNCATE canon_internal.driver_name_roles;
    RETURN NULL;
  END IF;
  IF TG_OP = 'DELETE' THEN
    DELETE FROM canon_internal.driver_name_roles r USING old_rows o WHERE r.driver_id = o.driver_id;
    RETURN NULL;
  END IF;
  IF TG_OP = 'UPDATE' THEN
    -- (a driver_id changed in place: the old id is no longer indexed)
    DELETE FROM canon_internal.driver_name_roles r
    USING old_rows o
    WHERE r.driver_id = o.driver_id
      AND NOT EXISTS (SELECT 1 FROM new_rows n WHERE n.driver_id = o.driver_id);
  END IF;
  -- Set-based: one join of the written rows with their source rows, the planner's choice
  -- of probes (a run's few drivers) or one hash join (a full build).
  INSERT INTO canon_internal.driver_name_roles AS r (driver_id, given_names, surnames, indexed_at)
  SELECT s.driver_id,
         canon.name_field_tokens(concat_ws(' ', s.first_name, s.middle_name)),
         canon.name_field_tokens(s.last_name),
         s.indexed_at
  FROM (
    SELECT DISTINCT ON (n.driver_id) n.driver_id, n.indexed_at, d.first_name, d.middle_name, d.last_name
    FROM new_rows n
    LEFT JOIN public.drivers d ON d.driver_id = n.driver_id
    ORDER BY n.driver_id,
             -- the same hash as canon.refresh_driver_index (driver_index.source_hash)
             canon.driver_source_hash(d.park_id, d.phone, d.license_normalized_number, d.license_number,
                                d.car_normalized_number, d.car_number, d.full_name, d.first_name,
                                d.middle_name, d.last_name, d.hire_date) = n.source_hash DESC,
             coalesce(d.updated_at, d.created_at) DESC NULLS LAST
  ) s
  ORDER BY s.driver_id
  ON CONFLICT (driver_id) DO UPDATE
    SET given_names = excluded.given_names, surnames = excluded.surnames, indexed_at = excluded.indexed_at;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION canon.sync_driver_name_roles() IS
  'Statement trigger on canon_internal.driver_index: keeps canon_internal.driver_name_roles (given-name and last-name tokens of each indexed driver''s source row) equal to the index, row for row, in the same statement.';
