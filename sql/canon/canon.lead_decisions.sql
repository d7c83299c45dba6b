-- canon.lead_decisions: the decision of SPEC 6 for each given lead row, over all
-- candidates of all rules together: MATCH (with the strongest rule, every agreeing rule
-- and the values compared as evidence) or the reason code why not, with its details and
-- up to 5 candidates (what canon.identity_unmatched keeps; NULL for a match, built only
-- for the leads not matched). Used by the batch matcher and by ops.explain_lead. A plate
-- candidate vetoed as a relative's name (NAME_VETO) counts as a plate without a similar
-- name (WEAK_MATCH_ONLY); its name_veto is kept in the candidates and in the evidence.
CREATE OR REPLACE FUNCTION canon.lead_decisions(p_lead_ids integer[])
RETURNS TABLE (
  lead_id integer,
  lead_source_pk text,
  decision text,
  driver_id text,
  match_rule text,
  match_score numeric,
  confidence_level text,
  evidence jsonb,
  details jsonb,
  candidates jsonb
)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
  WITH leads AS (
    SELECT k.* FROM canon_internal.lead_keys k WHERE k.lead_id = ANY (p_lead_ids)
  ),
  cand AS (
    SELECT c.*, mr.rank AS rule_rank
    FROM canon.lead_candidates(p_lead_ids) c
    JOIN canon.match_rules mr ON mr.rule = c.rule
  ),
  -- Everything per lead is aggregated in one pass (no correlated scans of cand).
  per_group AS (
    SELECT c.lead_id, c.rule_group, count(DISTINCT c.driver_id) AS drivers
    FROM cand c
    WHERE c.kept
    GROUP BY c.lead_id, c.rule_group
  ),
  per_lead AS (
    SELECT c.lead_id,
           count(DISTINCT c.driver_id) FILTER (WHERE c.kept) AS kept_drivers,
           count(*) FILTER (WHERE NOT c.kept AND c.reject_reason IN ('PHONE_SHARED_BY_LEADS', 'PHONE_SHARED_BY_DRIVERS')) AS shared_phone_hits,
           -- the plate is there, no similar name: not similar, or a relative's (SPEC 5)
           count(*) FILTER (WHERE NOT c.kept AND c.reject_reason IN ('NAME_NOT_SIMILAR', 'NAME_VETO')) AS weak_plate_hits,
           jsonb_agg(DISTINCT c.rule) FILTER (WHERE c.kept) AS kept_rules,
           jsonb_agg(jsonb_build_object('driver_id', c.driver_id, 'rule', c.rule, 'reject_reason', c.reject_reason)
                     || CASE WHEN c.name_veto IS NOT NULL THEN jsonb_build_object('name_veto', c.name_veto) ELSE '{}' END)
             FILTER (WHERE NOT c.kept) AS rejected
    FROM cand c
    GROUP BY c.lead_id
  ),
  summary AS (
    SELECT l.lead_id,
           coalesce(p.kept_drivers, 0) AS kept_drivers,
           coalesce(p.shared_phone_hits, 0) AS shared_phone_hits,
           coalesce(p.weak_plate_hits, 0) AS weak_plate_hits,
           p.kept_rules,
           coalesce(p.rejected, '[]'::jsonb) AS rejected,
           coalesce(g.ambiguous, false) AS some_rule_ambiguous
    FROM leads l
    LEFT JOIN per_lead p ON p.lead_id = l.lead_id
    LEFT JOIN (SELECT pg.lead_id, bool_or(pg.drivers > 1) AS ambiguous FROM per_group pg GROUP BY pg.lead_id) g
      ON g.lead_id = l.lead_id
  ),
  best AS (
    SELECT DISTINCT ON (c.lead_id) c.*
    FROM cand c
    WHERE c.kept
    ORDER BY c.lead_id, c.rule_rank, c.name_similarity DESC, c.driver_id
  ),
  decided AS (
    SELECT l.*, s.kept_drivers, s.shared_phone_hits, s.weak_plate_hits, s.kept_rules, s.rejected,
           b.driver_id AS best_driver,
           b.rule AS best_rule, b.score AS best_score, b.confidence_level AS best_confidence,
           b.name_similarity AS best_similarity, b.hire_date AS best_hire_date, b.park_id AS best_park,
           b.in_target_park AS best_in_target_park,
           CASE
             WHEN s.kept_drivers = 0 THEN
               CASE
                 WHEN l.phone_norm IS NULL AND l.plate_norm IS NULL AND l.license_norm IS NULL THEN 'MISSING_KEYS'
                 WHEN s.weak_plate_hits > 0 THEN 'WEAK_MATCH_ONLY'
                 WHEN s.shared_phone_hits > 0 AND l.plate_norm IS NULL AND l.license_norm IS NULL THEN 'SHARED_KEY'
                 ELSE 'NO_CANDIDATES'
               END
             WHEN s.some_rule_ambiguous THEN 'AMBIGUOUS'
             WHEN s.kept_drivers > 1 THEN 'CONFLICT'
             ELSE 'MATCH'
           END AS decision
    FROM leads l
    JOIN summary s ON s.lead_id = l.lead_id
    LEFT JOIN best b ON b.lead_id = l.lead_id
  ),
  top_candidates AS (
    SELECT c.lead_id,
           jsonb_agg(jsonb_build_object(
             'driver_id', c.driver_id, 'park_id', c.park_id, 'rule', c.rule, 'score', c.score,
             'name_similarity', c.name_similarity, 'hire_date', c.hire_date, 'kept', c.kept,
             'reject_reason', c.reject_reason)
             || CASE WHEN c.name_veto IS NOT NULL THEN jsonb_build_object('name_veto', c.name_veto) ELSE '{}' END
             ORDER BY c.pos) AS candidates
    FROM (
      SELECT c.*, row_number() OVER (PARTITION BY c.lead_id ORDER BY c.kept DESC, c.rule_rank, c.name_similarity DESC, c.driver_id) AS pos
      FROM cand c
      -- only where they are kept: the leads not matched (a match keeps its evidence)
      JOIN decided d ON d.lead_id = c.lead_id AND d.decision <> 'MATCH'
    ) c
    WHERE c.pos <= 5
    GROUP BY c.lead_id
  )
  SELECT d.lead_id, d.lead_source_pk, d.decision,
         CASE WHEN d.decision = 'MATCH' THEN d.best_driver END,
         CASE WHEN d.decision = 'MATCH' THEN d.best_rule END,
         CASE WHEN d.decision = 'MATCH' THEN d.best_score END,
         CASE WHEN d.decision = 'MATCH' THEN d.best_confidence END,
         CASE WHEN d.decision = 'MATCH' THEN jsonb_build_object(
           'rules', d.kept_rules,
           'lead', jsonb_build_object('lead_id', d.lead_id, 'phone_norm', d.phone_norm, 'plate_norm', d.plate_norm,
                                      'name_norm', d.name_norm, 'lead_date', d.lead_date),
           'driver', jsonb_build_object('driver_id', i.driver_id, 'park_id', i.park_id, 'phone_norm', i.phone_norm,
                                        'plate_norm', i.plate_norm, 'license_norm', i.license_norm,
                                        'name_norm', i.name_norm, 'hire_date', i.hire_date),
           'name_similarity', d.best_similarity,
           'hire_window', (SELECT jsonb_build_array(d.lead_date - mp.hire_days_before_lead, d.lead_date + mp.hire_days_after_lead)
                           FROM canon.match_parameters mp),
           'target_park', d.best_in_target_park,
           'rejected', d.rejected)
         END,
         CASE WHEN d.decision <> 'MATCH' THEN jsonb_build_object(
           'phone_norm', d.phone_norm, 'plate_norm', d.plate_norm, 'license_norm', d.license_norm,
           'name_norm', d.name_norm, 'lead_date', d.lead_date,
           'missing', to_jsonb(array_remove(ARRAY[
             CASE WHEN d.phone_norm IS NULL THEN 'phone' END,
             CASE WHEN d.plate_norm IS NULL THEN 'plate' END,
             CASE WHEN d.name_norm IS NULL THEN 'name' END], NULL)),
           'shared_phone', d.shared_phone_hits > 0,
           'kept_drivers', d.kept_drivers)
         END,
         CASE WHEN d.decision <> 'MATCH' THEN coalesce(t.candidates, '[]'::jsonb) END
  FROM decided d
  LEFT JOIN top_candidates t ON t.lead_id = d.lead_id
  LEFT JOIN canon_internal.driver_index i ON i.driver_id = d.best_driver AND d.decision = 'MATCH'
$$;
COMMENT ON FUNCTION canon.lead_decisions(integer[]) IS 'Decision per lead row: MATCH with driver, rule, score and evidence, or AMBIGUOUS / CONFLICT / WEAK_MATCH_ONLY / SHARED_KEY / NO_CANDIDATES / MISSING_KEYS with details and up to 5 candidates (details and candidates NULL for a match).';
