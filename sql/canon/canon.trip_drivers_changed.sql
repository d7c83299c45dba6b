-- canon.trip_drivers_changed: the drivers with trip rows written into public.summary_daily
-- since the last look, whatever page they went to, into pg_temp.trip_drivers_changed;
-- without a trigger on the upstream table (docs/change-detection.md):
-- * every run reads the pages appended since the last look (a TID range from the last page
--   then) for row versions that look's snapshot did not show: exact, whatever the
--   statistics say;
-- * a row version anywhere else (an insert into space freed by DELETE + VACUUM, an update
--   in place, a late commit in an earlier page) shows in the statistics system: inserts it
--   counted that the appended pages do not account for, or any update or delete, make the
--   run read the whole table for row versions written since the last whole read (by
--   commit order: canon.xmin_age_limit). So does a reset of the statistics, a rewrite of
--   the table, statistics turned off, and, as a bound on counts lost in a crash, a whole
--   read every source_full_read_hours.
-- A deleted row, or the old side of an update, leaves no row to find: then the caller
-- re-reads the leads that had trip rows (rows_may_be_gone). Returns what it read and why.
CREATE OR REPLACE FUNCTION canon.trip_drivers_changed(p_run_id bigint)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET jit = off
SET client_min_messages = warning
AS $$
DECLARE
  v_foreign bigint[];
  v_state canon_internal.source_scan_state%ROWTYPE;
  v_writes canon.summary_daily_write_counts;
  v_whole_reason text;
  v_rows_may_be_gone boolean;
  v_limit integer;
  v_blocks bigint;
  v_drivers text[];
  v_found bigint := 0;
  v_rows_read bigint := 0;
  v_snapshot pg_snapshot;
  v_local_xmin xid8;
BEGIN
  SELECT * INTO v_state FROM canon_internal.source_scan_state s WHERE s.source_table = 'summary_daily' FOR UPDATE;
  -- counts as of now, not as cached earlier in this transaction
  PERFORM pg_stat_clear_snapshot();
  v_writes := canon.summary_daily_writes();
  v_foreign := canon.foreign_xids(); -- before the reads' snapshots (canon.local_snapshot_xmin)
  -- the pages to read from next time: measured before the read, so that rows appended
  -- while it runs are read again rather than skipped
  v_blocks := v_writes.blocks;

  v_whole_reason := CASE
    WHEN v_state.seen_snapshot IS NULL OR v_state.seen_xmin IS NULL OR v_state.full_seen_xmin IS NULL THEN 'first_read'
    WHEN v_writes.inserted IS NULL THEN 'statistics_off'
    WHEN v_writes.relfilenode IS DISTINCT FROM v_state.relfilenode THEN 'table_rewritten'
    WHEN v_writes.stats_epoch IS DISTINCT FROM v_state.stats_epoch THEN 'statistics_reset'
    WHEN v_writes.updated <> v_state.tuples_updated OR v_writes.deleted <> v_state.tuples_deleted THEN 'rows_updated_or_deleted'
    WHEN v_writes.blocks < v_state.blocks THEN 'table_shrank'
    WHEN v_writes.inserted < v_state.tuples_accounted THEN 'statistics_reset'
    WHEN v_state.full_read_at < now() - make_interval(hours => canon.setting('source_full_read_hours')::integer) THEN 'periodic'
    WHEN canon.xmin_age_limit(v_state.full_seen_xmin) IS NULL
      OR canon.xmin_age_limit(v_state.seen_xmin) IS NULL THEN 'periodic'
  END;
  -- Rows may have gone (deleted, or moved by an update): their leads cannot be found from
  -- the rows that are there. (No reason yet, the appended pages: false, not NULL.)
  v_rows_may_be_gone := coalesce(v_whole_reason IN ('first_read', 'statistics_off', 'table_rewritten', 'statistics_reset',
                                                    'rows_updated_or_deleted', 'table_shrank'), false);

  IF v_whole_reason IS NULL THEN
    -- The appended pages: row versions not older than the last look's snapshot; those it
    -- did not show are counted against the inserts the statistics report.
    v_limit := canon.xmin_age_limit(v_state.seen_xmin);
    SELECT coalesce(array_agg(DISTINCT t.driver_id::text) FILTER (WHERE t.driver_id IS NOT NULL), '{}'),
           count(*) FILTER (WHERE NOT pg_visible_in_snapshot(
             canon.xid8_of_recent(t.xmin, pg_snapshot_xmax(v_state.seen_snapshot)), v_state.seen_snapshot)),
           count(*),
           pg_current_snapshot(),
           canon.local_snapshot_xmin(pg_current_snapshot(), v_foreign)
    INTO v_drivers, v_found, v_rows_read, v_snapshot, v_local_xmin
    FROM public.summary_daily t
    WHERE t.ctid >= format('(%s,0)', greatest(v_state.blocks - 1, 0))::tid
      AND age(t.xmin) <= v_limit;
    IF v_writes.inserted - v_state.tuples_accounted > v_found THEN
      v_whole_reason := 'inserts_elsewhere';
    END IF;
  END IF;

  IF v_whole_reason IS NOT NULL AND v_whole_reason <> 'first_read' THEN
    -- The whole table: row versions written since the last whole read.
    v_limit := canon.xmin_age_limit(v_state.full_seen_xmin);
    SELECT coalesce(array_agg(DISTINCT t.driver_id::text) FILTER (WHERE t.driver_id IS NOT NULL), '{}'),
           count(*),
           pg_current_snapshot(),
           canon.local_snapshot_xmin(pg_current_snapshot(), v_foreign)
    INTO v_drivers, v_rows_read, v_snapshot, v_local_xmin
    FROM public.summary_daily t
    WHERE v_limit IS NULL OR age(t.xmin) <= v_limit;
  ELSIF v_whole_reason = 'first_read' THEN
    -- No earlier look to compare with: the caller re-reads every lead with a driver instead.
    v_drivers := '{}';
    SELECT pg_current_snapshot(), canon.local_snapshot_xmin(pg_current_snapshot(), v_foreign) INTO v_snapshot, v_local_xmin;
  END IF;

  DROP TABLE IF EXISTS pg_temp.trip_drivers_changed;
  CREATE TEMP TABLE trip_drivers_changed (driver_id text PRIMARY KEY) ON COMMIT DROP;
  INSERT INTO pg_temp.trip_drivers_changed SELECT DISTINCT unnest(v_drivers);
  ANALYZE pg_temp.trip_drivers_changed;

  UPDATE canon_internal.source_scan_state
  SET seen_snapshot = v_snapshot,
      seen_xmin = v_local_xmin,
      blocks = v_blocks,
      relfilenode = v_writes.relfilenode,
      stats_epoch = v_writes.stats_epoch,
      tuples_updated = v_writes.updated,
      tuples_deleted = v_writes.deleted,
      tuples_accounted = CASE WHEN v_whole_reason IS NOT NULL THEN v_writes.inserted
                              ELSE v_state.tuples_accounted + v_found END,
      full_seen_xmin = CASE WHEN v_whole_reason IS NOT NULL THEN v_local_xmin ELSE full_seen_xmin END,
      full_read_at = CASE WHEN v_whole_reason IS NOT NULL THEN now() ELSE full_read_at END,
      read_at = now(),
      run_id = p_run_id
  WHERE source_table = 'summary_daily';

  RETURN jsonb_build_object(
    'read', CASE WHEN v_whole_reason IS NULL THEN 'appended_pages' WHEN v_whole_reason = 'first_read' THEN 'none' ELSE 'whole_table' END,
    'whole_read_reason', v_whole_reason,
    'rows_may_be_gone', v_rows_may_be_gone,
    'rows_read', v_rows_read,
    'rows_new_in_appended_pages', v_found,
    'drivers', cardinality(v_drivers));
END
$$;
COMMENT ON FUNCTION canon.trip_drivers_changed(bigint) IS
  'Drivers with trip rows written since the last look (appended pages every run; the whole table when the statistics show writes elsewhere, updates or deletes), into pg_temp.trip_drivers_changed. Returns {read, whole_read_reason, rows_may_be_gone, rows_read, ...}.';
