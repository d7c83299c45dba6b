-- ops.worker_jobs_locked: graphile-worker jobs and queues locked by a worker, and whether
-- longer than a run can last (setting job_lock_held_max_minutes). A worker killed with
-- kill -9 (or a host lost) leaves its job and the job's serial queue locked (locked_by =
-- that worker pool's id) until graphile-worker's own reset, 4 hours later; no run of the
-- queue starts meanwhile. Read by `doctor` (WORKER_JOB_LOCKED_TOO_LONG); unlock with
-- graphile-worker's own function (docs/operations.md):
--   SELECT graphile_worker.force_unlock_workers(ARRAY(
--     SELECT DISTINCT locked_by FROM ops.worker_jobs_locked() WHERE too_long));
-- Empty while graphile-worker's schema is not installed (cabinet-leads migrate installs
-- it); its tables are named dynamically so that this function exists before them.
CREATE OR REPLACE FUNCTION ops.worker_jobs_locked()
RETURNS TABLE (
  kind        text,
  id          bigint,
  name        text,
  locked_by   text,
  locked_at   timestamptz,
  locked_for  interval,
  too_long    boolean
)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF to_regclass('graphile_worker._private_jobs') IS NULL OR to_regclass('graphile_worker._private_job_queues') IS NULL
     OR to_regclass('graphile_worker._private_tasks') IS NULL THEN
    RETURN;
  END IF;
  RETURN QUERY EXECUTE $q$
    WITH locked AS (
      SELECT 'JOB'::text AS kind, j.id::bigint AS id, t.identifier::text AS name, j.locked_by::text AS locked_by, j.locked_at
      FROM graphile_worker._private_jobs j
      JOIN graphile_worker._private_tasks t ON t.id = j.task_id
      WHERE j.locked_at IS NOT NULL
      UNION ALL
      SELECT 'QUEUE', q.id::bigint, q.queue_name::text, q.locked_by::text, q.locked_at
      FROM graphile_worker._private_job_queues q
      WHERE q.locked_at IS NOT NULL
    )
    SELECT l.kind, l.id, l.name, l.locked_by, l.locked_at, date_trunc('second', now() - l.locked_at),
           now() - l.locked_at > make_interval(mins => canon.setting('job_lock_held_max_minutes')::integer)
    FROM locked l
    ORDER BY l.locked_at, l.kind, l.id
  $q$;
END
$$;
COMMENT ON FUNCTION ops.worker_jobs_locked() IS
  'graphile-worker jobs and queues locked by a worker (kind, id, task or queue name, locked_by, locked_at, for how long, too_long over setting job_lock_held_max_minutes); unlock a dead worker''s with graphile_worker.force_unlock_workers(ARRAY[locked_by]).';
