-- canon.probabilistic_candidates: the probabilistic tier's candidate pairs (Fellegi-Sunter, as
-- Splink does) for the given lead rows, with each field's comparison level, its weight in
-- bits (log2 m/u of the active canon.match_fs_versions / canon.match_fs_levels), the sum with
-- the prior, the match probability and, for the pairs in the review band or above, the
-- evidence per field and in words. The levels of plate, hire date and park and the number
-- of indexed drivers the weights used are returned too (canon.estimate_fs_m reads them).
-- Candidates come from the tier's blocking, canon.fs_blocked_pairs (plate equal or one edit
-- away with a shared name token; the lead's rare name keys; both read by GIN on hashed keys).
-- Name tokens weigh by rarity: an agreeing token's u is its share of the drivers
-- (canon_internal.name_token_stats), so QUISPE counts for less than a rare surname. Called
-- by canon.probabilistic_decisions, only for the leads the rules leave behind.
CREATE OR REPLACE FUNCTION canon.probabilistic_candidates(p_lead_ids integer[])
RETURNS TABLE (
  lead_id integer,
  lead_source_pk text,
  driver_id text,
  fs_version integer,
  blocks text[],
  plate_level text,
  hire_level text,
  park_level text,
  indexed_drivers bigint,
  name_weight numeric,
  rare_name_agrees boolean,
  lead_tokens_aligned text[],
  match_weight numeric,
  probability numeric,
  driver_deleted boolean,
  contributions jsonb,
  evidence_words text
)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
  WITH v0 AS (
    SELECT fv.*, canon.setting('target_park_id') AS target_park, canon.fs_indexed_drivers() AS drivers
    FROM canon.match_fs_versions fv
    WHERE fv.active
  ),
  -- a token typed by at most rare_max drivers is rare (below 1: a base too small to tell)
  v AS MATERIALIZED (SELECT v0.*, canon.fs_rare_token_max() AS rare_max FROM v0),
  lv AS (
    SELECT l.* FROM canon.match_fs_levels l JOIN v ON v.version = l.version
  ),
  pairs AS MATERIALIZED (
    SELECT * FROM canon.fs_blocked_pairs(p_lead_ids)
  ),
  candidates AS (
    SELECT pr.*, k.lead_source_pk, k.plate_norm AS lead_plate, k.lead_date, string_to_array(k.name_norm, ' ') AS lt,
           d.plate_norm AS driver_plate, d.name_norm AS driver_name, d.hire_date, d.park_id
    FROM pairs pr
    JOIN canon_internal.lead_keys k ON k.lead_id = pr.lead_id
    JOIN canon_internal.driver_index d ON d.driver_id = pr.driver_id
  ),
  compared AS (
    SELECT pr.lead_id, pr.lead_source_pk, pr.driver_id, pr.blocks, v.version,
           pc.level AS plate_level, pc.note AS plate_note, pr.lead_plate, pr.driver_plate,
           CASE WHEN isfinite(pr.hire_date) AND isfinite(pr.lead_date) THEN pr.hire_date - pr.lead_date END AS hire_days,
           -- an unknown or infinite date ('infinity' arrives from upstream) is no evidence
           CASE WHEN NOT (isfinite(pr.hire_date) AND isfinite(pr.lead_date)) OR pr.hire_date IS NULL OR pr.lead_date IS NULL THEN NULL
                WHEN pr.hire_date - pr.lead_date BETWEEN 0 AND 30 THEN 'NEAR'
                WHEN pr.hire_date - pr.lead_date BETWEEN -30 AND 90 THEN 'CLOSE'
                WHEN pr.hire_date - pr.lead_date BETWEEN -365 AND 365 THEN 'YEAR'
                ELSE 'FAR' END AS hire_level,
           CASE WHEN pr.park_id IS NOT DISTINCT FROM v.target_park THEN 'TARGET' ELSE 'OTHER' END AS park_level,
           ln(v.prior_match_share::float8 / greatest(v.drivers, 1) / (1 - v.prior_match_share::float8 / greatest(v.drivers, 1))) / ln(2::float8) AS prior_weight,
           nm.weight AS name_weight, nm.rare_agrees, pr.lt, pr.driver_name,
           x.present IS NULL AS driver_deleted,
           nm.aligned,
           v.drivers, v.rare_max, v.token_share_min, v.review_probability_min
    FROM candidates pr
    CROSS JOIN v
    CROSS JOIN LATERAL canon.plate_comparison(pr.lead_plate, pr.driver_plate) pc
    -- one probe per pair (a NOT EXISTS became a scan of public.drivers)
    LEFT JOIN LATERAL (SELECT true AS present FROM public.drivers x WHERE x.driver_id = pr.driver_id LIMIT 1) x ON true
    -- Name: every token's level, weighed by the partner token's share of drivers.
    CROSS JOIN LATERAL (
      SELECT coalesce(sum(t.w), 0) AS weight,
             coalesce(bool_or(t.side = 'LEAD' AND t.level IN ('EXACT', 'PHONETIC', 'TYPO', 'GLUED') AND t.count <= v.rare_max AND v.rare_max >= 1), false) AS rare_agrees,
             -- the lead's tokens spelled as their partners: the relatives veto then sees only tokens without any partner
             array_agg(CASE WHEN t.level IN ('PHONETIC', 'TYPO', 'GLUED') THEN t.partner ELSE t.token END) FILTER (WHERE t.side = 'LEAD') AS aligned
      FROM canon.fs_name_tokens(pr.lt, pr.driver_name, v.version, v.drivers, v.token_share_min) t
    ) nm
  ),
  weighed AS (
    SELECT c.*,
           -- weights in double precision (a numeric logarithm is slow)
           CASE WHEN pl.u_kind = 'PER_DRIVER' THEN ln(pl.m::float8 / least(1, pl.u::float8 / greatest(c.drivers, 1)))
                ELSE ln(pl.m::float8 / pl.u::float8) END / ln(2::float8) AS plate_weight,
           ln(hl.m::float8 / hl.u::float8) / ln(2::float8) AS hire_weight,
           ln(pk.m::float8 / pk.u::float8) / ln(2::float8) AS park_weight
    FROM compared c
    LEFT JOIN lv pl ON pl.comparison = 'PLATE' AND pl.level = c.plate_level
    LEFT JOIN lv hl ON hl.comparison = 'HIRE_DATE' AND hl.level = c.hire_level
    LEFT JOIN lv pk ON pk.comparison = 'PARK' AND pk.level = c.park_level
  ),
  summed AS (
    SELECT w.*, w.prior_weight + coalesce(w.plate_weight, 0) + w.name_weight + coalesce(w.hire_weight, 0) + coalesce(w.park_weight, 0) AS total
    FROM weighed w
  )
  SELECT s.lead_id, s.lead_source_pk, s.driver_id, s.version, s.blocks, s.plate_level,
         s.hire_level, s.park_level, s.drivers::bigint,
         round((s.name_weight)::numeric, 2), s.rare_agrees, s.aligned,
         round((s.total)::numeric, 2), s.probability,
         s.driver_deleted,
         det.contributions,
         det.words
  FROM (
    SELECT sm.*, round((1 / (1 + power(2::float8, -greatest(least(sm.total, 60), -60))))::numeric, 6) AS probability
    FROM summed sm
  ) s
  -- The evidence per field and in words only for the candidates that can be linked or
  -- reviewed (the gate is checked before the tokens are compared again).
  LEFT JOIN LATERAL (
    SELECT jsonb_build_object(
             'prior', round((s.prior_weight)::numeric, 2),
             'plate', jsonb_build_object('level', s.plate_level, 'note', s.plate_note, 'lead', s.lead_plate, 'driver', s.driver_plate,
                                         'weight', round((coalesce(s.plate_weight, 0))::numeric, 2)),
             'name', jsonb_build_object('weight', round((s.name_weight)::numeric, 2), 'rare_token_agrees', s.rare_agrees, 'tokens', nw.tokens),
             'hire_date', jsonb_build_object('level', s.hire_level, 'days_after_lead', s.hire_days, 'weight', round((coalesce(s.hire_weight, 0))::numeric, 2)),
             'park', jsonb_build_object('level', s.park_level, 'weight', round((coalesce(s.park_weight, 0))::numeric, 2))) AS contributions,
           concat_ws('; ',
             CASE s.plate_level
               WHEN 'EXACT' THEN 'plate equal'
               WHEN 'CONFUSION' THEN format('plate one character off (%s)', s.plate_note)
               WHEN 'ONE_EDIT' THEN format('plate one edit off (%s)', s.plate_note)
               WHEN 'DIFFERENT' THEN 'another plate'
               ELSE 'no plate to compare' END,
             'name: ' || nw.words,
             CASE WHEN s.hire_days IS NULL THEN 'hire date unknown'
                  WHEN s.hire_days >= 0 THEN format('hire date %s days after the lead', s.hire_days)
                  ELSE format('hire date %s days before the lead', -s.hire_days) END,
             CASE s.park_level WHEN 'TARGET' THEN 'target park' ELSE 'another park' END) AS words
    FROM (
      SELECT jsonb_agg(jsonb_build_object('side', t.side, 'token', t.token, 'partner', t.partner, 'level', t.level,
                                          'share', round((t.share)::numeric, 6), 'weight', round((t.w)::numeric, 2)) ORDER BY t.side DESC, t.token) AS tokens,
             string_agg(CASE t.level
                          WHEN 'EXACT' THEN t.token || ' equal'
                          WHEN 'PHONETIC' THEN t.token || ' sounds like ' || t.partner
                          WHEN 'TYPO' THEN t.token || ' one typo from ' || t.partner
                          WHEN 'GLUED' THEN t.token || ' glued/split with ' || t.partner
                          WHEN 'INITIAL' THEN t.token || ' initial of ' || t.partner
                          WHEN 'NONE' THEN t.token || ' not in the driver''s name'
                          WHEN 'MISSING' THEN t.token || ' not given on the lead'
                        END
                        || CASE WHEN t.level IN ('EXACT', 'PHONETIC', 'TYPO', 'GLUED')
                                THEN CASE WHEN t.count <= s.rare_max AND s.rare_max >= 1 THEN ' (rare)' ELSE ' (common)' END
                                ELSE '' END,
                        ', ' ORDER BY t.side DESC, t.token) AS words
      FROM canon.fs_name_tokens(s.lt, s.driver_name, s.version, s.drivers, s.token_share_min) t
      WHERE s.probability >= s.review_probability_min
    ) nw
    WHERE s.probability >= s.review_probability_min
  ) det ON true
$$;
COMMENT ON FUNCTION canon.probabilistic_candidates(integer[]) IS
  'Probabilistic tier: candidate drivers of the given lead rows (blocks: plate equal or one edit, rare name tokens), each field''s level and weight (bits), the total with the prior, the probability, the per-field contributions and the evidence in words. Parameters: the active canon.match_fs_versions.';
