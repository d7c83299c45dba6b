-- ops.v_shared_keys: key values used by several people, with their frequency: phones on
-- leads under different names (an office phone: never evidence for R1), phones on
-- several drivers, and plates on several drivers (shift drivers: R3 lets the name decide).
CREATE OR REPLACE VIEW ops.v_shared_keys AS
WITH lead_phones AS (
  SELECT k.phone_norm AS key_value, count(*) AS leads, count(DISTINCT k.name_norm) AS lead_names
  FROM canon_internal.lead_keys k
  WHERE k.phone_norm IS NOT NULL
  GROUP BY k.phone_norm
  HAVING count(DISTINCT k.name_norm) > 1
),
driver_phones AS (
  SELECT i.phone_norm AS key_value, count(*) AS drivers, count(DISTINCT i.name_norm) AS driver_names
  FROM canon_internal.driver_index i
  WHERE i.phone_norm IS NOT NULL
  GROUP BY i.phone_norm
  HAVING count(*) > 1
),
driver_plates AS (
  SELECT i.plate_norm AS key_value, count(*) AS drivers, count(DISTINCT i.name_norm) AS driver_names
  FROM canon_internal.driver_index i
  WHERE i.plate_norm IS NOT NULL
  GROUP BY i.plate_norm
  HAVING count(*) > 1
)
SELECT 'PHONE'::text AS key_type,
       coalesce(lp.key_value, dp.key_value) AS key_value,
       coalesce(lp.leads, 0) AS leads,
       coalesce(lp.lead_names, 0) AS lead_distinct_names,
       coalesce(dp.drivers, 0) AS drivers,
       coalesce(dp.driver_names, 0) AS driver_distinct_names
FROM lead_phones lp
FULL JOIN driver_phones dp ON dp.key_value = lp.key_value
UNION ALL
SELECT 'PLATE', pl.key_value, 0, 0, pl.drivers, pl.driver_names
FROM driver_plates pl;
COMMENT ON VIEW ops.v_shared_keys IS 'Phones and plates used by several people (leads under different names, several drivers), with their frequency.';
