-- canon.lead_state_marks_drift: marks that every completed run would have consumed: a
-- pending lead row (canon_internal.cabinet_lead_state_pending) or dirty key
-- (canon_internal.cabinet_lead_state_dirty) marked before the start of the last completed,
-- non-dry run. Read by ops.check_caches, repaired by ops.repair_caches.
CREATE OR REPLACE FUNCTION canon.lead_state_marks_drift()
RETURNS TABLE (lead_id integer, lead_source_pk text, example text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH last_run AS (
    SELECT max(r.started_at) AS started_at
    FROM canon.ingestion_runs r
    WHERE r.job_name = 'reconcile_cabinet_leads_pipeline' AND r.status = 'COMPLETED' AND NOT r.dry_run
  )
  SELECT p.lead_id, NULL::text, format('lead id %s marked at %s', p.lead_id, p.marked_at)
  FROM canon_internal.cabinet_lead_state_pending p CROSS JOIN last_run r
  WHERE p.marked_at < r.started_at
  UNION ALL
  SELECT NULL, d.lead_source_pk, format('lead key %s marked at %s', left(d.lead_source_pk, 40), d.marked_at)
  FROM canon_internal.cabinet_lead_state_dirty d CROSS JOIN last_run r
  WHERE d.marked_at < r.started_at
  UNION ALL
  SELECT NULL, d.lead_source_pk, format('lead key %s marked paid at %s', left(d.lead_source_pk, 40), d.marked_at)
  FROM canon_internal.cabinet_lead_state_paid_dirty d CROSS JOIN last_run r
  WHERE d.marked_at < r.started_at
$$;
COMMENT ON FUNCTION canon.lead_state_marks_drift() IS
  'Lead state marks older than the start of the last completed run (which would have consumed them).';
