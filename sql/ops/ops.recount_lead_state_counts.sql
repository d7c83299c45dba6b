-- ops.recount_lead_state_counts: counts the stored lead state again into
-- canon_internal.cabinet_lead_state_counts (canon.v_cabinet_lead_state_counted: what the
-- trigger canon.count_lead_state_changes keeps up to date). For the repair of a
-- LEAD_STATE_COUNTS violation of ops.check_invariants, which only writes that bypassed the
-- trigger can cause (session_replication_role = replica, a disabled trigger):
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
  INSERT INTO canon_internal.cabinet_lead_state_counts (
    lead_date, limbo_stage, with_identity, with_driver, with_trips, with_rule, window_days,
    reached_m1, reached_m5, reached_m25, has_claim_m1, has_claim_m5, has_claim_m25,
    leads, trips, m1_amount, m5_amount, m25_amount, paid_claims, paid_amount)
  SELECT c.lead_date, c.limbo_stage, c.with_identity, c.with_driver, c.with_trips, c.with_rule, c.window_days,
         c.reached_m1, c.reached_m5, c.reached_m25, c.has_claim_m1, c.has_claim_m5, c.has_claim_m25,
         c.leads, c.trips, c.m1_amount, c.m5_amount, c.m25_amount, c.paid_claims, c.paid_amount
  FROM canon.v_cabinet_lead_state_counted c;
  GET DIAGNOSTICS v_rows = ROW_COUNT;
  RETURN v_rows;
END
$$;
COMMENT ON FUNCTION ops.recount_lead_state_counts() IS
  'Recounts canon_internal.cabinet_lead_state_counts from the stored lead state (repair of a LEAD_STATE_COUNTS violation); returns counter rows written.';
