-- canon.xmin_age_limit: the largest age(xmin) of a row version written by a transaction
-- not older than p_seen (the oldest transaction in progress when a table was last read,
-- canon_internal.source_scan_state.seen_xmin): `age(t.xmin) <= limit` selects the row versions that
-- read may not have seen, whatever their id, page or timestamp, with one builtin call per
-- row. Subtransactions are covered (their xids follow their parent's), which a test by
-- pg_visible_in_snapshot would get wrong. NULL (read every row) when p_seen is NULL or so
-- old that 32-bit ages no longer order it; rows older than the 32-bit horizon may be
-- read again, never skipped.
CREATE OR REPLACE FUNCTION canon.xmin_age_limit(p_seen xid8)
RETURNS integer
LANGUAGE sql
STABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT CASE
           WHEN p_seen IS NULL THEN NULL
           WHEN pg_snapshot_xmax(pg_current_snapshot())::text::bigint - p_seen::text::bigint > 1000000000 THEN NULL
           ELSE age((p_seen::text::bigint % 4294967296)::text::xid)
         END
$$;
COMMENT ON FUNCTION canon.xmin_age_limit(xid8) IS
  'age(xmin) bound of the row versions written by transactions not older than p_seen (NULL: read every row). Used as WHERE age(t.xmin) <= canon.xmin_age_limit(seen).';
