-- ops.v_drivers_odd_timestamps: driver rows whose timestamps say nothing reliable about
-- when they changed: FUTURE_TIMESTAMP (created_at or updated_at more than a day after now
-- in the business time zone, e.g. 2099-01-01) and NO_TIMESTAMP (both NULL). The driver
-- index reads rows by commit order, not by these columns, so such rows are indexed like
-- any other; they are listed (and counted in each run's driver_index stats) because
-- upstream should fix them.
CREATE OR REPLACE VIEW ops.v_drivers_odd_timestamps AS
SELECT d.driver_id::text AS driver_id,
       d.park_id::text AS park_id,
       d.created_at,
       d.updated_at,
       CASE WHEN d.updated_at IS NULL AND d.created_at IS NULL THEN 'NO_TIMESTAMP' ELSE 'FUTURE_TIMESTAMP' END AS why
FROM public.drivers d
WHERE (d.updated_at IS NULL AND d.created_at IS NULL)
   OR d.updated_at > (now() AT TIME ZONE canon.setting('business_timezone')) + interval '1 day'
   OR d.created_at > (now() AT TIME ZONE canon.setting('business_timezone')) + interval '1 day';
COMMENT ON VIEW ops.v_drivers_odd_timestamps IS
  'Driver rows with a timestamp more than a day in the future (FUTURE_TIMESTAMP) or none at all (NO_TIMESTAMP): indexed all the same (by commit order), listed for upstream to fix.';
