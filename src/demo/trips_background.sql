-- Demo generator, step "trips_background": summary_daily for the background drivers of
-- this batch. Only ~20% of them are active and an active driver works about every other
-- day, so the volume stays near trip_days x active drivers x 0.5 whatever --drivers is.
-- Reads the rows just inserted into public.drivers (their hire and fire dates).
WITH active AS (
  SELECT d.driver_id, d.id - p.driver_base AS ord, d.hire_date, d.fire_date
  FROM public.drivers d
  CROSS JOIN demo_params p
  WHERE d.id > p.driver_base + p.lead_drivers
    AND d.id <= p.driver_base + p.n_drivers
    AND demo.u(md5(p.pfx || ':bgactive:' || (d.id - p.driver_base)), 1) < 0.2
),
worked AS (
  -- One 64-bit hash per (driver, day), as in trips_leads.sql (ordinals never overlap).
  SELECT a.driver_id, dd.day, demo.u16(dd.h, 3) AS u3, demo.u16(dd.h, 4) AS u4,
         1 + floor(demo.u16(dd.h, 2) * 12)::integer AS trips
  FROM active a
  CROSS JOIN demo_params p
  CROSS JOIN LATERAL generate_series(0, p.trip_days - 1) AS g(b)
  CROSS JOIN LATERAL (SELECT p.today - g.b AS day,
                             hashint8extended(a.ord * 100000 + (p.today - g.b - DATE '2000-01-01'), p.hash_seed) AS h
                      OFFSET 0) dd
  WHERE dd.day >= a.hire_date
    AND (a.fire_date IS NULL OR dd.day <= a.fire_date)
    AND demo.u16(dd.h, 1) < 0.5
),
ins AS (
  INSERT INTO public.summary_daily (driver_id, date_file, count_orders_completed, sum_work_time_seconds, created_at)
  SELECT w.driver_id,
         demo.date_file(w.day, CASE WHEN x.part = 1 THEN w.u3 < 0.2 ELSE w.u3 < 0.1 OR w.u3 >= 0.9 END),
         x.trips,
         x.trips * 1500 + 600 + floor(w.u3 * 3600),
         greatest(w.day::timestamp, least(w.day + interval '1 day 2 hours', p.today::timestamp))
  FROM worked w
  CROSS JOIN demo_params p
  CROSS JOIN LATERAL (
    SELECT 1 AS part, CASE WHEN w.u4 < 0.03 THEN w.trips - w.trips / 2 ELSE w.trips END AS trips
    UNION ALL
    SELECT 2, w.trips / 2 WHERE w.u4 < 0.03
  ) x
  RETURNING date_file
)
SELECT count(*)::integer AS rows,
       (count(*) FILTER (WHERE date_file ~ '^\d{4}-\d{2}-\d{2}$'))::integer AS ymd_rows
FROM ins;
