-- Operator tools (issue 6): the identity audit trail, the triggers that feed it from
-- canon.identity_links whoever writes there (the job, ops.resolve_lead / unlink_lead, a
-- hand-written statement in psql), and the MANUAL_IGNORE reason of ops.ignore_lead.

CREATE TABLE canon.identity_audit (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at            timestamptz NOT NULL DEFAULT now(),
  action        text NOT NULL CHECK (action IN ('LINK', 'UNLINK', 'RELINK', 'RESOLVE', 'IGNORE')),
  source_table  text NOT NULL,
  source_pk     text NOT NULL,
  person_key    uuid,
  driver_id     text,
  match_rule    text,
  match_score   numeric(5, 2),
  decided_by    text NOT NULL CHECK (decided_by IN ('system', 'manual')),
  actor         text NOT NULL,
  run_id        bigint,
  db_user       text NOT NULL DEFAULT current_user,
  client        text DEFAULT nullif(current_setting('application_name', true), ''),
  txid          bigint NOT NULL DEFAULT txid_current(),
  note          text,
  details       jsonb NOT NULL DEFAULT '{}'::jsonb
);
-- No foreign keys on purpose: the audit outlives the persons, links and runs it names.
CREATE INDEX identity_audit_source_idx ON canon.identity_audit (source_pk, id);
CREATE INDEX identity_audit_person_idx ON canon.identity_audit (person_key) WHERE person_key IS NOT NULL;
COMMENT ON TABLE canon.identity_audit IS
  'Append-only history of identity decisions: every LINK / UNLINK / RELINK of canon.identity_links (by trigger) and every manual RESOLVE / IGNORE, with actor (run or database user), time and note.';
COMMENT ON COLUMN canon.identity_audit.actor IS '''run <id>'' when the pipeline run <id> wrote the link, else the database user (current_user).';
COMMENT ON COLUMN canon.identity_audit.client IS 'application_name of the session; the CLI sets it to cabinet-leads <command> (<os user>@<host>).';
COMMENT ON COLUMN canon.identity_audit.txid IS 'Transaction id: the rows of one operation (e.g. a resolve and its links) share it.';

-- Append-only: UPDATE, DELETE and TRUNCATE are refused whoever asks.
CREATE TRIGGER identity_audit_append_only
  BEFORE UPDATE OR DELETE ON canon.identity_audit
  FOR EACH ROW EXECUTE FUNCTION canon.refuse_audit_change();
CREATE TRIGGER identity_audit_no_truncate
  BEFORE TRUNCATE ON canon.identity_audit
  FOR EACH STATEMENT EXECUTE FUNCTION canon.refuse_audit_change();
REVOKE UPDATE, DELETE, TRUNCATE ON canon.identity_audit FROM PUBLIC;

-- Every link written, removed or moved is audited, set-based: one statement-level
-- trigger per event with its transition table (one INSERT ... SELECT per statement).
CREATE TRIGGER identity_links_audit_insert
  AFTER INSERT ON canon.identity_links
  REFERENCING NEW TABLE AS new_links
  FOR EACH STATEMENT EXECUTE FUNCTION canon.audit_identity_links();
CREATE TRIGGER identity_links_audit_delete
  AFTER DELETE ON canon.identity_links
  REFERENCING OLD TABLE AS old_links
  FOR EACH STATEMENT EXECUTE FUNCTION canon.audit_identity_links();
CREATE TRIGGER identity_links_audit_update
  AFTER UPDATE ON canon.identity_links
  REFERENCING OLD TABLE AS old_links NEW TABLE AS new_links
  FOR EACH STATEMENT EXECUTE FUNCTION canon.audit_identity_links();

-- A lead ignored by hand before the job ever evaluated it has no matcher reason yet.
ALTER TABLE canon.identity_unmatched DROP CONSTRAINT IF EXISTS identity_unmatched_reason_code_check;
ALTER TABLE canon.identity_unmatched ADD CONSTRAINT identity_unmatched_reason_code_check
  CHECK (reason_code IN ('AMBIGUOUS', 'CONFLICT', 'WEAK_MATCH_ONLY', 'SHARED_KEY', 'NO_CANDIDATES', 'MISSING_KEYS', 'MANUAL_IGNORE'));
