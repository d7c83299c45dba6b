-- Demo generator, step "plan": one row per lead of this batch with its scenario, the
-- person behind it (names, phone, plate, car) and the driver rows that person needs.
-- Drivers, leads, ground truth and trips are all rendered from this plan, so a lead
-- and its driver always describe the same person.
CREATE TEMP TABLE demo_plan ON COMMIT DROP AS
WITH draw AS (
  -- Six md5 per lead = twenty-four independent draws (see demo.u).
  SELECT g.i,
         p.lead_base + g.i AS lead_id,
         md5(p.pfx || ':lead:' || g.i) AS ha,
         md5(p.pfx || ':lead:' || g.i || ':b') AS hb,
         md5(p.pfx || ':lead:' || g.i || ':person') AS hp,
         md5(p.pfx || ':lead:' || g.i || ':person2') AS hq,
         md5(p.pfx || ':lead:' || g.i || ':partner') AS hs,
         md5(p.pfx || ':lead:' || g.i || ':sex') AS hg
  FROM demo_params p
  CROSS JOIN generate_series(1, p.n_leads) AS g(i)
),
drawn AS (
  SELECT d.*, s.scenario AS scenario0, s.drivers AS need0
  FROM draw d
  CROSS JOIN demo_params p
  JOIN demo.scenario s ON s.scenario = p.scen_names[width_bucket(demo.u(d.ha, 1), p.scen_lows)]
),
fitted AS (
  -- When --drivers is too small for every lead's person, the last persons never
  -- activated: the drivers table holds exactly the number of rows asked for.
  SELECT d.*,
         CASE WHEN sum(d.need0) OVER (ORDER BY d.i) > p.n_drivers THEN 'NO_DRIVER' ELSE d.scenario0 END AS scenario1
  FROM drawn d
  CROSS JOIN demo_params p
),
numbered AS (
  SELECT f.*,
         sum(CASE WHEN f.scenario1 = f.scenario0 THEN f.need0 ELSE 0 END) OVER (ORDER BY f.i) AS drivers_through,
         CASE WHEN f.scenario1 = f.scenario0 THEN f.need0 ELSE 0 END AS need1,
         lag(f.scenario1) OVER (ORDER BY f.i) AS prev_scenario
  FROM fitted f
),
shaped AS (
  SELECT n.i, n.lead_id, n.ha, n.hb, n.hp, n.hq, n.hs, n.hg,
         -- A re-export needs a previous lead of this batch that is not itself a re-export;
         -- otherwise the row is plain junk (both kinds need no driver).
         CASE WHEN n.scenario1 = 'HOSTILE_DUP_EXTERNAL_ID'
                   AND (n.prev_scenario IS NULL OR n.prev_scenario = 'HOSTILE_DUP_EXTERNAL_ID')
              THEN 'HOSTILE_ALL_NULL' ELSE n.scenario1 END AS scenario,
         CASE WHEN n.need1 >= 1 THEN n.drivers_through - n.need1 + 1 END AS main_ord,
         CASE WHEN n.need1 = 2 THEN n.drivers_through END AS second_ord,
         p.today - demo.ri(n.ha, 2, p.trip_days) AS lead_date,
         cardinality(demo.plain_surnames()) AS nps,
         -- Most cabinet drivers are men; the shift partner has a sex of their own.
         demo.u(n.hg, 1) < 0.8 AS male,
         demo.u(n.hg, 2) < 0.8 AS partner_male
  FROM numbered n
  CROSS JOIN demo_params p
  -- OFFSET 0 here and below: fences, so each derived value is computed once per row
  -- instead of once per reference after the planner flattens the CTEs.
  OFFSET 0
),
named AS (
  SELECT s.*,
         cardinality(demo.given_names(s.male)) AS nf,
         cardinality(demo.given_names(s.partner_male)) AS npf,
         demo.ri(s.hp, 1, cardinality(demo.given_names(s.male))) AS fi
  FROM shaped s
),
partnered AS (
  -- The partner's first name is never the lead's (offset 1.. when of the same sex).
  SELECT nm.*,
         CASE WHEN nm.partner_male = nm.male THEN (nm.fi + 1 + demo.ri(nm.hs, 1, nm.nf - 1)) % nm.nf
              ELSE demo.ri(nm.hs, 1, nm.npf) END AS pfi
  FROM named nm
  OFFSET 0
),
persons AS (
  SELECT s.i, s.lead_id, s.scenario, s.main_ord, s.second_ord, s.lead_date,
         -- Leads of today fall in the small hours, never after the call's time.
         s.lead_date + CASE WHEN s.lead_date = p.today
                            THEN floor(demo.u(s.ha, 3) * least(21600, extract(epoch FROM p.now_local - p.today::timestamp)))
                                 * interval '1 second'
                            ELSE interval '7 hours' + floor(demo.u(s.ha, 3) * 57600) * interval '1 second' END AS lead_ts,
         -- Drivers are created 0-20 days after the lead, never after today.
         least(s.lead_date + demo.ri(s.ha, 4, 21), p.today) AS hire_date,
         s.lead_date - 30 - demo.ri(s.hq, 4, 370) AS second_hire_date,
         CASE WHEN demo.u(s.hb, 1) < 0.25 THEN 'never'
              WHEN demo.u(s.hb, 1) < 0.45 THEN 'low'
              WHEN demo.u(s.hb, 1) < 0.70 THEN 'mid'
              ELSE 'high' END AS activity,
         10 + demo.ri(s.hb, 2, 50) AS churn_days,
         demo.pick(demo.car_models(), s.hb, 3) AS car,
         demo.pick(demo.colors(), s.hb, 4) AS color,
         p.driver_base + s.main_ord AS main_id,
         p.driver_base + s.second_ord AS second_id,
         CASE WHEN s.main_ord IS NOT NULL THEN md5(p.pfx || ':driver:' || s.main_ord) END AS main_driver_id,
         CASE WHEN s.second_ord IS NOT NULL THEN md5(p.pfx || ':driver:' || s.second_ord) END AS second_driver_id,
         CASE WHEN s.scenario = 'OTHER_PARK_ONLY' THEN demo.pick(p.other_parks, s.hq, 3) ELSE p.target_park END AS main_park,
         CASE WHEN s.scenario = 'TWO_PARKS_SAME_PHONE' THEN demo.pick(p.other_parks, s.hq, 3) ELSE p.target_park END AS second_park,
         -- Keys of persons without a driver come from id ranges no driver uses, so they
         -- can never match anyone by accident.
         CASE WHEN s.main_ord IS NOT NULL THEN demo.phone9(p.driver_base + s.main_ord, p.phone_mult, p.phone_shift)
              ELSE demo.phone9(60000000 + s.lead_id, p.phone_mult, p.phone_shift) END AS phone9,
         CASE WHEN s.main_ord IS NOT NULL THEN demo.plate(p.driver_base + s.main_ord, p.plate_mult, p.plate_shift)
              ELSE demo.plate(17575999 - s.lead_id, p.plate_mult, p.plate_shift) END AS plate,
         demo.license(p.driver_base + s.main_ord, p.license_mult, p.license_shift) AS license,
         (demo.given_names(s.male))[1 + s.fi] AS first_name,
         -- A middle name is never the first name again (offset 1..nf-1).
         CASE WHEN demo.u(s.hp, 2) < 0.6 OR s.scenario IN ('PLATE_NAME_NO_MIDDLE', 'PLATE_NICKNAME')
              THEN (demo.given_names(s.male))[1 + (s.fi + 1 + demo.ri(s.hp, 3, s.nf - 1)) % s.nf] END AS middle_name,
         CASE WHEN s.scenario = 'PLATE_PARTICLE_SURNAME' THEN demo.pick(demo.particle_surnames(), s.hp, 4)
              WHEN s.scenario IN ('PLATE_NAME_TYPO', 'PLATE_HYPHEN_SURNAME') THEN demo.pick(demo.long_surnames(), s.hp, 4)
              ELSE demo.pick(demo.surnames(), s.hp, 4) END AS sur1,
         CASE WHEN s.scenario = 'PLATE_HYPHEN_SURNAME' THEN demo.pick(demo.long_surnames(), s.hq, 2)
              WHEN demo.u(s.hq, 1) < 0.9 OR s.scenario IN ('PLATE_NAME_NO_MIDDLE', 'PLATE_NICKNAME', 'PHONE_OF_RELATIVE')
              THEN demo.pick(demo.plain_surnames(), s.hq, 2) END AS sur2,
         -- The shift partner: another person.
         (demo.given_names(s.partner_male))[1 + s.pfi] AS partner_first,
         CASE WHEN demo.u(s.hs, 4) < 0.5
              THEN (demo.given_names(s.partner_male))[1 + (s.pfi + 1 + demo.ri(s.hg, 3, s.npf - 1)) % s.npf] END AS partner_middle,
         demo.ri(s.hs, 2, s.nps) AS partner_s1,
         (demo.plain_surnames())[1 + demo.ri(s.hs, 3, s.nps)] AS partner_sur2,
         s.nps
  FROM partnered s
  CROSS JOIN demo_params p
),
truth AS (
  SELECT pr.*,
         -- Never one of the lead's own surnames: shift partners must differ by name.
         CASE WHEN c.c0 IS DISTINCT FROM pr.sur1 AND c.c0 IS DISTINCT FROM pr.sur2 THEN c.c0
              WHEN c.c1 IS DISTINCT FROM pr.sur1 AND c.c1 IS DISTINCT FROM pr.sur2 THEN c.c1
              ELSE c.c2 END AS partner_sur1,
         pr.main_driver_id AS true_driver_id,
         sc.matchable
  FROM persons pr
  CROSS JOIN LATERAL (SELECT (demo.plain_surnames())[1 + pr.partner_s1] AS c0,
                             (demo.plain_surnames())[1 + (pr.partner_s1 + 1) % pr.nps] AS c1,
                             (demo.plain_surnames())[1 + (pr.partner_s1 + 2) % pr.nps] AS c2) c
  JOIN demo.scenario sc ON sc.scenario = pr.scenario
)
SELECT * FROM truth;
