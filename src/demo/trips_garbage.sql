-- Demo generator, step "trips_garbage": trip rows whose date cannot be parsed (an
-- impossible day, a wrong layout, empty, NULL), one of each kind at least, attached to
-- drivers of this batch. The product must count and report them, never drop them.
-- $1 = number of rows.
INSERT INTO public.summary_daily (driver_id, date_file, count_orders_completed, sum_work_time_seconds, created_at)
SELECT md5(p.pfx || ':driver:' || (1 + demo.ri(x.h, 1, p.n_drivers))),
       CASE g.n % 4
         WHEN 0 THEN '31-02-' || to_char(p.today, 'YYYY')
         WHEN 1 THEN to_char(p.today, 'YYYY') || '/13/45'
         WHEN 2 THEN ''
         ELSE NULL END,
       1 + demo.ri(x.h, 2, 5),
       1800 + demo.ri(x.h, 3, 7200),
       p.today::timestamp
FROM demo_params p
CROSS JOIN generate_series(0, $1::integer - 1) AS g(n)
CROSS JOIN LATERAL (SELECT md5(p.pfx || ':garbage:' || g.n) AS h) x
WHERE p.n_drivers > 0;
