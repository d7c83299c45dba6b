-- ops.preview_links: what the current matching decisions would do to the leads of a scope,
-- against what is stored, without writing: `cabinet-leads reconcile --preview`, or in psql
--   SELECT * FROM ops.preview_links(p_days_back => 30);
-- Every lead key of the scope (lead_date >= business today - p_days_back, its first row
-- standing for its duplicates, as canon.select_lead_batch takes it) is decided as a run
-- decides it: canon.lead_decisions, then canon.probabilistic_decisions for the leads the
-- rules leave NO_CANDIDATES or WEAK_MATCH_ONLY (labels and deleted drivers are theirs to
-- apply). A person's decision is never re-decided: a manual link (ops.resolve_lead) and an
-- IGNORED lead are left out. One row per lead whose link would differ: add (a link where
-- there is none), remove (a stored link the decisions would not make), change (another
-- person's driver, rule, score or confidence). a_run_would_apply says whether the runs of
-- this scope would make it: a run links the leads it evaluates (never evaluated, or OPEN
-- and due for a retry) and never removes or changes a stored link; with p_only_limbo a
-- NO_DRIVER lead's person gets the decided driver when that driver has no person. Leads
-- and drivers as the last run keyed them (a run refreshes both first). Set-based; one
-- pass of the decision functions over the scope. SECURITY DEFINER: a reader may call it
-- (it only reads; a fixed search_path, every name qualified).
CREATE OR REPLACE FUNCTION ops.preview_links(p_days_back integer DEFAULT 30, p_only_limbo boolean DEFAULT false)
RETURNS TABLE (
  lead_id integer,
  lead_source_pk text,
  lead_date date,
  change_kind text,
  a_run_would_apply boolean,
  stored_state text,
  stored_reason_code text,
  stored_driver_id text,
  stored_match_rule text,
  stored_match_score numeric,
  stored_confidence_level text,
  stored_fs_version integer,
  proposed_driver_id text,
  proposed_match_rule text,
  proposed_match_score numeric,
  proposed_confidence_level text,
  proposed_fs_version integer,
  proposed_reason_code text,
  settled_claims text,
  why text
)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
  v_scope_from date;
BEGIN
  IF p_days_back IS NULL OR p_days_back < 0 OR p_days_back > 36500 THEN
    RAISE EXCEPTION 'invalid days_back %: expected an integer from 0 to 36500', coalesce(p_days_back::text, 'NULL')
      USING ERRCODE = '22023';
  END IF;
  IF p_only_limbo IS NULL THEN
    RAISE EXCEPTION 'invalid only_limbo NULL: expected true or false' USING ERRCODE = '22023';
  END IF;
  v_scope_from := canon.business_today() - p_days_back;

  RETURN QUERY
  -- SCOPE: one row per lead key, its first row of the scope (as a run's batch takes it).
  WITH scope AS MATERIALIZED (
    SELECT k.lead_source_pk, min(k.lead_id) AS lead_id, (array_agg(k.lead_date ORDER BY k.lead_id))[1] AS lead_date
    FROM canon_internal.lead_keys k
    WHERE k.lead_date >= v_scope_from
    GROUP BY k.lead_source_pk
  ),
  -- STORED: the lead's link (its person's driver) or unmatched row.
  stored AS MATERIALIZED (
    SELECT s.*, l.person_key, l.match_rule, l.match_score, l.confidence_level,
           CASE WHEN l.match_rule = 'R4_PROBABILISTIC' THEN (l.evidence->>'fs_version')::integer END AS fs_version,
           (l.match_rule = 'MANUAL_RESOLUTION' OR l.evidence->>'decided_by' = 'manual') AS manual,
           u.status, u.reason_code, u.retry_due, pd.driver_id
    FROM scope s
    LEFT JOIN canon.identity_links l
      ON l.source_table = 'module_ct_cabinet_leads' AND l.source_pk = s.lead_source_pk
    LEFT JOIN canon.identity_unmatched u
      ON u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = s.lead_source_pk
    LEFT JOIN canon.v_person_driver pd ON pd.person_key = l.person_key
  ),
  -- A person decided these: a manual link, an IGNORED lead. Never re-decided.
  considered AS MATERIALIZED (
    SELECT st.* FROM stored st
    WHERE NOT coalesce(st.manual, false) AND st.status IS DISTINCT FROM 'IGNORED'
  ),
  -- DECISIONS: the rules, then the probabilistic tier on what they leave behind.
  rules AS MATERIALIZED (
    SELECT d.lead_id, d.decision, d.driver_id, d.match_rule, d.match_score, d.confidence_level
    FROM canon.lead_decisions(ARRAY(SELECT c.lead_id FROM considered c)) d
  ),
  fs AS MATERIALIZED (
    SELECT f.lead_id, f.outcome, f.driver_id, f.probability, f.fs_version
    FROM canon.probabilistic_decisions(ARRAY(
           SELECT r.lead_id FROM rules r WHERE r.decision IN ('NO_CANDIDATES', 'WEAK_MATCH_ONLY'))) f
  ),
  -- (score and confidence of a tier link exactly as canon.link_probabilistic writes them)
  proposed AS (
    SELECT c.*,
           CASE WHEN r.decision = 'MATCH' THEN r.driver_id WHEN f.outcome = 'LINK' THEN f.driver_id END AS p_driver,
           CASE WHEN r.decision = 'MATCH' THEN r.match_rule WHEN f.outcome = 'LINK' THEN 'R4_PROBABILISTIC' END AS p_rule,
           (CASE WHEN r.decision = 'MATCH' THEN r.match_score WHEN f.outcome = 'LINK' THEN round(f.probability * 100, 2) END)::numeric(5,2) AS p_score,
           CASE WHEN r.decision = 'MATCH' THEN r.confidence_level
                WHEN f.outcome = 'LINK' THEN CASE WHEN f.probability >= 0.9999 THEN 'HIGH' ELSE 'MEDIUM' END END AS p_confidence,
           f.fs_version AS p_fs_version,
           CASE WHEN r.decision = 'MATCH' OR f.outcome = 'LINK' THEN NULL
                WHEN f.outcome = 'REVIEW' THEN 'PROBABLE_MATCH' ELSE r.decision END AS p_reason
    FROM considered c
    JOIN rules r ON r.lead_id = c.lead_id
    LEFT JOIN fs f ON f.lead_id = c.lead_id
  ),
  compared AS (
    SELECT p.*, dp.person_key AS p_person,
           CASE
             WHEN p.person_key IS NULL AND p.p_driver IS NOT NULL THEN 'add'
             WHEN p.person_key IS NOT NULL AND p.p_driver IS NULL THEN 'remove'
             -- the same person (any of its drivers) by the same rule, score and confidence: no change
             WHEN p.person_key IS NOT NULL
                  AND (dp.person_key IS DISTINCT FROM p.person_key OR p.p_rule IS DISTINCT FROM p.match_rule
                       OR p.p_score IS DISTINCT FROM p.match_score OR p.p_confidence IS DISTINCT FROM p.confidence_level) THEN 'change'
           END AS kind
    FROM proposed p
    LEFT JOIN canon.identity_links dp ON dp.source_table = 'drivers' AND dp.source_pk = p.p_driver
  ),
  judged AS (
    SELECT c.*,
           -- the NO_DRIVER repair of an only-limbo run: the person gets a rules' driver that has none
           (c.kind = 'change' AND c.driver_id IS NULL AND c.p_person IS NULL AND c.p_rule <> 'R4_PROBABILISTIC') AS no_driver_repair,
           CASE WHEN c.kind = 'add' THEN c.status IS NULL OR c.status = 'RESOLVED' OR c.retry_due
                ELSE p_only_limbo AND c.kind = 'change' AND c.driver_id IS NULL AND c.p_person IS NULL AND c.p_rule <> 'R4_PROBABILISTIC'
           END AS applies,
           st.settled
    FROM compared c
    -- money paid or rejected on the lead: a person must act before its link can go
    LEFT JOIN LATERAL (
      SELECT string_agg(format('M%s %s', cl.milestone, cl.status), ', ' ORDER BY cl.milestone) AS settled
      FROM canon.claims_yango_cabinet_14d cl
      WHERE cl.lead_source_pk = c.lead_source_pk AND cl.status IN ('paid', 'rejected')
    ) st ON true
    WHERE c.kind IS NOT NULL
  )
  SELECT j.lead_id, j.lead_source_pk, j.lead_date, j.kind, j.applies,
         CASE WHEN j.person_key IS NOT NULL THEN 'LINKED' WHEN j.status = 'OPEN' THEN 'OPEN' ELSE 'NOT_EVALUATED' END,
         CASE WHEN j.person_key IS NULL AND j.status = 'OPEN' THEN j.reason_code END,
         j.driver_id, j.match_rule, j.match_score, j.confidence_level, j.fs_version,
         j.p_driver, j.p_rule, j.p_score, j.p_confidence, j.p_fs_version, j.p_reason, j.settled,
         CASE j.kind
           WHEN 'add' THEN
             CASE WHEN j.status = 'OPEN' AND j.retry_due THEN format('OPEN (%s), due for a retry: the next run links it', j.reason_code)
                  WHEN j.status = 'OPEN' THEN format('OPEN (%s), not due for a retry: runs leave it until a driver sharing its phone, plate or licence, a matching rule or parameter, or the lead row changes', j.reason_code)
                  ELSE 'not evaluated yet: the next run links it' END
           WHEN 'remove' THEN format('linked by %s (%s); the decisions now leave it %s', j.match_rule, j.match_score, j.p_reason)
           ELSE concat_ws(', ',
                  CASE WHEN j.p_person IS DISTINCT FROM j.person_key THEN format('driver %s → %s', coalesce(j.driver_id, 'none'), j.p_driver) END,
                  CASE WHEN j.p_rule IS DISTINCT FROM j.match_rule THEN format('rule %s → %s', j.match_rule, j.p_rule) END,
                  CASE WHEN j.p_score IS DISTINCT FROM j.match_score THEN format('score %s → %s', j.match_score, j.p_score) END,
                  CASE WHEN j.p_confidence IS DISTINCT FROM j.confidence_level THEN format('confidence %s → %s', j.confidence_level, j.p_confidence) END)
         END
         || CASE
              WHEN j.kind = 'add' THEN ''
              WHEN j.applies THEN ': its person has no driver (NO_DRIVER), the next run (only-limbo) gives it this driver; the lead''s link stays as it is'
              WHEN j.no_driver_repair THEN ': its person has no driver (NO_DRIVER), a run with only-limbo gives it this driver; the lead''s link stays as it is'
              ELSE ': runs keep stored links (unlink-lead, and the next run decides it again)'
                   || CASE WHEN j.settled IS NOT NULL THEN format('; settled claims (%s): unlink-lead refuses until finance changes them', j.settled) ELSE '' END
            END
  FROM judged j
  ORDER BY j.kind, j.applies DESC, j.lead_date DESC, j.lead_source_pk;
END
$$;
COMMENT ON FUNCTION ops.preview_links(integer, boolean) IS
  'Preview of the current matching decisions on a scope (lead_date >= business today - p_days_back), writing nothing: one row per lead whose link would be added, removed or changed against what is stored, with stored and proposed driver, rule, score, confidence and fs_version, a_run_would_apply (runs only add links to the leads they evaluate; they never remove or change one) and why. Manual links and IGNORED leads are left out. SECURITY DEFINER: readers may call it.';
