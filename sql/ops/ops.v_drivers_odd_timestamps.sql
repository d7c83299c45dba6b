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
       o.why
FROM public.drivers d
CROSS JOIN LATERAL (SELECT canon.driver_timestamp_oddity(d.updated_at, d.created_at,
                                                         (now() AT TIME ZONE canon.setting('business_timezone')) + interval '1 day') AS why) o
WHERE o.why IS NOT NULL;
COMMENT ON VIEW ops.v_drivers_odd_timestamps IS
  'Driver rows with a timestamp more than a day in the future (FUTURE_TIMESTAMP) or none at all (NO_TIMESTAMP): indexed all the same (by commit order), listed for upstream to fix.';
