-- The stored lead state counted by lead date, stage and the flags the run's figures need,
-- kept by a statement trigger on canon.cabinet_lead_state (canon.count_lead_state_changes):
-- step 7's scope figures and the snapshot's counts per lead week read these few hundred
-- rows instead of every stored lead. Replaces the scope counters cached in the meta row
-- (recounted over the whole scope whenever any state changed: every run of a backfill).
CREATE TABLE IF NOT EXISTS canon.cabinet_lead_state_counts (
  lead_date      date    NOT NULL,
  limbo_stage    text    NOT NULL,
  with_identity  boolean NOT NULL,
  with_driver    boolean NOT NULL,
  with_trips     boolean NOT NULL,
  with_rule      boolean NOT NULL,
  -- (no CHECK (leads >= 0): an upsert checks its proposed row, here the delta, before it
  -- finds the counter the delta is added to)
  leads          bigint  NOT NULL,
  PRIMARY KEY (lead_date, limbo_stage, with_identity, with_driver, with_trips, with_rule)
);
COMMENT ON TABLE canon.cabinet_lead_state_counts IS
  'Stored lead state rows (canon.cabinet_lead_state) counted by lead_date, limbo_stage, with_identity (person_key set), with_driver (driver_id set), with_trips (trips_in_window > 0), with_rule (window_days set); kept equal to that table by the trigger canon.count_lead_state_changes (ops.check_invariants verifies it).';

DROP TRIGGER IF EXISTS cabinet_lead_state_count_insert ON canon.cabinet_lead_state;
CREATE TRIGGER cabinet_lead_state_count_insert
  AFTER INSERT ON canon.cabinet_lead_state
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION canon.count_lead_state_changes();
DROP TRIGGER IF EXISTS cabinet_lead_state_count_update ON canon.cabinet_lead_state;
CREATE TRIGGER cabinet_lead_state_count_update
  AFTER UPDATE ON canon.cabinet_lead_state
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION canon.count_lead_state_changes();
DROP TRIGGER IF EXISTS cabinet_lead_state_count_delete ON canon.cabinet_lead_state;
CREATE TRIGGER cabinet_lead_state_count_delete
  AFTER DELETE ON canon.cabinet_lead_state
  REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION canon.count_lead_state_changes();
DROP TRIGGER IF EXISTS cabinet_lead_state_count_truncate ON canon.cabinet_lead_state;
CREATE TRIGGER cabinet_lead_state_count_truncate
  AFTER TRUNCATE ON canon.cabinet_lead_state
  FOR EACH STATEMENT EXECUTE FUNCTION canon.count_lead_state_changes();

-- Counted once from what is stored.
SELECT ops.recount_lead_state_counts();

ALTER TABLE canon.cabinet_lead_state_meta
  DROP COLUMN IF EXISTS scope_counts,
  DROP COLUMN IF EXISTS scope_counts_from,
  DROP COLUMN IF EXISTS scope_counts_at;
