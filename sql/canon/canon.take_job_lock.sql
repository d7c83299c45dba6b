-- canon.take_job_lock: takes the job lock (canon.job_lock) for this transaction, waiting
-- at most lock_timeout: what the operator tools (ops.resolve_lead, ops.ignore_lead,
-- ops.unlink_lead, through canon.begin_lead_change) and the repairs do, so that they never
-- run inside a pipeline run. A wait that times out raises 55P03 with a sentence saying
-- what to do.
CREATE OR REPLACE FUNCTION canon.take_job_lock()
RETURNS void
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(k.classid, k.objid) FROM canon.job_lock() k;
EXCEPTION WHEN lock_not_available THEN
  RAISE EXCEPTION 'a pipeline run (or another identity change) holds the job lock for more than %: try again when it has finished',
                  current_setting('lock_timeout')
    USING ERRCODE = '55P03';
END
$$;
COMMENT ON FUNCTION canon.take_job_lock() IS
  'Takes the job lock for this transaction, waiting at most lock_timeout (then 55P03): the prologue of the operator tools and repairs.';
