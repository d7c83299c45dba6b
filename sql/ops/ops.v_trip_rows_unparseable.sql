-- ops.v_trip_rows_unparseable: every public.summary_daily row that cannot count as trips
-- of a driver on a day, with the reason, so that no trip row is silently dropped (SPEC 3,
-- 11). Filter on driver_id to use the index; the whole view scans the table.
CREATE OR REPLACE VIEW ops.v_trip_rows_unparseable AS
SELECT sd.driver_id::text AS driver_id,
       sd.date_file::text AS date_file,
       sd.count_orders_completed,
       CASE
         WHEN sd.driver_id IS NULL OR btrim(sd.driver_id) = '' THEN 'MISSING_DRIVER_ID'
         WHEN sd.date_file IS NULL OR btrim(sd.date_file, E' \t\r\n') = '' THEN 'MISSING_DATE'
         WHEN btrim(sd.date_file, E' \t\r\n') ~ '^([0-9]{2}-[0-9]{2}-[0-9]{4}|[0-9]{4}-[0-9]{2}-[0-9]{2})$' THEN 'IMPOSSIBLE_DATE'
         ELSE 'UNKNOWN_DATE_FORMAT'
       END AS reason
FROM public.summary_daily sd
WHERE sd.driver_id IS NULL
   OR btrim(sd.driver_id) = ''
   OR canon.parse_date_file(sd.date_file) IS NULL;
COMMENT ON VIEW ops.v_trip_rows_unparseable IS
  'summary_daily rows that count for no driver and day: MISSING_DRIVER_ID, MISSING_DATE, UNKNOWN_DATE_FORMAT (not DD-MM-YYYY or YYYY-MM-DD), IMPOSSIBLE_DATE (e.g. 31-02-2026).';
