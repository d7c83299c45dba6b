-- canon.fs_rare_name_keys: the blocking keys of a lead's name in the probabilistic tier's
-- name block: the phonetic keys (canon.name_phonetic) of its tokens of 3 letters or more
-- typed by at most p_rare_max drivers (canon.fs_rare_token_max), or by none (a typo of a rare
-- name); none when p_rare_max is below 1. The one rarity rule of canon.fs_blocked_pairs and
-- canon.mark_retries_due. Plain SQL without SET or STRICT: inlined.
CREATE OR REPLACE FUNCTION canon.fs_rare_name_keys(p_name_norm text, p_rare_max numeric)
RETURNS SETOF text
LANGUAGE sql
STABLE
AS $$
  SELECT DISTINCT canon.name_phonetic(t.token)
  FROM pg_catalog.unnest(pg_catalog.string_to_array(p_name_norm, ' ')) AS t (token)
  LEFT JOIN canon_internal.name_token_stats s ON s.token = t.token
  WHERE pg_catalog.length(t.token) >= 3
    AND p_rare_max >= 1
    AND coalesce(s.as_given + s.as_surname, 0) <= p_rare_max
$$;
COMMENT ON FUNCTION canon.fs_rare_name_keys(text, numeric) IS
  'Probabilistic tier: phonetic keys of the rare tokens (3+ letters, typed by at most p_rare_max drivers or by none) of a normalised name; none when p_rare_max < 1.';
