-- canon.step_done: the log entry of a pipeline step that has just finished, as a one-element
-- jsonb array to append to the run's stats.steps: [{"step", "status": "done", "ms"}], ms
-- measured from p_started. The one place a step's timing is written.
CREATE OR REPLACE FUNCTION canon.step_done(p_step text, p_started timestamptz)
RETURNS jsonb
LANGUAGE sql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT jsonb_build_array(jsonb_build_object(
    'step', p_step, 'status', 'done',
    'ms', round((extract(epoch FROM clock_timestamp() - p_started) * 1000)::numeric, 1)))
$$;
COMMENT ON FUNCTION canon.step_done(text, timestamptz) IS
  'Log entry of a finished pipeline step for stats.steps: [{step, status done, ms since p_started}].';
