-- ops.repair_caches: brings every drifted cache back to its live definition, rewriting
-- only what drifted (what ops.check_caches reports; `cabinet-leads doctor --repair`):
-- lead keys re-keyed, never-evaluated keys listed, retry marks set, the driver index
-- reconciled in full (re-normalising only the drivers whose values differ), its odd-timestamp
-- counts left for the next run to count again, marked and
-- drifted lead state rows re-evaluated and their marks cleared, the state counters
-- recounted when they are off. Takes the job lock (waits at most lock_timeout, 30 s), so
-- it never runs inside a pipeline run. Generates no claim: the next run does. Returns what
-- it repaired per cache.
CREATE OR REPLACE FUNCTION ops.repair_caches()
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '30s'
AS $$
DECLARE
  v_keys integer;
  v_listed integer;
  v_retry integer;
  v_drivers jsonb;
  v_state jsonb;
  v_counts boolean;
  v_odd boolean;
BEGIN
  PERFORM canon.take_job_lock();

  v_keys := canon.refresh_lead_keys(ARRAY(SELECT d.lead_id FROM canon.lead_keys_drift() d));

  INSERT INTO canon_internal.lead_keys_pending (lead_id, lead_date)
  SELECT k.lead_id, k.lead_date FROM canon.never_evaluated_drift() d JOIN canon_internal.lead_keys k ON k.lead_id = d.lead_id
  ON CONFLICT (lead_id) DO NOTHING;
  GET DIAGNOSTICS v_listed = ROW_COUNT;

  UPDATE canon.identity_unmatched u SET retry_due = true
  FROM canon.retry_due_drift() d
  WHERE u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = d.lead_source_pk AND u.status = 'OPEN';
  GET DIAGNOSTICS v_retry = ROW_COUNT;

  IF EXISTS (SELECT 1 FROM canon.driver_index_drift()) THEN
    UPDATE canon_internal.driver_index_state SET last_full_at = NULL;
    v_drivers := canon.refresh_driver_index(NULL);
    -- the check that follows probes the tier's block indexes once per OPEN lead
    -- (RETRY_DUE_MARKED): each probe would read their pending lists whole
    PERFORM canon.flush_driver_index_keys();
  END IF;
  v_odd := EXISTS (SELECT 1 FROM canon.driver_odd_counts_drift());
  IF v_odd THEN
    UPDATE canon_internal.driver_index_state SET odd_versions = NULL; -- the next run counts every row
  END IF;

  v_state := canon.refresh_lead_state(NULL, canon.take_lead_state_marks() || ARRAY(SELECT d.lead_id FROM canon.lead_state_drift() d));
  PERFORM canon.clear_lead_state_marks();

  v_counts := EXISTS (SELECT 1 FROM ops.check_invariants() c WHERE c.invariant = 'LEAD_STATE_COUNTS' AND c.violations > 0);
  IF v_counts THEN
    PERFORM ops.recount_lead_state_counts();
  END IF;

  RETURN jsonb_build_object(
    'lead_keys_written', v_keys,
    'never_evaluated_listed', v_listed,
    'retries_marked_due', v_retry,
    'driver_index', v_drivers,
    'lead_state', v_state,
    'state_counts_recounted', v_counts,
    'driver_odd_counts_reset', v_odd);
END
$$;
COMMENT ON FUNCTION ops.repair_caches() IS
  'Repairs what ops.check_caches finds (and the state counters), rewriting only what drifted; takes the job lock. Returns what it repaired per cache. CLI: cabinet-leads doctor --repair.';
