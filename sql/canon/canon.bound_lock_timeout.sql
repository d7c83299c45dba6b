-- canon.bound_lock_timeout: bounds every lock wait of the current transaction to 30 s,
-- or less when the session asked for less (PGOPTIONS='-c lock_timeout=5s' or SET), so
-- that a table locked by someone else (canon.settings, canon.ingestion_runs, ...) fails
-- the statement with 55P03 instead of hanging it until the statement timeout. Transaction-
-- local (SET LOCAL): the pipeline calls it at its start and again after each COMMIT.
-- Returns the lock_timeout now in force.
CREATE OR REPLACE FUNCTION canon.bound_lock_timeout()
RETURNS text
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF (SELECT s.setting::bigint FROM pg_catalog.pg_settings s WHERE s.name = 'lock_timeout') NOT BETWEEN 1 AND 30000 THEN
    PERFORM set_config('lock_timeout', '30s', true);
  END IF;
  RETURN current_setting('lock_timeout');
END
$$;
COMMENT ON FUNCTION canon.bound_lock_timeout() IS
  'Sets lock_timeout to 30 s for the current transaction unless the session already has a shorter one; returns the lock_timeout in force. Called by ops.reconcile_cabinet_leads_pipeline at its start and after each COMMIT.';
