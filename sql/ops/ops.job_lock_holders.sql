-- ops.job_lock_holders: who holds the job lock (the advisory lock
-- (hashtext('cabinet_leads'), hashtext('reconcile_cabinet_leads_pipeline')) that keeps
-- runs from overlapping), since when, and whether longer than a run can last (setting
-- job_lock_held_max_minutes). Any session of the database may take that lock (psql,
-- a hung client); while it holds it every run is SKIPPED. Read by `status`, `doctor`
-- (JOB_LOCK_HELD_TOO_LONG) and the log line of a SKIPPED run:
--   SELECT * FROM ops.job_lock_holders();
--   SELECT pg_terminate_backend(pid) FROM ops.job_lock_holders() WHERE too_long;  -- frees it
-- held_since: the start of the holder's run when it runs one of ours. Any other session:
-- the start of its open transaction, else when it went idle (a session lock was taken by
-- then), or, when earlier (or its activity is not visible), the start of the oldest
-- SKIPPED run since the last run that got the lock: since then the job has been kept out.
-- SECURITY DEFINER: pg_stat_activity shows the times of other roles' sessions to its
-- owner only (a superuser, or a member of pg_read_all_stats, sees all).
CREATE OR REPLACE FUNCTION ops.job_lock_holders()
RETURNS TABLE (
  pid               integer,
  usename           text,
  application_name  text,
  client_addr       text,
  state             text,
  run_id            bigint,
  held_since        timestamptz,
  held_for          interval,
  too_long          boolean
)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  WITH params AS (
    SELECT make_interval(mins => canon.setting('job_lock_held_max_minutes')::integer) AS max_held
  ),
  holders AS (
    SELECT l.pid
    FROM pg_catalog.pg_locks l
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
      AND l.classid = hashtext('cabinet_leads')::oid
      AND l.objid = hashtext('reconcile_cabinet_leads_pipeline')::oid
      AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = current_database())
  ),
  -- Runs kept out since: the oldest SKIPPED run after the last run that got the lock.
  skipping AS (
    SELECT min(r.started_at) AS since
    FROM canon.ingestion_runs r
    WHERE r.job_name = 'reconcile_cabinet_leads_pipeline' AND r.status = 'SKIPPED'
      AND r.id > coalesce((SELECT max(x.id) FROM canon.ingestion_runs x
                           WHERE x.job_name = 'reconcile_cabinet_leads_pipeline' AND x.status IN ('COMPLETED', 'FAILED', 'RUNNING')), 0)
  ),
  described AS (
    SELECT h.pid, a.usename::text AS usename, a.application_name, host(a.client_addr) AS client_addr, a.state, r.id AS run_id,
           coalesce(r.started_at, least(coalesce(a.xact_start, a.state_change), (SELECT s.since FROM skipping s))) AS held_since
    FROM holders h
    LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = h.pid
    LEFT JOIN LATERAL (
      SELECT x.id, x.started_at
      FROM canon.ingestion_runs x
      WHERE x.status = 'RUNNING' AND x.backend_pid = h.pid
        AND (x.backend_start IS NULL OR a.backend_start IS NULL OR x.backend_start = a.backend_start)
      ORDER BY x.id DESC
      LIMIT 1) r ON true
  )
  SELECT d.pid, d.usename, d.application_name, d.client_addr, d.state, d.run_id, d.held_since,
         date_trunc('second', now() - d.held_since), now() - d.held_since > p.max_held
  FROM described d
  CROSS JOIN params p
  ORDER BY d.held_since NULLS LAST, d.pid
$$;
COMMENT ON FUNCTION ops.job_lock_holders() IS
  'Sessions holding the job lock (every run is SKIPPED meanwhile): pid, user, application_name, state, the run it runs (if ours), held since, for how long, and too_long (over setting job_lock_held_max_minutes; free it with pg_terminate_backend(pid)).';
