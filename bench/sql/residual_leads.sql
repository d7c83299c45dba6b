-- The residual leads of issue 19, appended to a demo database for npm run bench:quality:
-- leads without a phone that the rules leave behind (a plate typed wrong, a changed car
-- under a rare or a common name, two typos, glued names, names in the wrong fields) and
-- hard negatives (a relative on a one-edit plate with the same surnames, the same common
-- name on another car, a resold car). Each case brings its own drivers (ids res-*), so the
-- truth is known; recorded in demo.lead_truth with the scenario name. md5-driven like the
-- demo generator: the same seed gives the same rows. Settings: bench.res_seed, bench.res_leads.
CREATE SCHEMA IF NOT EXISTS bench;

-- One typing error in a token: a letter changed, two swapped, or a spelling that sounds the same.
CREATE OR REPLACE FUNCTION bench.mistype(s text, h text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE
    WHEN s IS NULL OR length(s) < 3 THEN s
    WHEN k = 0 AND s ~* '(qu|v|z|y|ll|c[ei])' THEN
      regexp_replace(s, '(qu|v|z|y|ll|c(?=[ei]))', CASE lower(substring(s FROM '(?i)(qu|v|z|y|ll|c(?=[ei]))'))
        WHEN 'qu' THEN 'k' WHEN 'v' THEN 'b' WHEN 'z' THEN 's' WHEN 'y' THEN 'i' WHEN 'll' THEN 'y' ELSE 's' END, 'i')
    WHEN k = 1 AND substr(s, p, 1) <> substr(s, p + 1, 1) THEN
      overlay(s PLACING substr(s, p + 1, 1) || substr(s, p, 1) FROM p FOR 2)
    ELSE overlay(s PLACING chr(97 + (ascii(lower(substr(s, p, 1))) - 97 + 1 + demo.ri(h, 3, 24)) % 26) FROM p FOR 1)
  END
  FROM (SELECT demo.ri(h, 1, 3) AS k, 2 + demo.ri(h, 2, greatest(length(s) - 2, 1)) AS p) x
$$;

-- One typing error in a plate ABC123: a confusion (O/0, I/1, B/8, S/5, Z/2, G/6) where
-- the plate has such a character, else a character changed, two swapped or one dropped.
CREATE OR REPLACE FUNCTION bench.mistype_plate(p text, h text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE
    WHEN k = 0 AND cpos > 0 THEN overlay(p PLACING translate(substr(p, cpos, 1), 'OIBSZG012568', '0182G6OIZSGB') FROM cpos FOR 1)
    WHEN k <= 1 THEN overlay(p PLACING CASE WHEN substr(p, pos, 1) ~ '[0-9]'
                                            THEN ((substr(p, pos, 1)::int + 1 + demo.ri(h, 3, 9)) % 10)::text
                                            ELSE chr(65 + (ascii(substr(p, pos, 1)) - 65 + 1 + demo.ri(h, 3, 25)) % 26) END FROM pos FOR 1)
    WHEN k = 2 AND substr(p, pos, 1) <> substr(p, pos + 1, 1) AND pos < length(p) THEN overlay(p PLACING substr(p, pos + 1, 1) || substr(p, pos, 1) FROM pos FOR 2)
    ELSE overlay(p PLACING '' FROM pos FOR 1)
  END
  FROM (SELECT demo.ri(h, 1, 4) AS k, 1 + demo.ri(h, 2, length(p)) AS pos,
               coalesce((SELECT min(i) FROM generate_series(1, length(p)) i
                         WHERE substr(p, i, 1) IN ('O', 'I', 'B', 'S', 'Z', 'G', '0', '1', '2', '5', '6', '8')
                           AND i > demo.ri(h, 4, length(p))), 0) AS cpos) x
$$;

-- A surname nobody else has: syllables of Andean surnames put together (2,000 forms).
CREATE OR REPLACE FUNCTION bench.rare_surname(h text, n integer) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT (ARRAY['Hui', 'Cca', 'Chu', 'Tin', 'Yu', 'Cho', 'Sul', 'Pa', 'Que', 'Tai', 'Ma', 'Coa', 'Llu', 'Tu', 'Ata', 'Huay', 'Pu', 'Mi', 'Sa', 'Co'])[1 + demo.ri(h, n, 20)]
      || (ARRAY['ll', 'qu', 'mp', 'nt', 'rc', 'ch', 'y', 'hu', 'sc', 'r'])[1 + demo.ri(h, 1 + n % 4, 10)]
      || (ARRAY['ca', 'ana', 'ia', 'aya', 'ra', 'anca', 'pa', 'ri', 'ta', 'pe'])[1 + demo.ri(h, 1 + (n + 1) % 4, 10)]
$$;

DROP TABLE IF EXISTS pg_temp.res_plan;
CREATE TEMP TABLE res_plan AS
WITH g AS (
  SELECT i, md5('res:' || current_setting('bench.res_seed') || ':' || i) AS h,
            md5('res2:' || current_setting('bench.res_seed') || ':' || i) AS h2,
            md5('res3:' || current_setting('bench.res_seed') || ':' || i) AS h3
  FROM generate_series(1, current_setting('bench.res_leads')::integer) i
),
s AS (
  SELECT g.*, (SELECT coalesce(max(id), 0) FROM public.module_ct_cabinet_leads) + g.i AS lead_id,
         canon.business_today() - 2 - demo.ri(g.h, 1, 40) AS lead_date,
         CASE WHEN demo.u(g.h, 2) < 0.20 THEN 'RES_PLATE_TYPO'
              WHEN demo.u(g.h, 2) < 0.35 THEN 'RES_CHANGED_CAR_RARE_NAME'
              WHEN demo.u(g.h, 2) < 0.45 THEN 'RES_CHANGED_CAR_COMMON_NAME'
              WHEN demo.u(g.h, 2) < 0.58 THEN 'RES_NAME_TWO_TYPOS'
              WHEN demo.u(g.h, 2) < 0.66 THEN 'RES_GLUED_NAME'
              WHEN demo.u(g.h, 2) < 0.74 THEN 'RES_WRONG_FIELDS_PLATE_TYPO'
              WHEN demo.u(g.h, 2) < 0.84 THEN 'NEG_RELATIVE_ONE_EDIT_PLATE'
              WHEN demo.u(g.h, 2) < 0.93 THEN 'NEG_NAMESAKE_OTHER_CAR'
              ELSE 'NEG_RESALE' END AS scenario,
         demo.u(g.h, 3) < 0.8 AS male
  FROM g
),
named AS (
  SELECT s.*,
         demo.pick(demo.given_names(s.male), s.h2, 1) AS given1,
         CASE WHEN demo.u(s.h2, 2) < 0.6 OR s.scenario = 'RES_GLUED_NAME' THEN demo.pick(demo.given_names(s.male), s.h2, 3) END AS given2_raw,
         CASE WHEN s.scenario = 'RES_CHANGED_CAR_RARE_NAME' THEN bench.rare_surname(s.h3, 1)
              WHEN s.scenario = 'RES_GLUED_NAME' AND demo.u(s.h3, 4) < 0.5 THEN demo.pick(demo.particle_surnames(), s.h3, 2)
              ELSE demo.pick(demo.plain_surnames(), s.h3, 1) END AS sur1,
         CASE WHEN s.scenario = 'RES_CHANGED_CAR_RARE_NAME' AND demo.u(s.h3, 3) < 0.5 THEN bench.rare_surname(s.h3, 2)
              ELSE demo.pick(demo.plain_surnames(), s.h3, 3) END AS sur2,
         demo.plate(10000000 + s.i, 10862567, 777) AS plate,
         'RZ' || lpad(s.i::text, 4, '0') AS other_plate
  FROM s
)
SELECT n.*,
       nullif(n.given2_raw, n.given1) AS given2,
       -- the relative's given names: never the lead's
       (SELECT x FROM unnest(demo.given_names(n.male)) x WHERE x <> n.given1 AND x IS DISTINCT FROM n.given2_raw
        ORDER BY md5(x || n.h) LIMIT 1) AS other_given,
       'res-' || n.i AS driver_id
FROM named n;

-- The drivers: the lead's own (or the relative, the namesake, the previous owner).
INSERT INTO public.drivers (driver_id, park_id, first_name, middle_name, last_name, car_number, hire_date, created_at, updated_at)
SELECT p.driver_id, canon.setting('target_park_id'),
       upper(CASE WHEN p.scenario = 'NEG_RELATIVE_ONE_EDIT_PLATE' THEN p.other_given
                  WHEN p.scenario = 'NEG_RESALE' THEN demo.pick(demo.male_names(), p.h3, 4) ELSE p.given1 END),
       upper(CASE WHEN p.scenario IN ('NEG_RELATIVE_ONE_EDIT_PLATE', 'NEG_RESALE') THEN NULL ELSE p.given2 END),
       upper(CASE WHEN p.scenario = 'NEG_RESALE' THEN demo.pick(demo.plain_surnames(), p.h, 4) || ' ' || demo.pick(demo.plain_surnames(), p.h2, 4)
                  ELSE concat_ws(' ', p.sur1, p.sur2) END),
       p.plate,
       CASE WHEN p.scenario = 'NEG_RESALE' THEN p.lead_date - 400 - demo.ri(p.h3, 2, 700)
            ELSE p.lead_date + demo.ri(p.h2, 4, 21) END,
       now(), now()
FROM res_plan p;

INSERT INTO public.module_ct_cabinet_leads (id, external_id, lead_created_at, first_name, middle_name, last_name, asset_plate_number, park_phone, park_name, created_at)
SELECT p.lead_id, 'res-lead-' || p.i, p.lead_date + time '10:00',
       CASE p.scenario
         WHEN 'RES_NAME_TWO_TYPOS' THEN bench.mistype(p.given1, p.h)
         WHEN 'RES_GLUED_NAME' THEN CASE WHEN p.sur1 LIKE '% %' THEN p.given1 ELSE p.given1 || lower(p.given2) END
         WHEN 'RES_WRONG_FIELDS_PLATE_TYPO' THEN concat_ws(' ', p.sur1, p.sur2)
         WHEN 'NEG_RELATIVE_ONE_EDIT_PLATE' THEN p.given1
         ELSE p.given1 END,
       CASE WHEN p.scenario IN ('RES_GLUED_NAME', 'RES_WRONG_FIELDS_PLATE_TYPO') AND NOT (p.scenario = 'RES_GLUED_NAME' AND p.sur1 LIKE '% %') THEN NULL
            ELSE p.given2 END,
       CASE p.scenario
         WHEN 'RES_NAME_TWO_TYPOS' THEN concat_ws(' ', bench.mistype(p.sur1, p.h2), p.sur2)
         WHEN 'RES_GLUED_NAME' THEN CASE WHEN p.sur1 LIKE '% %' THEN replace(initcap(p.sur1), ' ', '') || ' ' || p.sur2 ELSE concat_ws(' ', p.sur1, p.sur2) END
         WHEN 'RES_WRONG_FIELDS_PLATE_TYPO' THEN concat_ws(' ', p.given1, p.given2)
         WHEN 'NEG_RESALE' THEN concat_ws(' ', p.sur1, p.sur2)
         ELSE concat_ws(' ', p.sur1, p.sur2) END,
       CASE WHEN p.scenario IN ('RES_PLATE_TYPO', 'RES_WRONG_FIELDS_PLATE_TYPO', 'NEG_RELATIVE_ONE_EDIT_PLATE') THEN bench.mistype_plate(p.plate, p.h3)
            WHEN p.scenario IN ('RES_CHANGED_CAR_RARE_NAME', 'RES_CHANGED_CAR_COMMON_NAME', 'NEG_NAMESAKE_OTHER_CAR') THEN p.other_plate
            ELSE lower(left(p.plate, 3)) || '-' || right(p.plate, 3) END,
       NULL, 'Yego Taxi Lima', p.lead_date + time '12:00'
FROM res_plan p;

INSERT INTO demo.lead_truth (lead_id, lead_source_pk, true_driver_id, scenario, matchable)
SELECT p.lead_id, 'res-lead-' || p.i,
       CASE WHEN p.scenario LIKE 'RES_%' THEN p.driver_id END,
       p.scenario,
       p.scenario LIKE 'RES_%' AND p.scenario <> 'RES_CHANGED_CAR_COMMON_NAME'
FROM res_plan p;
