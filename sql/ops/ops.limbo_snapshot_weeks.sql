-- Limbo counts of every completed run per lead week (SPEC 9); they add up to ops.limbo_snapshots.
-- Written by ops.snapshot_limbo (step 8).
CREATE TABLE ops.limbo_snapshot_weeks (
  run_id               bigint NOT NULL,
  week_start           date NOT NULL CHECK (EXTRACT(isodow FROM week_start) = 1),
  leads                integer NOT NULL CHECK (leads >= 0),
  leads_with_identity  integer NOT NULL CHECK (leads_with_identity >= 0),
  leads_with_driver    integer NOT NULL CHECK (leads_with_driver >= 0),
  limbo_no_identity    integer NOT NULL CHECK (limbo_no_identity >= 0),
  limbo_no_driver      integer NOT NULL CHECK (limbo_no_driver >= 0),
  limbo_no_trips_14d   integer NOT NULL CHECK (limbo_no_trips_14d >= 0),
  limbo_trips_no_claim integer NOT NULL CHECK (limbo_trips_no_claim >= 0),
  limbo_ok             integer NOT NULL CHECK (limbo_ok >= 0),
  PRIMARY KEY (run_id, week_start),
  CONSTRAINT limbo_snapshot_weeks_run_id_fkey FOREIGN KEY (run_id) REFERENCES ops.limbo_snapshots(run_id) ON DELETE CASCADE,
  CONSTRAINT limbo_snapshot_weeks_check CHECK (((((limbo_no_identity + limbo_no_driver) + limbo_no_trips_14d) + limbo_trips_no_claim) + limbo_ok) = leads)
);

COMMENT ON TABLE ops.limbo_snapshot_weeks IS
  'Limbo counts of every completed run per lead week (week_start = ISO Monday of lead_date); they add up to ops.limbo_snapshots.';
