-- Why a lead has no person (SPEC 6): reason, normalised keys, up to 5 candidates and the retry
-- bookkeeping. Written by canon.link_decisions and the ops.* tools; people read it through
-- ops.v_cabinet_leads_limbo and the review queue.
CREATE TABLE canon.identity_unmatched (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  source_table     text NOT NULL CHECK (source_table = 'module_ct_cabinet_leads'),
  source_pk        text NOT NULL,
  reason_code      text NOT NULL CHECK (reason_code IN ('AMBIGUOUS', 'CONFLICT', 'WEAK_MATCH_ONLY', 'SHARED_KEY', 'NO_CANDIDATES', 'MISSING_KEYS', 'PROBABLE_MATCH', 'MANUAL_IGNORE')),
  details          jsonb NOT NULL DEFAULT '{}'::jsonb,
  candidates       jsonb NOT NULL DEFAULT '[]'::jsonb CHECK ((jsonb_typeof(candidates) = 'array') AND (jsonb_array_length(candidates) <= 5)),
  status           text NOT NULL DEFAULT 'OPEN' CHECK (status IN ('OPEN', 'RESOLVED', 'IGNORED')),
  first_attempt_at timestamptz NOT NULL DEFAULT now(),
  last_attempt_at  timestamptz NOT NULL DEFAULT now(),
  first_run_id     bigint REFERENCES canon.ingestion_runs(id),
  last_run_id      bigint REFERENCES canon.ingestion_runs(id),
  attempts         integer NOT NULL DEFAULT 1 CHECK (attempts >= 1),
  resolved_at      timestamptz,
  note             text,
  retry_due        boolean NOT NULL DEFAULT false,
  UNIQUE (source_table, source_pk)
) WITH (autovacuum_vacuum_scale_factor='0.02', autovacuum_vacuum_threshold='1000');

CREATE INDEX identity_unmatched_open_idx ON canon.identity_unmatched (last_attempt_at)
  WHERE status = 'OPEN';
CREATE INDEX identity_unmatched_retry_due_idx ON canon.identity_unmatched (last_attempt_at)
  WHERE (status = 'OPEN') AND retry_due;
-- The probabilistic tier's blocks seen from a changed driver (canon.mark_tier_retries_due):
-- the OPEN leads the tier sees whose plate (as evaluated, details) is one edit from its
-- plate, or whose name has one of its name keys. Only those leads, not every lead key: a
-- run appends its few hundred such rows (fast update) and probes a small index.
CREATE INDEX identity_unmatched_plate_edit_keys_idx ON canon.identity_unmatched USING gin (canon.plate_edit_keys(details ->> 'plate_norm'))
  WHERE status = 'OPEN' AND reason_code IN ('NO_CANDIDATES', 'WEAK_MATCH_ONLY', 'PROBABLE_MATCH') AND (details ->> 'plate_norm') IS NOT NULL;
CREATE INDEX identity_unmatched_name_keys_idx ON canon.identity_unmatched USING gin (canon.name_phonetic_keys(details ->> 'name_norm'))
  WHERE status = 'OPEN' AND reason_code IN ('NO_CANDIDATES', 'WEAK_MATCH_ONLY', 'PROBABLE_MATCH') AND (details ->> 'name_norm') IS NOT NULL;

CREATE CONSTRAINT TRIGGER identity_unmatched_lead_not_linked
  AFTER INSERT OR UPDATE ON canon.identity_unmatched
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW WHEN ((new.source_table = 'module_ct_cabinet_leads') AND (new.status = 'OPEN'))
  EXECUTE FUNCTION canon.enforce_lead_not_linked_and_open();
CREATE TRIGGER identity_unmatched_mark_lead_pending
  AFTER DELETE OR UPDATE OF source_table, source_pk ON canon.identity_unmatched
  FOR EACH ROW
  EXECUTE FUNCTION canon.mark_lead_keys_pending();
CREATE TRIGGER identity_unmatched_reopened_due
  BEFORE UPDATE OF status ON canon.identity_unmatched
  FOR EACH ROW WHEN ((new.status = 'OPEN') AND (old.status <> 'OPEN') AND (NOT (new.last_attempt_at IS DISTINCT FROM old.last_attempt_at)))
  EXECUTE FUNCTION canon.mark_reopened_lead_due();
CREATE TRIGGER identity_unmatched_truncate_mark_lead_pending
  AFTER TRUNCATE ON canon.identity_unmatched
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.mark_lead_keys_pending();

COMMENT ON TABLE canon.identity_unmatched IS
  'Why a lead has no person: reason, normalised keys, up to 5 candidates, retry bookkeeping.';
COMMENT ON COLUMN canon.identity_unmatched.retry_due IS
  'True when a driver sharing a key with this lead (phone, plate or licence, as the matcher compares them) was indexed, re-indexed or removed since its last attempt: an OPEN lead is retried only then. Set by canon.mark_retries_due, cleared by each attempt; set when a lead is reopened by hand.';
