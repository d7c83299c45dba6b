-- canon.try_job_lock: takes the job lock (canon.job_lock) for this transaction if it is
-- free, without waiting: what a pipeline run does (a run that finds it taken is SKIPPED).
CREATE OR REPLACE FUNCTION canon.try_job_lock()
RETURNS boolean
LANGUAGE sql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT pg_try_advisory_xact_lock(k.classid, k.objid) FROM canon.job_lock() k
$$;
COMMENT ON FUNCTION canon.try_job_lock() IS
  'Takes the job lock for this transaction if free (true), else false at once: the pipeline''s step 2.';
