-- ops.recount_lead_state_counts: counts the stored lead state again into
-- canon_internal.cabinet_lead_state_counts (what the trigger canon.count_lead_state_changes keeps
-- up to date). For the repair of a LEAD_STATE_COUNTS violation of ops.check_invariants,
-- which only writes that bypassed the trigger can cause (session_replication_role =
-- replica, a disabled trigger):
--   SELECT ops.recount_lead_state_counts();
-- Blocks writers of the state while it counts (SHARE lock: a write cannot slip between the
-- count and the counters). Returns the number of counter rows written.
CREATE OR REPLACE FUNCTION ops.recount_lead_state_counts()
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_rows bigint;
BEGIN
  LOCK TABLE canon_internal.cabinet_lead_state IN SHARE MODE;
  DELETE FROM canon_internal.cabinet_lead_state_counts;
  INSERT INTO canon_internal.cabinet_lead_state_counts (lead_date, limbo_stage, with_identity, with_driver, with_trips, with_rule, leads)
  SELECT s.lead_date, s.limbo_stage, s.person_key IS NOT NULL, s.driver_id IS NOT NULL,
         s.trips_in_window > 0, s.window_days IS NOT NULL, count(*)
  FROM canon_internal.cabinet_lead_state s
  GROUP BY 1, 2, 3, 4, 5, 6;
  GET DIAGNOSTICS v_rows = ROW_COUNT;
  RETURN v_rows;
END
$$;
COMMENT ON FUNCTION ops.recount_lead_state_counts() IS
  'Recounts canon_internal.cabinet_lead_state_counts from the stored lead state (repair of a LEAD_STATE_COUNTS violation); returns counter rows written.';
