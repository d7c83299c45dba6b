-- canon.probabilistic_decisions: the probabilistic tier's outcome per lead row, over its
-- candidates (canon.probabilistic_candidates): LINK, REVIEW or NONE, with the best driver,
-- its probability and weight, the margin over the second candidate, the evidence and up to
-- 5 candidates with their weights. A candidate is out when the names are relatives' (the
-- veto of the rules, canon.name_veto_of, on the lead's tokens spelled as their phonetic,
-- typo or glued partners: only a token without any partner can make a relative; looked up
-- only for candidates in the review band or above), a person said it is not this driver
-- (canon.lead_driver_labels) or the driver is gone. LINK needs, all of: probability >= link_probability_min; the
-- next candidate at least margin_bits_min bits behind; evidence besides the name when the
-- name is common (a plate equal or one edit away, or a rare name token agreeing). REVIEW:
-- the best is at or above review_probability_min but fails one of those (why says which).
-- Called by canon.link_probabilistic and ops.explain_lead.
CREATE OR REPLACE FUNCTION canon.probabilistic_decisions(p_lead_ids integer[])
RETURNS TABLE (
  lead_id integer,
  lead_source_pk text,
  outcome text,
  why text,
  driver_id text,
  probability numeric,
  match_weight numeric,
  margin_bits numeric,
  fs_version integer,
  evidence jsonb,
  candidates jsonb
)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
  WITH v AS (
    SELECT fv.* FROM canon.match_fs_versions fv WHERE fv.active
  ),
  cand AS MATERIALIZED (
    SELECT c.* FROM canon.probabilistic_candidates(p_lead_ids) c
  ),
  -- The relatives veto, for the candidates that could matter only.
  vetted AS (
    SELECT c.*, k.lead_date, k.plate_norm AS lead_plate, k.name_norm AS lead_name,
           d.park_id, d.plate_norm AS driver_plate, d.name_norm AS driver_name, d.hire_date,
           CASE WHEN c.probability >= v.review_probability_min AND NOT c.driver_deleted THEN
             canon.name_veto_of(c.lead_tokens_aligned, c.lead_id, NULL,
                                string_to_array(d.name_norm, ' '), NULL, c.driver_id)
           END AS veto
    FROM cand c
    CROSS JOIN v
    JOIN canon_internal.lead_keys k ON k.lead_id = c.lead_id
    JOIN canon_internal.driver_index d ON d.driver_id = c.driver_id
  ),
  ranked AS (
    SELECT x.*,
           row_number() OVER (PARTITION BY x.lead_id ORDER BY x.reject_reason IS NULL DESC, x.match_weight DESC, x.driver_id) AS pos
    FROM (
      SELECT t.*,
             CASE WHEN t.driver_deleted THEN 'DRIVER_DELETED'
                  WHEN lbl.present THEN 'NOT_THIS_DRIVER'
                  WHEN t.veto IS NOT NULL THEN 'NAME_VETO' END AS reject_reason
      FROM vetted t
      -- a person said this lead is not this driver
      LEFT JOIN LATERAL (SELECT true AS present FROM canon.lead_driver_labels lb
                         WHERE lb.lead_source_pk = t.lead_source_pk AND lb.driver_id = t.driver_id) lbl ON true
    ) x
  ),
  per_lead AS (
    SELECT r.lead_id,
           max(r.lead_source_pk) AS lead_source_pk,
           (array_agg(r.driver_id ORDER BY r.pos) FILTER (WHERE r.reject_reason IS NULL))[1] AS best_driver,
           max(r.match_weight) FILTER (WHERE r.pos = 1 AND r.reject_reason IS NULL) AS best_weight,
           max(r.match_weight) FILTER (WHERE r.pos = 2 AND r.reject_reason IS NULL) AS second_weight
    FROM ranked r
    GROUP BY r.lead_id
  ),
  decided AS (
    SELECT pl.*, b.probability, b.plate_level, b.rare_name_agrees, b.contributions, b.evidence_words,
           b.lead_date, b.lead_plate, b.lead_name, b.park_id, b.driver_plate, b.driver_name, b.hire_date, b.fs_version,
           pl.best_weight - pl.second_weight AS margin,
           CASE
             WHEN b.driver_id IS NULL OR b.probability < v.review_probability_min THEN NULL
             WHEN b.probability < v.link_probability_min THEN 'BELOW_LINK_BAND'
             WHEN pl.second_weight IS NOT NULL AND pl.best_weight - pl.second_weight < v.margin_bits_min THEN 'SECOND_CANDIDATE_CLOSE'
             WHEN b.plate_level IS DISTINCT FROM 'EXACT' AND b.plate_level IS DISTINCT FROM 'CONFUSION'
                  AND b.plate_level IS DISTINCT FROM 'ONE_EDIT' AND NOT b.rare_name_agrees THEN 'COMMON_NAME_ONLY'
           END AS review_why
    FROM per_lead pl
    CROSS JOIN v
    LEFT JOIN ranked b ON b.lead_id = pl.lead_id AND b.driver_id = pl.best_driver
  ),
  top_candidates AS (
    SELECT r.lead_id,
           jsonb_agg(jsonb_build_object(
             'driver_id', r.driver_id, 'park_id', r.park_id, 'rule', 'R4_PROBABILISTIC',
             'score', round(r.probability * 100, 2), 'probability', r.probability, 'match_weight', r.match_weight,
             'hire_date', r.hire_date, 'kept', r.reject_reason IS NULL, 'reject_reason', r.reject_reason,
             'evidence', r.evidence_words,
             'weights', jsonb_build_object('prior', r.contributions->'prior', 'plate', r.contributions->'plate'->'weight',
                                           'name', r.contributions->'name'->'weight', 'hire_date', r.contributions->'hire_date'->'weight',
                                           'park', r.contributions->'park'->'weight'))
             || CASE WHEN r.veto IS NOT NULL THEN jsonb_build_object('name_veto', jsonb_build_object('lead', r.veto->'a', 'driver', r.veto->'b')) ELSE '{}' END
             ORDER BY r.pos) AS candidates
    FROM ranked r
    WHERE r.pos <= 5
    GROUP BY r.lead_id
  )
  SELECT d.lead_id, d.lead_source_pk,
         CASE WHEN d.probability IS NULL OR d.probability < v.review_probability_min THEN 'NONE'
              WHEN d.review_why IS NULL THEN 'LINK' ELSE 'REVIEW' END,
         d.review_why,
         CASE WHEN d.probability >= v.review_probability_min THEN d.best_driver END,
         d.probability, d.best_weight, round(d.margin, 2), v.version,
         CASE WHEN d.probability >= v.review_probability_min THEN jsonb_build_object(
           'tier', 'PROBABILISTIC', 'fs_version', v.version, 'probability', d.probability,
           'match_weight', d.best_weight, 'margin_bits', round(d.margin, 2), 'in_words', d.evidence_words,
           'contributions', d.contributions,
           'lead', jsonb_build_object('lead_id', d.lead_id, 'plate_norm', d.lead_plate, 'name_norm', d.lead_name, 'lead_date', d.lead_date),
           'driver', jsonb_build_object('driver_id', d.best_driver, 'park_id', d.park_id, 'plate_norm', d.driver_plate,
                                        'name_norm', d.driver_name, 'hire_date', d.hire_date))
         END,
         coalesce(t.candidates, '[]'::jsonb)
  FROM decided d
  CROSS JOIN v
  LEFT JOIN top_candidates t ON t.lead_id = d.lead_id
$$;
COMMENT ON FUNCTION canon.probabilistic_decisions(integer[]) IS
  'Probabilistic tier outcome per lead row: LINK / REVIEW (why: BELOW_LINK_BAND, SECOND_CANDIDATE_CLOSE, COMMON_NAME_ONLY) / NONE, best driver, probability, weight, margin over the second, evidence (contributions per field, words) and up to 5 candidates with weights. Relatives (canon.name_veto_of) and deleted drivers are never linked.';
