-- ops.refresh_cabinet_lead_state: re-evaluates stored lead state now, for people and the
-- ops.* tools (the pipeline does it on every run):
--   SELECT ops.refresh_cabinet_lead_state(ARRAY['lead-key']);  -- these keys + every row or key marked
--   SELECT ops.refresh_cabinet_lead_state();                  -- every lead (a rebuild; minutes at 1M leads)
-- Lead rows written since the last read are keyed first (canon.key_changed_leads), so
-- their marks are evaluated too. It waits for the job lock (at most lock_timeout, 30 s by default),
-- so it never runs inside a pipeline run. Generates no claim: that is the run's job.
CREATE OR REPLACE FUNCTION ops.refresh_cabinet_lead_state(p_lead_keys text[] DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '30s'
-- keying new lead rows drops temp tables "IF EXISTS": no NOTICE for that in psql
SET client_min_messages = warning
AS $$
DECLARE
  v_ids integer[];
  v_out jsonb;
BEGIN
  PERFORM canon.take_job_lock();
  -- Lead rows written since the last read are keyed (and marked) first.
  PERFORM canon.key_changed_leads(NULL);
  v_ids := canon.take_lead_state_marks();
  IF p_lead_keys IS NULL THEN
    v_ids := ARRAY(
      SELECT l.id FROM public.module_ct_cabinet_leads l WHERE isfinite(l.lead_created_at)
      UNION
      SELECT s.lead_id FROM canon_internal.cabinet_lead_state s);
  ELSE
    v_ids := v_ids || canon.lead_ids_of_keys(p_lead_keys);
  END IF;

  v_out := canon.refresh_lead_state(NULL, v_ids);
  PERFORM canon.clear_lead_state_marks();
  RETURN v_out || jsonb_build_object('scope', CASE WHEN p_lead_keys IS NULL THEN 'all' ELSE 'keys' END);
END
$$;
COMMENT ON FUNCTION ops.refresh_cabinet_lead_state(text[]) IS
  'Re-evaluates the stored state of the given lead keys (and of every key marked dirty), or of every lead when called without argument. Returns {evaluated, written, removed, trip_rows_read, scope}.';
