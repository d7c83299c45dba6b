-- canon.key_changed_leads: pipeline step 5a. Keys every lead row written since the last
-- read of public.module_ct_cabinet_leads, whatever its id, page or timestamp: one pass
-- over the lead rows takes the row versions written by transactions not older than the
-- oldest one in progress at the last read (canon_internal.source_scan_state.seen_xmin, compared by
-- canon.xmin_age_limit), so a row committed late under a low id, a row updated in place
-- and a row of a subtransaction are all read; canon.refresh_lead_keys keys those whose
-- values changed. The same pass counts the rows: when the keyed and unkeyed rows do not
-- add up to them, rows were deleted (or a cache drifted) and the difference is found by id
-- and repaired. Also called by ops.refresh_cabinet_lead_state. Returns step stats.
CREATE OR REPLACE FUNCTION canon.key_changed_leads(p_run_id bigint)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET jit = off
SET client_min_messages = warning
AS $$
DECLARE
  v_foreign bigint[];
  v_seen xid8;
  v_limit integer;
  v_rows bigint;
  v_dated bigint;
  v_changed integer[];
  v_snapshot_xmin xid8;
  v_written integer;
  v_cached bigint;
  v_membership integer[] := '{}';
BEGIN
  SELECT s.seen_xmin INTO v_seen
  FROM canon_internal.source_scan_state s
  WHERE s.source_table = 'module_ct_cabinet_leads'
  FOR UPDATE;
  v_limit := canon.xmin_age_limit(v_seen);
  v_foreign := canon.foreign_xids(); -- before the read's snapshot (canon.local_snapshot_xmin)

  -- One pass, no function per row. The snapshot is this statement's own: what it shows,
  -- the pass has read; the next read starts from its oldest local transaction.
  SELECT count(*),
         count(*) FILTER (WHERE isfinite(l.lead_created_at)),
         coalesce(array_agg(l.id) FILTER (WHERE v_limit IS NULL OR age(l.xmin) <= v_limit), '{}'),
         canon.local_snapshot_xmin(pg_current_snapshot(), v_foreign)
  INTO v_rows, v_dated, v_changed, v_snapshot_xmin
  FROM public.module_ct_cabinet_leads l;

  v_written := canon.refresh_lead_keys(v_changed);

  -- Every row read is now keyed or listed unkeyed; more cached rows than lead rows means
  -- rows were deleted (fewer would be a drift): found by id, then keyed or unkeyed.
  v_cached := (SELECT count(*) FROM canon_internal.lead_keys) + (SELECT count(*) FROM canon_internal.lead_rows_unkeyed);
  IF v_cached <> v_rows THEN
    v_membership := ARRAY(
      SELECT coalesce(c.lead_id, l.id)
      FROM (SELECT k.lead_id FROM canon_internal.lead_keys k UNION ALL SELECT u.lead_id FROM canon_internal.lead_rows_unkeyed u) c
      FULL JOIN public.module_ct_cabinet_leads l ON l.id = c.lead_id
      WHERE c.lead_id IS NULL OR l.id IS NULL);
    v_written := v_written + canon.refresh_lead_keys(v_membership);
  END IF;

  UPDATE canon_internal.source_scan_state
  SET seen_xmin = v_snapshot_xmin, rows_read = v_rows, rows_dated = v_dated,
      -- (doctor: a key of a row deleted since this read is work for the next run, not drift)
      tuples_deleted = pg_stat_get_tuples_deleted('public.module_ct_cabinet_leads'::regclass),
      read_at = now(), full_read_at = now(), run_id = p_run_id
  WHERE source_table = 'module_ct_cabinet_leads';

  RETURN jsonb_build_object(
    'lead_rows', v_rows,
    'lead_rows_undated', v_rows - v_dated,
    'lead_rows_read_again', cardinality(v_changed),
    'lead_rows_written', v_written,
    'lead_rows_gone_or_unkeyed_found', cardinality(v_membership),
    'leads_with_oversized_key', (SELECT count(*) FROM canon_internal.lead_rows_unkeyed u WHERE u.reason = 'OVERSIZED_KEY'),
    'read_since_xmin', v_seen);
END
$$;
COMMENT ON FUNCTION canon.key_changed_leads(bigint) IS
  'Pipeline step 5a: keys every lead row written since the last read (by commit order: any id, page or timestamp) and removes the keys of deleted rows. Returns step stats.';
