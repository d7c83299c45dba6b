-- Upstream source table (SPEC 3): trips per driver and day (date_file is text in two
-- formats). Owned upstream: created here only when absent (demo and test databases), never
-- altered; canon.check_source_contract verifies the columns the product reads. Read by
-- canon.trip_drivers_changed and the lead state.
DO $$
BEGIN
  IF to_regclass('public.summary_daily') IS NULL THEN
    CREATE TABLE public.summary_daily (
      driver_id              varchar,
      date_file              varchar,
      count_orders_completed integer,
      sum_work_time_seconds  numeric,
      created_at             timestamp without time zone DEFAULT now()
    );
    CREATE INDEX summary_daily_driver_id_idx ON public.summary_daily (driver_id);
  END IF;
END
$$;

-- The one object the product adds to an upstream table (SPEC 3 otherwise forbids touching
-- them): trips are looked up per driver and day range [lead_date, lead_date + window_days)
-- on a text date_file with two formats; without an index on the parsed day every lead's
-- window scans the driver's whole history. Rows whose date_file cannot be parsed are
-- indexed under a NULL day, so counting them per driver uses the index too. IF NOT EXISTS:
-- a DBA may build it beforehand without blocking the upstream loader (docs/operations.md):
--   CREATE INDEX CONCURRENTLY summary_daily_driver_trip_date_idx
--     ON public.summary_daily (driver_id, canon.parse_date_file(date_file));
-- Built by the migration, it blocks writes to summary_daily while it builds (10 s for 3M
-- rows, 130 s for 30M on a busy 2-core server; 526 MB for 30M rows). Any change to
-- canon.parse_date_file must REINDEX it.
CREATE INDEX IF NOT EXISTS summary_daily_driver_trip_date_idx
  ON public.summary_daily (driver_id, canon.parse_date_file(date_file));
COMMENT ON INDEX public.summary_daily_driver_trip_date_idx IS
  'Added by cabinet-leads: trips per driver and parsed day for the 14-day claim windows. The only product object on an upstream table.';
