-- canon.estimate_fs_m: the m probabilities of the probabilistic tier estimated without labels,
-- by expectation-maximisation on the pairs the tier can link for the given lead rows
-- (Fellegi-Sunter, as Splink does; docs/matching.md, "Where the m and u come from"). The pairs
-- and their levels are the tier's own (canon.fs_pair_levels); u and the prior stay the start
-- version's. From the start version's m, each iteration is two set-based statements over all
-- pairs at once: E-step, every pair's match probability as the tier computes it with the
-- current m; M-step, a level's m = the matches' expected count at the level, plus half a pair,
-- over their expected count at the comparison (NAME_TOKEN per lead token, NAME_DRIVER_TOKEN
-- per driver token), so a level no match shows gets a small m, not 0. Stops after
-- p_max_iterations or when no m moves by p_epsilon. A comparison no pair shows keeps its
-- start m. Refuses (CL026) fewer than p_min_pairs pairs. Writes nothing (temporary tables
-- only); ops.estimate_fs_version writes a version from it.
CREATE OR REPLACE FUNCTION canon.estimate_fs_m(
  p_lead_ids integer[],
  p_version integer DEFAULT NULL,
  p_max_iterations integer DEFAULT 100,
  p_epsilon numeric DEFAULT 0.00001,
  p_min_pairs integer DEFAULT 1000)
RETURNS TABLE (
  comparison text,
  level text,
  m numeric,
  m_start numeric,
  u numeric,
  u_kind text,
  occurrences bigint,
  in_matches numeric,
  pairs integer,
  leads integer,
  matches numeric,
  iterations integer,
  max_change numeric,
  converged boolean
)
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET client_min_messages = warning
SET jit = off
AS $$
DECLARE
  v_version integer;
  v_prior_share float8;
  v_pairs integer;
  v_leads integer;
  v_prior_bits float8;
  v_matches float8;
  v_change float8;
  v_iter integer := 0;
BEGIN
  -- GUARD ------------------------------------------------------------------------------
  IF p_max_iterations IS NULL OR p_max_iterations < 1 THEN
    RAISE EXCEPTION 'estimate_fs_m: p_max_iterations must be 1 or more, got %', coalesce(p_max_iterations::text, 'NULL') USING ERRCODE = '22023';
  END IF;
  IF p_epsilon IS NULL OR p_epsilon <= 0 THEN
    RAISE EXCEPTION 'estimate_fs_m: p_epsilon must be above 0, got %', coalesce(p_epsilon::text, 'NULL') USING ERRCODE = '22023';
  END IF;
  SELECT fv.version, fv.prior_match_share INTO v_version, v_prior_share
  FROM canon.match_fs_versions fv
  WHERE fv.version = p_version OR (p_version IS NULL AND fv.active);
  IF NOT FOUND THEN
    RAISE EXCEPTION 'estimate_fs_m: no parameter version %', coalesce(p_version::text, '(no active version)') USING ERRCODE = 'P0002';
  END IF;

  -- THE PAIRS: one row per pair and level ------------------------------------------------
  DROP TABLE IF EXISTS pg_temp.fs_em_levels;
  CREATE TEMP TABLE fs_em_levels ON COMMIT DROP AS
  SELECT dense_rank() OVER (ORDER BY x.lead_id, x.driver_id)::integer AS pair_id, x.*
  FROM canon.fs_pair_levels(p_lead_ids, v_version) x;
  SELECT count(DISTINCT l.pair_id), count(DISTINCT l.lead_id) INTO v_pairs, v_leads FROM pg_temp.fs_em_levels l;
  IF v_pairs < coalesce(p_min_pairs, 0) THEN
    RAISE EXCEPTION 'estimate_fs_m: too few candidate pairs to estimate m: % pairs from % of the % lead rows given, at least % needed (p_min_pairs)',
      v_pairs, v_leads, coalesce(cardinality(p_lead_ids), 0), p_min_pairs
      USING ERRCODE = 'CL026', HINT = 'estimate on more leads (the tier''s leads of a longer period) or keep the m set by hand';
  END IF;
  CREATE INDEX ON pg_temp.fs_em_levels (pair_id);
  ANALYZE pg_temp.fs_em_levels;

  -- per pair: the prior (the version's, as the tier) plus the fixed -log2 u of its levels
  DROP TABLE IF EXISTS pg_temp.fs_em_pairs;
  CREATE TEMP TABLE fs_em_pairs ON COMMIT DROP AS
  SELECT l.pair_id,
         ln(v_prior_share / greatest(max(l.indexed_drivers), 1) / (1 - v_prior_share / greatest(max(l.indexed_drivers), 1))) / ln(2::float8)
           + sum(l.u_bits) AS fixed_bits
  FROM pg_temp.fs_em_levels l
  GROUP BY l.pair_id;

  -- the m being estimated, from the start version's; PARTNERED is counted, not weighed
  DROP TABLE IF EXISTS pg_temp.fs_em_m;
  CREATE TEMP TABLE fs_em_m ON COMMIT DROP AS
  SELECT l.comparison, l.level, l.m::float8 AS m, l.m AS m_start, l.u, l.u_kind, true AS weighed, NULL::float8 AS in_matches
  FROM canon.match_fs_levels l WHERE l.version = v_version
  UNION ALL
  SELECT 'NAME_DRIVER_TOKEN', 'PARTNERED', NULL, NULL, NULL, NULL, false, NULL;

  -- ITERATIONS: the E-step and the M-step in one statement --------------------------------
  LOOP
    v_iter := v_iter + 1;
    WITH posterior AS MATERIALIZED (
      SELECT p.pair_id,
             1 / (1 + power(2::float8, -greatest(least(p.fixed_bits + coalesce(s.m_bits, 0), 60), -60))) AS w
      FROM pg_temp.fs_em_pairs p
      LEFT JOIN (SELECT l.pair_id, sum(l.n * ln(cm.m)) / ln(2::float8) AS m_bits
                 FROM pg_temp.fs_em_levels l
                 JOIN pg_temp.fs_em_m cm ON cm.comparison = l.comparison AND cm.level = l.level AND cm.weighed
                 GROUP BY l.pair_id) s ON s.pair_id = p.pair_id
    ),
    expected AS (
      SELECT cm.comparison, cm.level, cm.m AS m_old, coalesce(x.in_matches, 0) AS in_matches,
             sum(coalesce(x.in_matches, 0)) OVER (PARTITION BY cm.comparison) AS comparison_total,
             count(*) OVER (PARTITION BY cm.comparison) AS comparison_levels,
             bool_or(x.in_matches IS NOT NULL) OVER (PARTITION BY cm.comparison) AS comparison_seen
      FROM pg_temp.fs_em_m cm
      LEFT JOIN (SELECT l.comparison, l.level, sum(po.w * l.n) AS in_matches
                 FROM pg_temp.fs_em_levels l
                 JOIN posterior po ON po.pair_id = l.pair_id
                 GROUP BY l.comparison, l.level) x ON x.comparison = cm.comparison AND x.level = cm.level
    ),
    moved AS (
      UPDATE pg_temp.fs_em_m cm
      SET m = CASE WHEN e.comparison_seen THEN (e.in_matches + 0.5) / (e.comparison_total + 0.5 * e.comparison_levels) ELSE e.m_old END,
          in_matches = e.in_matches
      FROM expected e
      WHERE e.comparison = cm.comparison AND e.level = cm.level
      RETURNING abs(cm.m - e.m_old) AS change
    )
    SELECT (SELECT max(mv.change) FROM moved mv), (SELECT sum(po.w) FROM posterior po)
    INTO v_change, v_matches;
    EXIT WHEN coalesce(v_change, 0) < p_epsilon OR v_iter >= p_max_iterations;
  END LOOP;

  RETURN QUERY
  SELECT cm.comparison, cm.level, round(cm.m::numeric, 7), cm.m_start, cm.u, cm.u_kind,
         coalesce((SELECT sum(l.n) FROM pg_temp.fs_em_levels l WHERE l.comparison = cm.comparison AND l.level = cm.level), 0)::bigint,
         round(cm.in_matches::numeric, 1), v_pairs, v_leads, round(v_matches::numeric, 1), v_iter,
         round(coalesce(v_change, 0)::numeric, 7), coalesce(v_change, 0) < p_epsilon
  FROM pg_temp.fs_em_m cm
  WHERE cm.weighed
  ORDER BY cm.comparison, cm.m_start DESC, cm.level;
END
$$;
COMMENT ON FUNCTION canon.estimate_fs_m(integer[], integer, integer, numeric, integer) IS
  'm of the probabilistic tier by expectation-maximisation (no labels) on the pairs the tier can link for the given lead rows (canon.fs_pair_levels): per level m, start m, u (fixed), occurrences, expected count among matches; pairs, leads, expected matches, iterations, last change, converged. Start, u and prior: p_version (NULL: the active one). Refuses fewer than p_min_pairs pairs (CL026). Writes nothing.';
