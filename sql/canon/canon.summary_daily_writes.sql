-- canon.summary_daily_writes: how much public.summary_daily has been written, without a
-- trigger on the upstream table: its file node (changed by TRUNCATE or a rewrite), the
-- cumulative counts of rows inserted and of rows updated or deleted from the statistics
-- system, and its size in pages. Step 7 compares them with the values it last acted on:
-- more inserts only = rows appended (found in the new pages); anything else = re-read the
-- open windows. Statistics reach shared memory when the writing session goes idle (up to
-- about 10 s after its commit, at once when it disconnects): a load committed just before
-- a run is seen by the next run. inserted/modified are NULL when track_counts is off.
CREATE OR REPLACE FUNCTION canon.summary_daily_writes()
RETURNS canon.summary_daily_write_counts
LANGUAGE sql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT ROW(c.relfilenode,
             CASE WHEN current_setting('track_counts')::boolean THEN pg_stat_get_tuples_inserted(c.oid) END,
             CASE WHEN current_setting('track_counts')::boolean
                  THEN pg_stat_get_tuples_updated(c.oid) + pg_stat_get_tuples_deleted(c.oid) END,
             pg_relation_size(c.oid) / current_setting('block_size')::bigint)::canon.summary_daily_write_counts
  FROM pg_class c
  WHERE c.oid = 'public.summary_daily'::regclass
$$;
COMMENT ON FUNCTION canon.summary_daily_writes() IS
  'File node, cumulative inserted and updated+deleted row counts (NULL when track_counts is off) and size in pages of public.summary_daily: how step 7 notices new trips.';
