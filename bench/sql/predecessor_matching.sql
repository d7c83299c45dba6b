-- A faithful, set-based reimplementation of the predecessor's matching rules (see
-- PREDECESSOR.md section 3), for side-by-side quality comparison only: never part of the
-- product. Writes bench.predecessor_decisions(lead_id, driver_id, rule, reason).
--   phone: lead keeps dots/letters, only whitespace - ( ) + removed, >= 8 chars; index
--          phone = digits only; no country-code handling; tier target park, else others;
--          more than one driver in the tier: MULTIPLE_CANDIDATES.
--   plate: index strips everything outside [A-Z0-9] BEFORE uppercasing (lowercase
--          letters are lost); leads uppercase first.
--   name:  uppercase, vowels/Ñ/Ç unaccented, everything outside A-Z and spaces removed
--          (hyphens glue tokens), stopwords dropped; (jaccard + overlap/max) / 2 >= 0.66.
--   R3: target park, hire date in [-90, +30]; best by similarity, gap < 0.15: MULTIPLE.
--   R3b: only when R3 found no candidate; its winner must already be linked (here: to a
--        lead matched by R1 or R3), else NO_PERSON_KEY.
--   Combination: one matched result wins even when another rule was ambiguous.
CREATE SCHEMA IF NOT EXISTS bench;

CREATE OR REPLACE FUNCTION bench.pred_name(t text) RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
  SELECT coalesce(array_agg(DISTINCT tok) FILTER (WHERE tok <> '' AND tok NOT IN ('DE','DEL','LA','LOS','LAS','EL','Y','E')), '{}')
  FROM unnest(string_to_array(
         regexp_replace(regexp_replace(
           translate(upper(btrim(coalesce(t, ''))), 'ÁÉÍÓÚÀÈÌÒÙÄËÏÖÜÂÊÎÔÛÑÇ', 'AEIOUAEIOUAEIOUAEIOUNC'),
           '[^A-Z ]', '', 'g'), '\s+', ' ', 'g'), ' ')) tok
$$;

CREATE OR REPLACE FUNCTION bench.pred_similarity(a text[], b text[]) RETURNS numeric
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN cardinality(a) = 0 OR cardinality(b) = 0 THEN 0 ELSE
    ( (SELECT count(*) FROM (SELECT unnest(a) INTERSECT SELECT unnest(b)) i)::numeric
        / (SELECT count(*) FROM (SELECT unnest(a) UNION SELECT unnest(b)) u)
      + (SELECT count(*) FROM (SELECT unnest(a) INTERSECT SELECT unnest(b)) i)::numeric
        / greatest(cardinality(a), cardinality(b)) ) / 2 END
$$;

DROP TABLE IF EXISTS bench.pred_index;
CREATE TABLE bench.pred_index AS
SELECT d.driver_id, d.park_id,
       nullif(regexp_replace(coalesce(d.phone, ''), '[^0-9]', '', 'g'), '') AS phone_norm,
       nullif(upper(regexp_replace(regexp_replace(coalesce(coalesce(d.car_normalized_number, d.car_number), ''), '[ -]', '', 'g'), '[^A-Z0-9]', '', 'g')), '') AS plate_norm,
       bench.pred_name(coalesce(d.full_name, concat_ws(' ', d.first_name, d.middle_name, d.last_name))) AS name_tokens,
       d.hire_date
FROM public.drivers d;
CREATE INDEX ON bench.pred_index (phone_norm);
CREATE INDEX ON bench.pred_index (plate_norm);
ANALYZE bench.pred_index;

DROP TABLE IF EXISTS bench.pred_leads;
CREATE TABLE bench.pred_leads AS
SELECT l.id AS lead_id,
       CASE WHEN length(regexp_replace(coalesce(l.park_phone, ''), '[\s\-()+]', '', 'g')) >= 8
            THEN regexp_replace(l.park_phone, '[\s\-()+]', '', 'g') END AS phone_norm,
       nullif(regexp_replace(upper(regexp_replace(coalesce(l.asset_plate_number, ''), '[ -]', '', 'g')), '[^A-Z0-9]', '', 'g'), '') AS plate_norm,
       bench.pred_name(concat_ws(' ', l.first_name, l.middle_name, l.last_name)) AS name_tokens,
       l.lead_created_at::date AS lead_date,
       '08e20910d81d42658d4334d3f6d10ac0'::text AS target_park
FROM public.module_ct_cabinet_leads l
WHERE l.lead_created_at IS NOT NULL;

DROP TABLE IF EXISTS bench.predecessor_decisions;
CREATE TABLE bench.predecessor_decisions AS
WITH r1_tier AS (
  SELECT l.lead_id, i.driver_id, (i.park_id = l.target_park) AS target,
         bool_or(i.park_id = l.target_park) OVER (PARTITION BY l.lead_id) AS has_target
  FROM bench.pred_leads l JOIN bench.pred_index i ON i.phone_norm = l.phone_norm
  WHERE i.park_id IS NOT NULL
),
r1 AS (
  SELECT lead_id, CASE WHEN count(*) = 1 THEN min(driver_id) END AS driver_id, count(*) AS n
  FROM r1_tier WHERE target = has_target GROUP BY lead_id
),
r3_scored AS (
  SELECT l.lead_id, i.driver_id, bench.pred_similarity(l.name_tokens, i.name_tokens) AS sim,
         (i.hire_date IS NULL OR i.hire_date BETWEEN l.lead_date - 90 AND l.lead_date + 30) AS in_window
  FROM bench.pred_leads l JOIN bench.pred_index i ON i.plate_norm = l.plate_norm AND i.park_id = l.target_park
  WHERE cardinality(l.name_tokens) > 0
),
r3_pick AS (
  SELECT lead_id, in_window,
         (array_agg(driver_id ORDER BY sim DESC, driver_id) FILTER (WHERE sim >= 0.66))[1] AS best,
         (array_agg(sim ORDER BY sim DESC) FILTER (WHERE sim >= 0.66)) AS sims,
         count(*) AS n
  FROM r3_scored GROUP BY lead_id, in_window
),
r3 AS (
  SELECT lead_id,
         CASE WHEN cardinality(sims) = 1 OR (cardinality(sims) >= 2 AND sims[1] - sims[2] >= 0.15) THEN best END AS driver_id
  FROM r3_pick WHERE in_window
),
r3b AS (
  SELECT p.lead_id,
         CASE WHEN cardinality(p.sims) = 1 OR (cardinality(p.sims) >= 2 AND p.sims[1] - p.sims[2] >= 0.15) THEN p.best END AS driver_id
  FROM r3_pick p
  WHERE NOT p.in_window AND NOT EXISTS (SELECT 1 FROM r3_pick q WHERE q.lead_id = p.lead_id AND q.in_window)
),
linked_first AS (
  SELECT driver_id FROM r1 WHERE driver_id IS NOT NULL
  UNION SELECT driver_id FROM r3 WHERE driver_id IS NOT NULL
),
results AS (
  SELECT lead_id, driver_id, 'R1_PHONE_EXACT' AS rule, 95 AS score FROM r1 WHERE driver_id IS NOT NULL
  UNION ALL SELECT lead_id, driver_id, 'R3_PLATE_EXACT_NAME_SIMILAR', 85 FROM r3 WHERE driver_id IS NOT NULL
  UNION ALL SELECT lead_id, driver_id, 'R3B_PLATE_NAME_NO_DATE', 80 FROM r3b
    WHERE driver_id IS NOT NULL AND driver_id IN (SELECT driver_id FROM linked_first)
)
SELECT l.lead_id,
       CASE WHEN count(DISTINCT r.driver_id) = 1 THEN min(r.driver_id) END AS driver_id,
       CASE WHEN count(DISTINCT r.driver_id) = 1 THEN (array_agg(r.rule ORDER BY r.score DESC))[1] END AS rule,
       CASE WHEN count(r.driver_id) = 0 THEN 'NO_MATCH' WHEN count(DISTINCT r.driver_id) > 1 THEN 'MULTIPLE_CANDIDATES' END AS reason
FROM bench.pred_leads l
LEFT JOIN results r ON r.lead_id = l.lead_id
GROUP BY l.lead_id;
