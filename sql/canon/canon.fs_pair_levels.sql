-- canon.fs_pair_levels: the comparison vectors of the pairs the probabilistic tier can link,
-- for the given lead rows, as canon.estimate_fs_m reads them: the tier's blocked candidate
-- pairs (canon.probabilistic_candidates) less those it never links (a deleted driver, a
-- "not this driver" label, relatives by the veto: they agree on surnames and car, a pattern
-- no m/u model tells from a match), one row per pair and level with how often the pair shows
-- it (name tokens: once per token) and the fixed part of its weight, -log2 u, as the tier
-- reads u for p_version (PER_DRIVER over the indexed drivers; an agreeing token's u from its
-- share: the token's weight minus log2 m). PARTNERED: the driver tokens the lead gives (no
-- weight; with MISSING, the count MISSING's m is a share of).
CREATE OR REPLACE FUNCTION canon.fs_pair_levels(p_lead_ids integer[], p_version integer)
RETURNS TABLE (lead_id integer, driver_id text, indexed_drivers bigint, comparison text, level text, n integer, u_bits double precision)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
  WITH v AS (
    SELECT fv.version, fv.token_share_min FROM canon.match_fs_versions fv WHERE fv.version = p_version
  ),
  pairs AS MATERIALIZED (
    SELECT c.lead_id, c.driver_id, c.plate_level, c.hire_level, c.park_level, c.indexed_drivers,
           string_to_array(k.name_norm, ' ') AS lt, d.name_norm AS driver_name
    FROM canon.probabilistic_candidates(p_lead_ids) c
    JOIN canon_internal.lead_keys k ON k.lead_id = c.lead_id
    JOIN canon_internal.driver_index d ON d.driver_id = c.driver_id
    WHERE NOT c.driver_deleted
      AND NOT EXISTS (SELECT 1 FROM canon.lead_driver_labels lb WHERE lb.lead_source_pk = c.lead_source_pk AND lb.driver_id = c.driver_id)
      AND canon.name_veto_of(c.lead_tokens_aligned, c.lead_id, NULL, string_to_array(d.name_norm, ' '), NULL, c.driver_id) IS NULL
  ),
  fields AS (
    SELECT p.lead_id, p.driver_id, p.indexed_drivers, l.comparison, l.level,
           -ln(CASE WHEN l.u_kind = 'PER_DRIVER' THEN least(1, l.u::float8 / greatest(p.indexed_drivers, 1))
                    ELSE l.u::float8 END) / ln(2::float8) AS u_bits
    FROM pairs p
    CROSS JOIN v
    CROSS JOIN LATERAL (VALUES ('PLATE', p.plate_level), ('HIRE_DATE', p.hire_level), ('PARK', p.park_level)) f (comparison, level)
    JOIN canon.match_fs_levels l ON l.version = v.version AND l.comparison = f.comparison AND l.level = f.level
  ),
  tokens AS (
    SELECT p.lead_id, p.driver_id, p.indexed_drivers, l.comparison, t.level,
           t.w - ln(l.m::float8) / ln(2::float8) AS u_bits
    FROM pairs p
    CROSS JOIN v
    CROSS JOIN LATERAL canon.fs_name_tokens(p.lt, p.driver_name, v.version, p.indexed_drivers, v.token_share_min) t
    JOIN canon.match_fs_levels l ON l.version = v.version AND l.level = t.level
     AND l.comparison = CASE t.side WHEN 'LEAD' THEN 'NAME_TOKEN' ELSE 'NAME_DRIVER_TOKEN' END
  ),
  -- two-letter fragments left out, as canon.name_token_levels does
  partnered AS (
    SELECT p.lead_id, p.driver_id, p.indexed_drivers, 'NAME_DRIVER_TOKEN' AS comparison, 'PARTNERED' AS level,
           dt.n - coalesce(mi.n, 0) AS n
    FROM pairs p
    CROSS JOIN LATERAL (SELECT count(*) AS n FROM unnest(string_to_array(p.driver_name, ' ')) AS x (token) WHERE length(x.token) <> 2) dt
    LEFT JOIN (SELECT t.lead_id, t.driver_id, count(*) AS n FROM tokens t WHERE t.level = 'MISSING' GROUP BY t.lead_id, t.driver_id) mi
      ON mi.lead_id = p.lead_id AND mi.driver_id = p.driver_id
  )
  SELECT x.lead_id, x.driver_id, x.indexed_drivers, x.comparison, x.level, count(*)::integer, sum(x.u_bits)
  FROM (SELECT * FROM fields UNION ALL SELECT * FROM tokens) x
  GROUP BY x.lead_id, x.driver_id, x.indexed_drivers, x.comparison, x.level
  UNION ALL
  SELECT pt.lead_id, pt.driver_id, pt.indexed_drivers, pt.comparison, pt.level, pt.n::integer, 0
  FROM partnered pt
  WHERE pt.n > 0
$$;
COMMENT ON FUNCTION canon.fs_pair_levels(integer[], integer) IS
  'Probabilistic tier, for canon.estimate_fs_m: per pair the tier can link (blocked, not vetoed, not labelled, driver present) of the given lead rows and per level, its count and -log2 u as the tier reads it for p_version; PARTNERED counts the driver tokens the lead gives.';
