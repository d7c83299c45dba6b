-- canon.xid8_of_recent: the full 64-bit transaction id of a row's 32-bit xmin, given a
-- reference xid8 taken now (pg_snapshot_xmax of the current snapshot), for rows written
-- since the last wraparound of the 32-bit counter. Used to compare a row's xmin with a
-- stored pg_snapshot (pg_visible_in_snapshot takes xid8). For an older row the result
-- may name a later transaction than the true one: it then counts as not visible to an
-- old snapshot, which costs a re-read and never skips a row. One expression, so that it
-- is inlined (not STRICT either, which would prevent it): it is evaluated for every row
-- of the driver index refresh's overlap.
CREATE OR REPLACE FUNCTION canon.xid8_of_recent(p_xid xid, p_now xid8)
RETURNS xid8
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
  SELECT ((CASE WHEN p_xid::text::bigint <= (p_now::text::bigint & 4294967295)
                THEN (p_now::text::bigint >> 32) << 32
                ELSE ((p_now::text::bigint >> 32) - 1) << 32
           END) | p_xid::text::bigint)::text::xid8
$$;
COMMENT ON FUNCTION canon.xid8_of_recent(xid, xid8) IS
  'xid8 of a 32-bit xid written since the last wraparound, given an xid8 of now (pg_snapshot_xmax(pg_current_snapshot())); an older xid maps to a later xid8, never an earlier one.';
