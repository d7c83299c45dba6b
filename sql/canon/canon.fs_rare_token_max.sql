-- canon.fs_rare_token_max: the most drivers a name token may be typed by and still be rare
-- in the probabilistic tier: the active version's rare_token_max_share of the indexed
-- drivers (canon.fs_indexed_drivers). Below 1 the base is too small to tell a rare name
-- (canon.fs_rare_name_keys then gives none). Read by canon.fs_blocked_pairs (the tier's name
-- block) and canon.mark_retries_due (which leads a changed driver makes due).
CREATE OR REPLACE FUNCTION canon.fs_rare_token_max()
RETURNS numeric
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT fv.rare_token_max_share * canon.fs_indexed_drivers()
  FROM canon.match_fs_versions fv
  WHERE fv.active
$$;
COMMENT ON FUNCTION canon.fs_rare_token_max() IS
  'Probabilistic tier: a name token typed by at most this many drivers is rare (active version''s rare_token_max_share x indexed drivers; below 1: none is).';
