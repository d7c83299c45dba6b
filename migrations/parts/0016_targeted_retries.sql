-- Targeted retries: an OPEN unmatched lead is retried only when a driver that could
-- change its outcome changed since it was last attempted, not after any change of the
-- driver index (which retried every OPEN lead, 2,000 a run, for many runs).

-- A lead is due for a retry when a driver sharing one of its keys (phone, plate, licence)
-- was indexed, re-indexed or removed since its last attempt: set by
-- canon.match_cabinet_leads before it selects the batch, cleared by every attempt.
ALTER TABLE canon.identity_unmatched ADD COLUMN IF NOT EXISTS retry_due boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN canon.identity_unmatched.retry_due IS
  'True when a driver sharing a key with this lead (phone, plate or licence, as the matcher compares them) was indexed, re-indexed or removed since its last attempt: an OPEN lead is retried only then. Set by canon.match_cabinet_leads, cleared by each attempt; set when a lead is reopened by hand.';
CREATE INDEX IF NOT EXISTS identity_unmatched_retry_due_idx
  ON canon.identity_unmatched (last_attempt_at) WHERE status = 'OPEN' AND retry_due;

-- The time up to which driver index changes were checked against the OPEN leads.
ALTER TABLE canon.driver_index_state ADD COLUMN IF NOT EXISTS retry_checked_at timestamptz;
COMMENT ON COLUMN canon.driver_index_state.retry_checked_at IS
  'Driver index rows indexed (and keys logged in canon.driver_index_key_changes) after this time are still to be checked against the OPEN unmatched leads by canon.match_cabinet_leads. NULL: never checked (every OPEN lead is due).';

-- The changed drivers are found by the time they were indexed.
CREATE INDEX IF NOT EXISTS driver_index_indexed_at_idx ON canon.driver_index (indexed_at);

-- Keys a driver no longer has: the old keys of a re-indexed driver whose keys changed,
-- and the keys of a removed driver. A lead that shares one may have had that driver as
-- a candidate (AMBIGUOUS, CONFLICT, a shared phone): it is due. Written by
-- canon.refresh_driver_index, read and pruned by canon.match_cabinet_leads.
CREATE TABLE IF NOT EXISTS canon.driver_index_key_changes (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  driver_id     text NOT NULL,
  change        text NOT NULL CHECK (change IN ('KEYS_CHANGED', 'REMOVED')),
  phone_norm    text,
  license_norm  text,
  plate_norm    text,
  logged_at     timestamptz NOT NULL DEFAULT now(),
  run_id        bigint
);
CREATE INDEX IF NOT EXISTS driver_index_key_changes_logged_at_idx ON canon.driver_index_key_changes (logged_at);
COMMENT ON TABLE canon.driver_index_key_changes IS
  'Keys drivers lost (re-indexed with other keys, or removed from canon.driver_index) not yet checked against the OPEN unmatched leads; pruned by canon.match_cabinet_leads once checked.';

-- The leads of a changed driver are found by key.
CREATE INDEX IF NOT EXISTS lead_keys_plate_idx ON canon.lead_keys (plate_norm) WHERE plate_norm IS NOT NULL;
CREATE INDEX IF NOT EXISTS lead_keys_license_idx ON canon.lead_keys (license_norm) WHERE license_norm IS NOT NULL;

-- A lead reopened by hand (status set back to OPEN, not by an attempt) is due.
DROP TRIGGER IF EXISTS identity_unmatched_reopened_due ON canon.identity_unmatched;
CREATE TRIGGER identity_unmatched_reopened_due
  BEFORE UPDATE OF status ON canon.identity_unmatched
  FOR EACH ROW
  WHEN (NEW.status = 'OPEN' AND OLD.status <> 'OPEN' AND NEW.last_attempt_at IS NOT DISTINCT FROM OLD.last_attempt_at)
  EXECUTE FUNCTION canon.mark_reopened_lead_due();

-- Existing databases: any OPEN lead may be due (the changed_at gate left some pending).
UPDATE canon.identity_unmatched SET retry_due = true WHERE status = 'OPEN' AND NOT retry_due;
UPDATE canon.driver_index_state SET retry_checked_at = now() WHERE retry_checked_at IS NULL;
COMMENT ON COLUMN canon.driver_index_state.changed_at IS
  'Last time canon.refresh_driver_index wrote or removed rows of canon.driver_index (reported by runs; OPEN unmatched leads are retried when due, see canon.identity_unmatched.retry_due).';
