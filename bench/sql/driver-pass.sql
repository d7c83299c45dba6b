-- The driver index step's pass over every driver row (canon.refresh_driver_index), three
-- shapes over 1M generated rows shaped like public.drivers, 7 rounds each, interleaved:
-- the floor (count(*)), the pass of an idle run (count and the ids with a row version not
-- seen yet: no column read but the id) and the pass that also counts odd timestamps
-- (updated_at and created_at end every row, so every row is taken apart). On any
-- database (writes nothing: temporary table and function); run `uptime` beside it:
--   psql "$DATABASE_URL" -f bench/sql/driver-pass.sql
-- Prints the median ms of each and its ratio to the floor. docs/performance.md has the figures.
\set QUIET on
-- public.drivers' columns in its order (the timestamps last)
CREATE TEMP TABLE drivers (id bigint, driver_id varchar NOT NULL, park_id varchar, first_name varchar, middle_name varchar,
  last_name varchar, full_name varchar, phone varchar, license_number varchar, license_normalized_number varchar,
  car_number varchar, car_normalized_number varchar, car_brand varchar, car_model varchar, hire_date date, fire_date date,
  work_status varchar, created_at timestamp, updated_at timestamp);
INSERT INTO pg_temp.drivers (id, driver_id, park_id, first_name, last_name, full_name, phone, license_number,
                             car_number, car_brand, car_model, hire_date, work_status, created_at, updated_at)
SELECT g, md5(g::text), '08e20910d81d42658d4334d3f6d10ac0', 'JUAN' || g % 1000, 'PEREZ QUISPE' || g % 5000,
       'JUAN PEREZ QUISPE ' || g, '9' || (10000000 + g), 'Q' || g, 'ABC' || g % 999, 'TOYOTA', 'YARIS',
       date '2024-01-01' + g % 600, 'working', now() - interval '1 day' * (g % 900), now() - interval '1 hour' * (g % 900)
FROM generate_series(1, 1000000) g;
VACUUM FREEZE ANALYZE pg_temp.drivers;
CREATE FUNCTION pg_temp.pass(p_shape text, p_future timestamp) RETURNS numeric LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz; n bigint; f bigint; u bigint; ids text[];
BEGIN
  t0 := clock_timestamp();
  IF p_shape = 'floor' THEN
    SELECT count(*) INTO n FROM pg_temp.drivers d;
  ELSIF p_shape = 'idle' THEN
    SELECT count(*), coalesce(array_agg(d.driver_id) FILTER (WHERE age(d.xmin) <= 0), '{}')
    INTO n, ids FROM pg_temp.drivers d;
  ELSE
    SELECT count(*), count(*) FILTER (WHERE d.updated_at > p_future OR d.created_at > p_future),
           count(*) FILTER (WHERE d.updated_at IS NULL AND d.created_at IS NULL),
           coalesce(array_agg(d.driver_id) FILTER (WHERE age(d.xmin) <= 0), '{}')
    INTO n, f, u, ids FROM pg_temp.drivers d;
  END IF;
  RETURN round(extract(epoch FROM clock_timestamp() - t0) * 1000, 1);
END $$;
SET max_parallel_workers_per_gather = 0;
SET jit = off;
\set QUIET off
WITH t AS (
  SELECT s.shape, pg_temp.pass(s.shape, now()::timestamp + interval '1 day') AS ms
  FROM generate_series(1, 7) r, unnest(ARRAY['floor', 'idle', 'with timestamps']) WITH ORDINALITY s(shape, o)
),
m AS (SELECT shape, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS median_ms FROM t GROUP BY shape)
SELECT shape, median_ms, round((median_ms / (SELECT median_ms FROM m WHERE shape = 'floor'))::numeric, 2) AS x_floor
FROM m ORDER BY median_ms;
