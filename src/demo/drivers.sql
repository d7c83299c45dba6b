-- Demo generator, step "drivers": the driver master of this batch in one statement.
-- Ordinals 1..lead_drivers are the drivers of lead persons (from demo_plan: the main
-- driver, a shift partner sharing the plate, or the same person in another park); the
-- rest, up to --drivers, is the background population no lead points to. All of them
-- go through the same rendering, so lead drivers cannot be told apart by their format.
-- Timestamps derive from hire_date (deterministic), except updated_at of a batch appended
-- to a non-empty table, which is the time of the call.
INSERT INTO public.drivers (
  id, driver_id, park_id, first_name, middle_name, last_name, full_name, phone,
  license_number, license_normalized_number, car_number, car_normalized_number, car_brand, car_model,
  hire_date, fire_date, work_status, created_at, updated_at)
SELECT src.id,
       src.driver_id,
       src.park_id,
       demo.driver_case(src.first, r.strip),
       demo.driver_case(src.middle, r.strip),
       demo.driver_case(r.surnames, r.strip),
       -- Some parks fill full_name, in either order (surnames first is common in Peru).
       CASE WHEN demo.u(r.h, 2) < 0.3 THEN demo.driver_case(
              CASE WHEN demo.u(r.h, 3) < 0.5 THEN concat_ws(' ', r.surnames, src.first, src.middle)
                   ELSE concat_ws(' ', src.first, src.middle, r.surnames) END, r.strip) END,
       -- Stored with the country code mostly, as the bare national number sometimes.
       CASE WHEN src.p9 IS NULL THEN NULL
            WHEN src.phone_may_vary AND demo.u(r.h, 4) < 0.07 THEN NULL
            WHEN src.phone_may_vary AND demo.u(r.h, 4) < 0.20 THEN src.p9
            WHEN NOT src.phone_may_vary AND demo.u(r.h, 4) < 0.15 THEN src.p9
            ELSE '51' || src.p9 END,
       CASE WHEN demo.u(r.g, 1) < 0.2 THEN left(src.license, 1) || '-' || substr(src.license, 2) ELSE src.license END,
       CASE WHEN demo.u(r.g, 2) < 0.9 THEN src.license END,
       CASE WHEN demo.u(r.g, 3) < 0.7 THEN src.plate ELSE left(src.plate, 3) || '-' || right(src.plate, 3) END,
       CASE WHEN demo.u(r.g, 4) < 0.85 THEN src.plate END,
       split_part(src.car, '|', 1),
       split_part(src.car, '|', 2),
       src.hire_date,
       src.fire_date,
       CASE WHEN src.fire_date IS NOT NULL THEN 'fired'
            WHEN demo.u(r.e, 2) < 0.1 THEN 'not_working'
            ELSE 'working' END,
       r.created_at,
       -- A third of the drivers were edited after creation, always before today. Rows
       -- appended to a non-empty table arrive now: a consumer that follows an updated_at
       -- watermark (the product's driver index) must see them.
       CASE WHEN p.driver_base > 0 THEN p.now_local
            WHEN demo.u(r.e, 3) < 0.3 AND r.created_at < p.today
            THEN least(r.created_at + (1 + demo.ri(r.e, 4, 60)) * interval '1 day', p.today::timestamp)
            ELSE r.created_at END
FROM (
  -- The driver each lead person became (target park, or another park for OTHER_PARK_ONLY).
  SELECT pl.main_ord AS ord, pl.main_id AS id, pl.main_driver_id AS driver_id, pl.main_park AS park_id,
         pl.first_name AS first, pl.middle_name AS middle,
         -- Some parks drop the particle (DE LA CRUZ -> CRUZ); the name rule must not care.
         CASE WHEN pl.scenario = 'PLATE_PARTICLE_SURNAME' AND demo.u(md5(p.pfx || ':particle:' || pl.i), 1) < 0.5
              THEN regexp_replace(pl.sur1, '^(de la|de los|de las|del|de) ', '', 'i') ELSE pl.sur1 END AS sur1,
         pl.sur2, pl.phone9 AS p9, false AS phone_may_vary,
         pl.plate, pl.license, pl.car, pl.hire_date, NULL::date AS fire_date
  FROM demo_plan pl
  CROSS JOIN demo_params p
  WHERE pl.main_ord IS NOT NULL
  UNION ALL
  -- The second driver of a person: a shift partner (another person, same car and plate),
  -- a relative (same surnames, another given name, own phone, car and licence), or the same
  -- person again: in another park, or registered twice in the target park (same phone,
  -- same licence, other car; the older row was fired before the lead).
  SELECT pl.second_ord, pl.second_id, pl.second_driver_id, pl.second_park,
         CASE WHEN shift OR relative THEN pl.partner_first ELSE pl.first_name END,
         CASE WHEN shift OR relative THEN pl.partner_middle ELSE pl.middle_name END,
         CASE WHEN shift THEN pl.partner_sur1 ELSE pl.sur1 END,
         CASE WHEN shift THEN pl.partner_sur2 ELSE pl.sur2 END,
         CASE WHEN shift OR relative THEN demo.phone9(pl.second_id, p.phone_mult, p.phone_shift) ELSE pl.phone9 END,
         false,
         CASE WHEN shift THEN pl.plate ELSE demo.plate(pl.second_id, p.plate_mult, p.plate_shift) END,
         CASE WHEN shift OR relative THEN demo.license(pl.second_id, p.license_mult, p.license_shift) ELSE pl.license END,
         CASE WHEN shift THEN pl.car ELSE demo.pick(demo.car_models(), md5(p.pfx || ':car2:' || pl.i), 1) END,
         pl.second_hire_date,
         CASE WHEN pl.scenario = 'DRIVER_REGISTERED_TWICE' THEN pl.lead_date - 10 END
  FROM demo_plan pl
  CROSS JOIN demo_params p
  CROSS JOIN LATERAL (SELECT pl.scenario = 'SHIFT_SHARED_PLATE' AS shift, pl.scenario = 'PHONE_OF_RELATIVE' AS relative) k
  WHERE pl.second_ord IS NOT NULL
  UNION ALL
  -- Background population: random Peruvian names, phones, plates and hire dates over
  -- three years; some pairs share a car (shift drivers) and the first one is the
  -- target park's manager, registered with the office phone that many leads carry.
  SELECT b.ord, p.driver_base + b.ord, md5(p.pfx || ':driver:' || b.ord),
         CASE WHEN b.ord = p.lead_drivers + 1 OR demo.u(b.hk, 1) < p.bg_target_share THEN p.target_park
              ELSE demo.pick(p.other_parks, b.hk, 2) END,
         (demo.given_names(b.male))[1 + b.fi],
         CASE WHEN demo.u(b.hx, 2) < 0.5
              THEN (demo.given_names(b.male))[1 + (b.fi + 1 + demo.ri(b.hx, 3, b.nf - 1)) % b.nf] END,
         demo.pick(demo.surnames(), b.hy, 1),
         CASE WHEN demo.u(b.hy, 2) < 0.9 THEN demo.pick(demo.plain_surnames(), b.hy, 3) END,
         CASE WHEN b.ord = p.lead_drivers + 1 THEN demo.phone9(99999991, p.phone_mult, p.phone_shift)
              ELSE demo.phone9(p.driver_base + b.ord, p.phone_mult, p.phone_shift) END,
         b.ord <> p.lead_drivers + 1,
         demo.plate(p.driver_base + b.car_ord, p.plate_mult, p.plate_shift),
         demo.license(p.driver_base + b.ord, p.license_mult, p.license_shift),
         demo.pick(demo.car_models(), b.hk, 3),
         b.hire_date,
         CASE WHEN demo.u(b.hz, 1) < 0.08 THEN least(b.hire_date + 30 + demo.ri(b.hz, 2, 400), p.today) END
  FROM demo_params p
  CROSS JOIN LATERAL (
    SELECT o.ord, x.hx, x.hy, x.hz, x.male, x.nf, demo.ri(x.hx, 1, x.nf) AS fi, x.car_ord, x.hire_date,
           md5(p.pfx || ':bgcar:' || x.car_ord) AS hk
    FROM generate_series(p.lead_drivers + 1, p.n_drivers) AS o(ord)
    CROSS JOIN LATERAL (
      SELECT h.hx, h.hy, h.hz,
             demo.u(h.hz, 4) < 0.8 AS male,
             cardinality(demo.given_names(demo.u(h.hz, 4) < 0.8)) AS nf,
             -- Even ordinals pair with the previous driver 16% of the time: same car.
             CASE WHEN o.ord % 2 = 0 AND o.ord - 1 > p.lead_drivers + 1 AND demo.u(h.hz, 3) < 0.16
                  THEN o.ord - 1 ELSE o.ord END AS car_ord,
             p.today - demo.ri(h.hy, 4, 1095) AS hire_date
      FROM (SELECT md5(p.pfx || ':bgdriver:' || o.ord) AS hx,
                   md5(p.pfx || ':bgdriver:' || o.ord || ':b') AS hy,
                   md5(p.pfx || ':bgdriver:' || o.ord || ':c') AS hz OFFSET 0) h
    ) x
    OFFSET 0
  ) b
) AS src (ord, id, driver_id, park_id, first, middle, sur1, sur2, p9, phone_may_vary,
          plate, license, car, hire_date, fire_date)
CROSS JOIN demo_params p
CROSS JOIN LATERAL (
  SELECT md5(p.pfx || ':render-driver:' || src.ord) AS h,
         md5(p.pfx || ':render-driver:' || src.ord || ':b') AS g,
         md5(p.pfx || ':render-driver:' || src.ord || ':c') AS e
  -- OFFSET 0: a fence, so each md5 is computed once per row, not once per reference.
  OFFSET 0
) hh
CROSS JOIN LATERAL (
  SELECT hh.h, hh.g, hh.e,
         concat_ws(' ', src.sur1, src.sur2) AS surnames,
         demo.u(hh.h, 1) < 0.3 AS strip,
         -- Drivers hired today were created in the small hours, never in the future (not
         -- after the call's time either, when it runs in the small hours).
         src.hire_date + CASE WHEN src.hire_date >= p.today
                              THEN floor(demo.u(hh.e, 1) * least(21600, extract(epoch FROM p.now_local - p.today::timestamp)))
                                   * interval '1 second'
                              ELSE interval '8 hours' + floor(demo.u(hh.e, 1) * 36000) * interval '1 second'
                         END AS created_at
  OFFSET 0
) r;
