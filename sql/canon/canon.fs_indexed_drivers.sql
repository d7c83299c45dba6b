-- canon.fs_indexed_drivers: N, the number of indexed drivers the probabilistic tier weighs
-- against (the prior, the token shares, the rarity threshold): the planner's count of
-- canon_internal.driver_index from 100,000 rows up (close enough, and no pass), else counted.
-- Read by canon.probabilistic_candidates and canon.fs_rare_token_max.
CREATE OR REPLACE FUNCTION canon.fs_indexed_drivers()
RETURNS bigint
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT CASE WHEN c.reltuples >= 100000 THEN c.reltuples::bigint
              ELSE (SELECT count(*) FROM canon_internal.driver_index) END
  FROM pg_class c
  WHERE c.oid = 'canon_internal.driver_index'::regclass
$$;
COMMENT ON FUNCTION canon.fs_indexed_drivers() IS
  'Probabilistic tier: the number of indexed drivers N (planner''s count from 100,000 rows up, else counted).';
