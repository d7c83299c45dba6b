-- canon.summary_daily_fingerprint: a cheap sign that public.summary_daily changed,
-- without a trigger on the upstream table: its file node (changed by TRUNCATE) and the
-- cumulative statistics of rows inserted, updated and deleted. Statistics reach shared
-- memory up to a few seconds after the writer commits, so a load committed just before
-- a run may be seen by the next run; the daily sweep re-reads every lead of the scope
-- anyway. NULL when statistics are off (track_counts): the caller then re-reads trips
-- every run.
CREATE OR REPLACE FUNCTION canon.summary_daily_fingerprint()
RETURNS text
LANGUAGE sql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT CASE WHEN current_setting('track_counts')::boolean THEN
           concat_ws(':', c.relfilenode,
                     pg_stat_get_tuples_inserted(c.oid) + pg_stat_get_tuples_updated(c.oid) + pg_stat_get_tuples_deleted(c.oid))
         END
  FROM pg_class c
  WHERE c.oid = 'public.summary_daily'::regclass
$$;
COMMENT ON FUNCTION canon.summary_daily_fingerprint() IS
  'Changes whenever rows of public.summary_daily are written (file node + cumulative insert/update/delete counts); NULL when track_counts is off.';
