-- canon.driver_name_roles_live: the live definition of canon_internal.driver_name_roles, for the
-- given indexed drivers (NULL: all): the tokens of the given-name fields and of the
-- last-name field of the public.drivers row the index was built from (the row whose hash
-- is driver_index.source_hash, as canon.refresh_driver_index computes it; else, changed
-- upstream since the last run, the newest row). source_indexed: that row still exists, so
-- the roles must equal it. A function, not a view over public.drivers: a view would pin
-- the upstream table's columns (upstream could no longer drop or alter one); the view
-- canon.v_driver_name_roles reads it whole. Called by ops.check_invariants on a sample
-- and by ops.repair_name_roles on every driver.
CREATE OR REPLACE FUNCTION canon.driver_name_roles_live(p_driver_ids text[] DEFAULT NULL)
RETURNS TABLE (driver_id text, given_names text[], surnames text[], indexed_at timestamptz, source_indexed boolean)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT i.driver_id,
         canon.name_field_tokens(concat_ws(' ', s.first_name, s.middle_name)),
         canon.name_field_tokens(s.last_name),
         i.indexed_at,
         coalesce(s.is_indexed, false)
  -- Every driver, or the given ones probed by key (an = ANY over the whole index would
  -- compare each row with the whole list).
  FROM (SELECT x.driver_id, x.indexed_at, x.source_hash FROM canon_internal.driver_index x WHERE p_driver_ids IS NULL
        UNION ALL
        SELECT x.driver_id, x.indexed_at, x.source_hash
        FROM (SELECT DISTINCT u.id FROM unnest(p_driver_ids) u (id)) u
        JOIN canon_internal.driver_index x ON x.driver_id = u.id) i
  LEFT JOIN LATERAL (
    SELECT d.first_name, d.middle_name, d.last_name, x.is_indexed
    FROM public.drivers d
    -- The same hash as canon.refresh_driver_index (driver_index.source_hash).
    CROSS JOIN LATERAL (
      SELECT canon.driver_source_hash(d.park_id, d.phone, d.license_normalized_number, d.license_number,
                                d.car_normalized_number, d.car_number, d.full_name, d.first_name,
                                d.middle_name, d.last_name, d.hire_date) = i.source_hash AS is_indexed) x
    WHERE d.driver_id = i.driver_id
    ORDER BY x.is_indexed DESC, coalesce(d.updated_at, d.created_at) DESC NULLS LAST
    LIMIT 1
  ) s ON true
$$;
COMMENT ON FUNCTION canon.driver_name_roles_live(text[]) IS
  'Live definition of canon_internal.driver_name_roles for the given indexed drivers (NULL: all): field tokens of the public.drivers row the index holds (same source_hash), else of the newest; source_indexed says that row still exists.';
