-- ops.v_limbo_history: the time series of limbo counts, one row per snapshot (one per
-- completed run, ops.limbo_snapshots), oldest first, with shares and the change of each
-- stage since the previous snapshot. Read by the report, `cabinet-leads status` and people:
--   SELECT taken_at, limbo_no_identity, limbo_no_identity_change FROM ops.v_limbo_history
--   ORDER BY taken_at DESC LIMIT 20;
-- Per lead week: SELECT * FROM ops.limbo_snapshot_weeks WHERE run_id = ...
CREATE OR REPLACE VIEW ops.v_limbo_history AS
SELECT s.run_id,
       s.taken_at,
       s.business_date,
       s.leads,
       s.leads_with_identity,
       s.leads_with_driver,
       round(100.0 * s.leads_with_identity / nullif(s.leads, 0), 2) AS pct_with_identity,
       round(100.0 * s.leads_with_driver / nullif(s.leads, 0), 2) AS pct_with_driver,
       s.limbo_no_identity,
       s.limbo_no_driver,
       s.limbo_no_trips_14d,
       s.limbo_trips_no_claim,
       s.limbo_ok,
       lag(s.run_id) OVER w AS previous_run_id,
       s.leads - lag(s.leads) OVER w AS leads_change,
       s.limbo_no_identity - lag(s.limbo_no_identity) OVER w AS limbo_no_identity_change,
       s.limbo_no_driver - lag(s.limbo_no_driver) OVER w AS limbo_no_driver_change,
       s.limbo_no_trips_14d - lag(s.limbo_no_trips_14d) OVER w AS limbo_no_trips_14d_change,
       s.limbo_trips_no_claim - lag(s.limbo_trips_no_claim) OVER w AS limbo_trips_no_claim_change,
       s.limbo_ok - lag(s.limbo_ok) OVER w AS limbo_ok_change
FROM ops.limbo_snapshots s
WINDOW w AS (ORDER BY s.taken_at, s.run_id);
COMMENT ON VIEW ops.v_limbo_history IS
  'Time series of limbo snapshots (one per completed run): leads per stage, shares with identity / driver, and the change of each stage since the previous snapshot.';
