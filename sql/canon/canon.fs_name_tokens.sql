-- canon.fs_name_tokens: the name comparison of the probabilistic tier for one pair: each
-- token's level (canon.name_token_levels) with its weight in bits, log2(m / u) of the
-- version's canon.match_fs_levels, where u of an agreeing token is its partner's share of
-- the drivers (canon_internal.name_token_stats: rarity weights, floor p_token_share_min).
-- Called per candidate pair by canon.probabilistic_candidates. Plain SQL without SET: inlined.
CREATE OR REPLACE FUNCTION canon.fs_name_tokens(p_lead text[], p_driver_name text, p_version integer, p_drivers bigint, p_token_share_min numeric)
RETURNS TABLE (side text, token text, partner text, level text, share double precision, count bigint, w double precision)
LANGUAGE sql
STABLE
AS $$
  SELECT nl.side, nl.token, nl.partner, nl.level, sh.share, coalesce(s.as_given + s.as_surname, 0),
         -- in double precision: a numeric logarithm costs more than the rest of the pair
         pg_catalog.ln(l.m::float8 / CASE l.u_kind WHEN 'TOKEN_SHARE' THEN LEAST(1, l.u::float8 * GREATEST(sh.share, p_token_share_min::float8))
                                          ELSE l.u::float8 END) / pg_catalog.ln(2::float8)
  FROM canon.name_token_levels(p_lead, pg_catalog.string_to_array(p_driver_name, ' ')) nl
  LEFT JOIN canon_internal.name_token_stats s ON s.token = nl.partner
  CROSS JOIN LATERAL (SELECT LEAST(1::float8, coalesce(s.as_given + s.as_surname, 0)::float8 / GREATEST(p_drivers, 1)) AS share) sh
  JOIN canon.match_fs_levels l
    ON l.version = p_version AND l.level = nl.level
   AND l.comparison = CASE nl.side WHEN 'LEAD' THEN 'NAME_TOKEN' ELSE 'NAME_DRIVER_TOKEN' END
$$;
COMMENT ON FUNCTION canon.fs_name_tokens(text[], text, integer, bigint, numeric) IS
  'Probabilistic tier, one pair''s names: per token side, token, partner, level, partner''s share of drivers and count, weight in bits (log2 m/u of the version''s canon.match_fs_levels; u of an agreeing token = its share).';
