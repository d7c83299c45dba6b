-- Demo generator, step "trips_leads": summary_daily for the drivers of lead persons.
-- The person's own driver drives from hire_date until it churns with an activity level
-- (never / low / mid / high) that spreads leads over the 1, 5 and 25 trip milestones of
-- the 14-day window; shift partners, relatives and other-park twins drive over the whole window.
-- date_file is DD-MM-YYYY, or YYYY-MM-DD for ~20% of rows; ~3% of days come as two
-- partial rows that must be summed. Returns the counts the summary reports.
WITH src AS (
  SELECT pl.main_ord AS ord, pl.main_driver_id AS driver_id, pl.activity,
         pl.hire_date AS day_from, least(p.today, pl.hire_date + pl.churn_days) AS day_to
  FROM demo_plan pl
  CROSS JOIN demo_params p
  WHERE pl.main_ord IS NOT NULL AND pl.activity <> 'never'
  UNION ALL
  SELECT pl.second_ord, pl.second_driver_id, 'mid',
         greatest(pl.second_hire_date, p.today - p.trip_days + 1), p.today
  FROM demo_plan pl
  CROSS JOIN demo_params p
  -- (a person's old driver row, fired before the lead, drives no more)
  WHERE pl.second_ord IS NOT NULL AND pl.scenario <> 'DRIVER_REGISTERED_TWICE'
),
worked AS (
  -- One 64-bit hash per (driver, day) feeds four draws (demo.u16); OFFSET 0 keeps it
  -- computed once per row rather than once per reference.
  SELECT s.driver_id, d.day, demo.u16(d.h, 3) AS u3, demo.u16(d.h, 4) AS u4,
         CASE WHEN demo.u16(d.h, 4) >= 0.03 AND demo.u16(d.h, 4) < 0.07 THEN 0  -- connected, no trip
              WHEN s.activity = 'low' THEN 1 + (demo.u16(d.h, 2) < 0.15)::integer
              WHEN s.activity = 'mid' THEN 1 + floor(demo.u16(d.h, 2) * 3)::integer
              ELSE 2 + floor(demo.u16(d.h, 2) * 7)::integer END AS trips
  FROM src s
  CROSS JOIN demo_params p
  CROSS JOIN LATERAL generate_series(0, s.day_to - s.day_from) AS g(o)
  CROSS JOIN LATERAL (SELECT s.day_from + g.o AS day,
                             hashint8extended(s.ord * 100000 + (s.day_from + g.o - DATE '2000-01-01'), p.hash_seed) AS h
                      OFFSET 0) d
  WHERE demo.u16(d.h, 1) < CASE s.activity WHEN 'low' THEN 0.12 WHEN 'mid' THEN 0.5 ELSE 0.85 END
),
ins AS (
  INSERT INTO public.summary_daily (driver_id, date_file, count_orders_completed, sum_work_time_seconds, created_at)
  SELECT w.driver_id,
         -- The second partial row of a day may come in the other format.
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
