-- Internal counter: canon_internal.cabinet_lead_state counted by lead date, stage and the flags
-- the counts read from it need, kept by the trigger canon.count_lead_state_changes; read by
-- ops.limbo_stage_counts, the limbo snapshots and alerts, step 7's scope figures and the
-- weekly funnel (ops.funnel_week_counts) instead of counting a million rows. Its live
-- definition is canon.v_cabinet_lead_state_counted; checked by ops.check_invariants (LEAD_STATE_COUNTS).
CREATE TABLE canon_internal.cabinet_lead_state_counts (
  lead_date     date NOT NULL,
  limbo_stage   text NOT NULL,
  with_identity boolean NOT NULL,
  with_driver   boolean NOT NULL,
  with_trips    boolean NOT NULL,
  with_rule     boolean NOT NULL,
  window_days   integer NOT NULL,
  reached_m1    boolean NOT NULL,
  reached_m5    boolean NOT NULL,
  reached_m25   boolean NOT NULL,
  has_claim_m1  boolean NOT NULL,
  has_claim_m5  boolean NOT NULL,
  has_claim_m25 boolean NOT NULL,
  leads         bigint NOT NULL,
  trips         numeric NOT NULL,
  m1_amount     numeric NOT NULL,
  m5_amount     numeric NOT NULL,
  m25_amount    numeric NOT NULL,
  paid_claims   bigint NOT NULL,
  paid_amount   numeric NOT NULL,
  PRIMARY KEY (lead_date, limbo_stage, with_identity, with_driver, with_trips, with_rule, window_days,
               reached_m1, reached_m5, reached_m25, has_claim_m1, has_claim_m5, has_claim_m25)
);

COMMENT ON TABLE canon_internal.cabinet_lead_state_counts IS
  'Stored lead state rows (canon_internal.cabinet_lead_state) counted by lead_date, limbo_stage, with_identity (person_key set), with_driver (driver_id set), with_trips (trips_in_window > 0), with_rule (window_days set), window_days (0 when none), reached_m* and has_claim_m*, with the sums of trips_in_window, m*_amount, paid_claims and paid_amount; kept equal to canon.v_cabinet_lead_state_counted by the trigger canon.count_lead_state_changes (ops.check_invariants verifies it). (internal)';
COMMENT ON COLUMN canon_internal.cabinet_lead_state_counts.window_days IS
  'The rows'' window_days (their window ends at lead_date + window_days), 0 for rows without a claim rule: a key column cannot be NULL.';
