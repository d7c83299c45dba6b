-- canon.driver_source_hash: the fingerprint of the source values a driver is indexed from
-- (canon_internal.driver_index.source_hash): a driver is re-normalised when it differs. The one
-- definition, used by canon.refresh_driver_index, the name roles (canon.sync_driver_name_roles,
-- canon.driver_name_roles_live) and the cache check canon.driver_index_drift. STABLE as
-- date::text is (DateStyle), so that it is inlined.
CREATE OR REPLACE FUNCTION canon.driver_source_hash(
  p_park_id text, p_phone text, p_license_normalized_number text, p_license_number text,
  p_car_normalized_number text, p_car_number text, p_full_name text, p_first_name text,
  p_middle_name text, p_last_name text, p_hire_date date)
RETURNS text
LANGUAGE sql
STABLE
PARALLEL SAFE
AS $$
  SELECT md5(concat_ws(E'\x1f', p_park_id, p_phone, p_license_normalized_number, p_license_number,
                       p_car_normalized_number, p_car_number, p_full_name, p_first_name, p_middle_name,
                       p_last_name, p_hire_date::text))
$$;
COMMENT ON FUNCTION canon.driver_source_hash(text, text, text, text, text, text, text, text, text, text, date) IS
  'md5 of the driver values its index row is computed from (canon_internal.driver_index.source_hash).';
