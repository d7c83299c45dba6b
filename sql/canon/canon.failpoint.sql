-- canon.failpoint: fault injection for tests and drills, a no-op in normal operation.
-- With the session setting cabinet.failpoint = '<point>' the run raises at that point;
-- with 'wait:<point>' it waits there until the advisory lock
-- (hashtext('cabinet_leads'), hashtext('failpoint')) is free, so that a test can hold
-- a run in the middle, observe it, kill it, or let it go.
CREATE OR REPLACE FUNCTION canon.failpoint(p_point text)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_setting text := current_setting('cabinet.failpoint', true);
BEGIN
  IF v_setting = p_point THEN
    RAISE EXCEPTION 'failpoint "%" triggered (session setting cabinet.failpoint)', p_point
      USING ERRCODE = 'CL099';
  ELSIF v_setting = 'wait:' || p_point THEN
    PERFORM pg_advisory_xact_lock_shared(hashtext('cabinet_leads'), hashtext('failpoint'));
  END IF;
END
$$;
COMMENT ON FUNCTION canon.failpoint(text) IS 'Test hook: SET cabinet.failpoint = ''<point>'' raises there, ''wait:<point>'' waits there on an advisory lock.';
