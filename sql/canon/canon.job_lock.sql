-- canon.job_lock: the key of the job lock, the transaction-level advisory lock that keeps
-- one pipeline run at a time (across every host) and the operator tools and repairs out
-- of a run: (hashtext('cabinet_leads'), hashtext('reconcile_cabinet_leads_pipeline')).
-- Written once here; canon.try_job_lock and canon.take_job_lock take it, status and doctor
-- look for it in pg_locks.
CREATE OR REPLACE FUNCTION canon.job_lock(OUT classid integer, OUT objid integer)
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
  SELECT hashtext('cabinet_leads'), hashtext('reconcile_cabinet_leads_pipeline')
$$;
COMMENT ON FUNCTION canon.job_lock() IS
  'The job lock''s advisory key (classid, objid): one pipeline run at a time, operator tools and repairs outside runs.';
