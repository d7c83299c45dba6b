-- canon.key_chunks: the keys of an array in sorted chunks of at most p_size, so that a GIN
-- index is probed a chunk at a time: one scan with thousands of keys checks every key for
-- each row it finds, and a scan per key pays a rescan each (figures in
-- canon.mark_tier_retries_due, its caller). Plain SQL without SET or STRICT: inlined.
CREATE OR REPLACE FUNCTION canon.key_chunks(p_keys text[], p_size integer)
RETURNS SETOF text[]
LANGUAGE sql
IMMUTABLE
AS $$
  SELECT pg_catalog.array_agg(x.key ORDER BY x.key)
  FROM (SELECT k.key, (pg_catalog.row_number() OVER (ORDER BY k.key) - 1) / p_size AS chunk
        FROM pg_catalog.unnest(p_keys) AS k (key)) x
  GROUP BY x.chunk
$$;
COMMENT ON FUNCTION canon.key_chunks(text[], integer) IS
  'The keys of an array in sorted chunks of at most p_size (a GIN index probed a chunk at a time).';
