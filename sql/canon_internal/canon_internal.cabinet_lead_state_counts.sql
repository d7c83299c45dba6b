-- Internal counter: canon_internal.cabinet_lead_state counted by lead date, stage and flags, kept by the
-- trigger canon.count_lead_state_changes; read by ops.limbo_stage_counts and the limbo alerts
-- instead of counting a million rows. Checked by ops.check_invariants.
CREATE TABLE canon_internal.cabinet_lead_state_counts (
  lead_date     date NOT NULL,
  limbo_stage   text NOT NULL,
  with_identity boolean NOT NULL,
  with_driver   boolean NOT NULL,
  with_trips    boolean NOT NULL,
  with_rule     boolean NOT NULL,
  leads         bigint NOT NULL,
  PRIMARY KEY (lead_date, limbo_stage, with_identity, with_driver, with_trips, with_rule)
);

COMMENT ON TABLE canon_internal.cabinet_lead_state_counts IS
  'Stored lead state rows (canon_internal.cabinet_lead_state) counted by lead_date, limbo_stage, with_identity (person_key set), with_driver (driver_id set), with_trips (trips_in_window > 0), with_rule (window_days set); kept equal to that table by the trigger canon.count_lead_state_changes (ops.check_invariants verifies it).';
