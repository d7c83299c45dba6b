-- ops.refresh_cabinet_lead_state: re-evaluates stored lead state now, for people and the
-- ops.* tools (the pipeline does it on every run):
--   SELECT ops.refresh_cabinet_lead_state(ARRAY['lead-key']);  -- these keys + every key marked dirty
--   SELECT ops.refresh_cabinet_lead_state();                  -- every lead (a rebuild; minutes at 1M leads)
-- Lead rows newer than the last run are shown live by the views and are left to the next
-- run unless named. It waits for the job lock (at most lock_timeout, 30 s by default),
-- so it never runs inside a pipeline run. Generates no claim: that is the run's job.
CREATE OR REPLACE FUNCTION ops.refresh_cabinet_lead_state(p_lead_keys text[] DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '30s'
AS $$
DECLARE
  v_max_mark bigint;
  v_ids integer[];
  v_out jsonb;
BEGIN
  BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('cabinet_leads'), hashtext('reconcile_cabinet_leads_pipeline'));
  EXCEPTION WHEN lock_not_available THEN
    RAISE EXCEPTION 'a pipeline run (or an identity change) holds the job lock for more than 30 s: try again when it has finished'
      USING ERRCODE = '55P03';
  END;
  SELECT max(d.mark_seq) INTO v_max_mark FROM canon.cabinet_lead_state_dirty d;

  IF p_lead_keys IS NULL THEN
    v_ids := ARRAY(
      SELECT l.id FROM public.module_ct_cabinet_leads l WHERE l.lead_created_at IS NOT NULL
      UNION
      SELECT s.lead_id FROM canon.cabinet_lead_state s);
  ELSE
    PERFORM canon.refresh_lead_keys('{}');
    v_ids := canon.lead_ids_of_keys(
      p_lead_keys || ARRAY(SELECT d.lead_source_pk FROM canon.cabinet_lead_state_dirty d WHERE d.mark_seq <= v_max_mark));
  END IF;

  v_out := canon.refresh_lead_state(NULL, v_ids);
  DELETE FROM canon.cabinet_lead_state_dirty d WHERE d.mark_seq <= coalesce(v_max_mark, 0);
  RETURN v_out || jsonb_build_object('scope', CASE WHEN p_lead_keys IS NULL THEN 'all' ELSE 'keys' END);
END
$$;
COMMENT ON FUNCTION ops.refresh_cabinet_lead_state(text[]) IS
  'Re-evaluates the stored state of the given lead keys (and of every key marked dirty), or of every lead when called without argument. Returns {evaluated, written, removed, trip_rows_read, scope}.';
