-- canon.summary_daily_writes: what the statistics system says of public.summary_daily,
-- without a trigger on the upstream table: its file node (changed by TRUNCATE or a
-- rewrite), the cumulative counts of rows inserted, updated and deleted, its size in
-- pages, and the epoch of the counts (when they were last reset: pg_stat_reset, a crash).
-- canon.trip_drivers_changed compares them with what it last acted on. A write's counts
-- reach shared memory after its commit (seconds later, at once when its session ends);
-- inserted/updated/deleted are NULL when track_counts is off.
CREATE OR REPLACE FUNCTION canon.summary_daily_writes()
RETURNS canon.summary_daily_write_counts
LANGUAGE sql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT ROW(c.relfilenode,
             CASE WHEN current_setting('track_counts')::boolean THEN pg_stat_get_tuples_inserted(c.oid) END,
             CASE WHEN current_setting('track_counts')::boolean THEN pg_stat_get_tuples_updated(c.oid) END,
             CASE WHEN current_setting('track_counts')::boolean THEN pg_stat_get_tuples_deleted(c.oid) END,
             pg_relation_size(c.oid) / current_setting('block_size')::bigint,
             concat_ws(' ', pg_stat_get_bgwriter_stat_reset_time(),
                       pg_stat_get_db_stat_reset_time((SELECT d.oid FROM pg_database d WHERE d.datname = current_database()))))
         ::canon.summary_daily_write_counts
  FROM pg_class c
  WHERE c.oid = 'public.summary_daily'::regclass
$$;
COMMENT ON FUNCTION canon.summary_daily_writes() IS
  'File node, cumulative inserted / updated / deleted row counts (NULL when track_counts is off), size in pages and statistics epoch of public.summary_daily: how step 7 notices trips written anywhere in the table.';
