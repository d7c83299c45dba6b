-- canon.driver_index_drift: drivers (the newest row of each valid driver_id) not indexed
-- in canon_internal.driver_index, or indexed with other source values (hash); drivers written since
-- the last read are the next run's work. (Index rows of deleted drivers wait for the next
-- full refresh by design: the matcher checks that a candidate still exists.) Read by
-- ops.check_caches, repaired by ops.repair_caches.
CREATE OR REPLACE FUNCTION canon.driver_index_drift()
RETURNS TABLE (driver_id text, example text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
  WITH seen AS (
    SELECT canon.xmin_age_limit(s.seen_xmin) AS age_limit
    FROM canon_internal.source_scan_state s WHERE s.source_table = 'drivers'
  ),
  drivers AS (
    SELECT DISTINCT ON (d.driver_id)
           d.driver_id::text AS driver_id,
           canon.driver_source_hash(d.park_id, d.phone, d.license_normalized_number, d.license_number,
                                d.car_normalized_number, d.car_number, d.full_name, d.first_name,
                                d.middle_name, d.last_name, d.hire_date) AS source_hash
    FROM public.drivers d
    WHERE nullif(btrim(d.driver_id), '') IS NOT NULL AND length(d.driver_id) <= 200
    ORDER BY d.driver_id, coalesce(d.updated_at, d.created_at) DESC NULLS LAST
  )
  SELECT d.driver_id,
         format('driver %s: %s', d.driver_id,
                CASE WHEN i.driver_id IS NULL THEN 'not indexed' ELSE 'indexed with values that are not the driver''s' END)
  FROM drivers d
  LEFT JOIN canon_internal.driver_index i ON i.driver_id = d.driver_id
  CROSS JOIN seen se
  WHERE (i.driver_id IS NULL OR i.source_hash <> d.source_hash)
    AND se.age_limit IS NOT NULL
    AND NOT EXISTS (SELECT 1 FROM public.drivers w WHERE w.driver_id = d.driver_id AND age(w.xmin) <= se.age_limit)
$$;
COMMENT ON FUNCTION canon.driver_index_drift() IS
  'Drivers not indexed, or indexed with other source values than their newest row; drivers written since the last read excepted.';
