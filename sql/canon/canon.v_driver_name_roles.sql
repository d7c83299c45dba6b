-- canon.v_driver_name_roles: the live definition of canon.driver_name_roles: for every
-- driver of canon.driver_index, the tokens of the given-name fields and of the last-name
-- field of its newest public.drivers row (the row the index reads). source_indexed says
-- whether that row is still the one the index was built from (its source_hash, the hash
-- canon.refresh_driver_index stores): where it is not, the driver changed upstream since
-- the last run and index and roles alike follow at the next one. ops.check_invariants
-- compares the table with this view (DRIVER_NAME_ROLES) on a bounded set of drivers.
CREATE OR REPLACE VIEW canon.v_driver_name_roles AS
SELECT i.driver_id,
       canon.name_field_tokens(concat_ws(' ', s.first_name, s.middle_name)) AS given_names,
       canon.name_field_tokens(s.last_name) AS surnames,
       i.indexed_at,
       -- The same hash as canon.refresh_driver_index (driver_index.source_hash).
       md5(concat_ws(E'\x1f', s.park_id, s.phone, s.license_normalized_number, s.license_number,
                     s.car_normalized_number, s.car_number, s.full_name, s.first_name, s.middle_name,
                     s.last_name, s.hire_date::text)) IS NOT DISTINCT FROM i.source_hash AS source_indexed
FROM canon.driver_index i
LEFT JOIN LATERAL (
  SELECT d.*
  FROM public.drivers d
  WHERE d.driver_id = i.driver_id
  ORDER BY coalesce(d.updated_at, d.created_at) DESC NULLS LAST
  LIMIT 1
) s ON true;
COMMENT ON VIEW canon.v_driver_name_roles IS
  'Live definition of canon.driver_name_roles: per indexed driver, the tokens of first+middle name (given_names) and of last_name (surnames) of its newest public.drivers row; source_indexed: that row is the one the index holds (same source_hash).';
