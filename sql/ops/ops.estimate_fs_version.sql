-- ops.estimate_fs_version: a person estimates the m of the probabilistic tier from the leads
-- it has seen, by expectation-maximisation (canon.estimate_fs_m, no labels), from psql:
--   SELECT * FROM ops.estimate_fs_version('EM on the leads of March');
-- The leads: p_lead_ids, or every lead row the rules left NO_CANDIDATES or WEAK_MATCH_ONLY
-- (the tier's leads: also those it linked or sent to review), one row per lead key. Writes
-- the estimate as a new, INACTIVE version of canon.match_fs_versions / match_fs_levels: m
-- from EM, u, prior, bands and guards copied from the active version, the note and the EM's
-- figures in notes. Returns per level the new m beside the active one's, so a person
-- compares and activates it deliberately (docs/matching.md, "Where the m and u come from");
-- activating marks every OPEN unmatched lead due. Changes nothing of the active version nor
-- of any lead. Refuses a blank note (22023) and too few pairs (CL026).
CREATE OR REPLACE FUNCTION ops.estimate_fs_version(
  p_note text,
  p_lead_ids integer[] DEFAULT NULL,
  p_max_iterations integer DEFAULT 100,
  p_epsilon numeric DEFAULT 0.00001,
  p_min_pairs integer DEFAULT 1000)
RETURNS TABLE (
  version integer,
  comparison text,
  level text,
  m numeric,
  active_m numeric,
  u numeric,
  u_kind text,
  occurrences bigint,
  in_matches numeric,
  pairs integer,
  leads integer,
  iterations integer,
  converged boolean
)
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '30s'
SET client_min_messages = warning
AS $$
DECLARE
  v_active integer;
  v_new integer;
  v_t timestamptz := clock_timestamp();
  v_ms numeric;
  r record;
BEGIN
  PERFORM canon.require_note(p_note, 'say what the estimate is for (the period, the reason)');
  SELECT fv.version INTO v_active FROM canon.match_fs_versions fv WHERE fv.active;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'ops.estimate_fs_version: no active version of canon.match_fs_versions to start from' USING ERRCODE = 'P0002';
  END IF;

  -- THE ESTIMATE --------------------------------------------------------------------------
  DROP TABLE IF EXISTS pg_temp.fs_em_estimate;
  CREATE TEMP TABLE fs_em_estimate ON COMMIT DROP AS
  SELECT e.*
  FROM canon.estimate_fs_m(
         coalesce(p_lead_ids, ARRAY(
           SELECT min(k.lead_id)
           FROM (SELECT u.source_pk FROM canon.identity_unmatched u
                 WHERE u.source_table = 'module_ct_cabinet_leads' AND u.reason_code IN ('NO_CANDIDATES', 'WEAK_MATCH_ONLY', 'PROBABLE_MATCH')
                 UNION
                 SELECT l.source_pk FROM canon.identity_links l
                 WHERE l.source_table = 'module_ct_cabinet_leads' AND l.match_rule = 'R4_PROBABILISTIC') t
           JOIN canon_internal.lead_keys k ON k.lead_source_pk = t.source_pk
           GROUP BY t.source_pk)),
         v_active, p_max_iterations, p_epsilon, p_min_pairs) e;
  v_ms := round((extract(epoch FROM clock_timestamp() - v_t) * 1000)::numeric);
  SELECT e.pairs, e.leads, e.matches, e.iterations, e.converged, e.max_change INTO r FROM pg_temp.fs_em_estimate e LIMIT 1;

  -- THE NEW VERSION (inactive) --------------------------------------------------------------
  LOCK TABLE canon.match_fs_versions IN SHARE ROW EXCLUSIVE MODE;
  SELECT max(fv.version) + 1 INTO v_new FROM canon.match_fs_versions fv;
  INSERT INTO canon.match_fs_versions (version, active, prior_match_share, link_probability_min, review_probability_min,
                                       margin_bits_min, rare_token_max_share, name_block_max_drivers, token_share_min, notes)
  SELECT v_new, false, fv.prior_match_share, fv.link_probability_min, fv.review_probability_min,
         fv.margin_bits_min, fv.rare_token_max_share, fv.name_block_max_drivers, fv.token_share_min,
         format('%s. m by EM (ops.estimate_fs_version, %s ms): %s pairs of %s leads, %s expected matches, %s iterations, %s (last change %s); u, prior, bands and guards of version %s.',
                btrim(p_note), v_ms, r.pairs, r.leads, r.matches, r.iterations,
                CASE WHEN r.converged THEN 'converged' ELSE 'NOT converged' END, r.max_change, v_active)
  FROM canon.match_fs_versions fv
  WHERE fv.version = v_active;
  INSERT INTO canon.match_fs_levels (version, comparison, level, m, u, u_kind, note)
  SELECT v_new, l.comparison, l.level, greatest(e.m, 0.0000001), l.u, l.u_kind, l.note
  FROM canon.match_fs_levels l
  JOIN pg_temp.fs_em_estimate e ON e.comparison = l.comparison AND e.level = l.level
  WHERE l.version = v_active;

  RETURN QUERY
  SELECT v_new, e.comparison, e.level, greatest(e.m, 0.0000001), e.m_start, e.u, e.u_kind, e.occurrences, e.in_matches,
         e.pairs, e.leads, e.iterations, e.converged
  FROM pg_temp.fs_em_estimate e
  ORDER BY e.comparison, e.m_start DESC, e.level;
END
$$;
COMMENT ON FUNCTION ops.estimate_fs_version(text, integer[], integer, numeric, integer) IS
  'Operator: m of the probabilistic tier by EM (canon.estimate_fs_m) on the tier''s leads (or p_lead_ids), written as a new INACTIVE version (u, prior, bands and guards of the active one; the note and the EM figures in notes). Returns per level the new m beside the active m. Activate it by hand. Refuses a blank note (22023), too few pairs (CL026).';
