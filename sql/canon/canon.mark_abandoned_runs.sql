-- canon.mark_abandoned_runs: marks FAILED every RUNNING run whose database backend is
-- gone or no longer executing that run's CALL (client killed, server restarted,
-- cancelled statement). Called at the start of every run.
CREATE OR REPLACE FUNCTION canon.mark_abandoned_runs()
RETURNS integer
LANGUAGE sql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH abandoned AS (
    UPDATE canon.ingestion_runs r
    SET status = 'FAILED',
        completed_at = clock_timestamp(),
        error_sqlstate = 'CL003',
        error_message = format('abandoned: backend %s that ran it is gone (process killed or server restarted); its writes were rolled back', r.backend_pid)
    WHERE r.status = 'RUNNING'
      AND NOT EXISTS (
        SELECT 1
        FROM pg_stat_activity a
        WHERE a.pid = r.backend_pid
          AND (r.backend_start IS NULL OR a.backend_start IS NULL OR a.backend_start = r.backend_start)
          -- A pooled connection outlives a cancelled CALL: alive means still in that CALL.
          -- (state is NULL when another role's session is not visible: trust the pid then.)
          AND (a.state IS NULL OR (a.state = 'active' AND a.query_start <= r.started_at))
      )
    RETURNING 1
  )
  SELECT count(*)::integer FROM abandoned
$$;
COMMENT ON FUNCTION canon.mark_abandoned_runs() IS 'Marks FAILED ("abandoned") every RUNNING run whose backend no longer exists; returns how many.';
