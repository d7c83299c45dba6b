-- canon.v_driver_daily_trips: completed trips per driver and day from public.summary_daily,
-- several rows of one driver and day summed, both date formats parsed. For people and
-- reports: the claim windows sum the same rows directly through the index (same result).
-- Rows without a driver or a parseable day are not here: see ops.v_trip_rows_unparseable.
CREATE OR REPLACE VIEW canon.v_driver_daily_trips AS
SELECT sd.driver_id::text AS driver_id,
       canon.parse_date_file(sd.date_file) AS trip_date,
       coalesce(sum(sd.count_orders_completed), 0)::bigint AS trips,
       count(*)::integer AS source_rows
FROM public.summary_daily sd
WHERE sd.driver_id IS NOT NULL
  AND canon.parse_date_file(sd.date_file) IS NOT NULL
GROUP BY sd.driver_id, canon.parse_date_file(sd.date_file);
COMMENT ON VIEW canon.v_driver_daily_trips IS
  'Completed trips per driver and day (summary_daily rows summed, DD-MM-YYYY and YYYY-MM-DD parsed). Filter on driver_id.';
