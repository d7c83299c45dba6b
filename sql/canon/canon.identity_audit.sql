-- Append-only history of identity decisions (SPEC 5): every LINK, UNLINK and RELINK of
-- canon.identity_links (trigger) and every manual RESOLVE or IGNORE, with who, when and why.
-- Nobody may change or delete a row (trigger identity_audit_append_only).
CREATE TABLE canon.identity_audit (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at           timestamptz NOT NULL DEFAULT now(),
  action       text NOT NULL CHECK (action IN ('LINK', 'UNLINK', 'RELINK', 'RESOLVE', 'IGNORE')),
  source_table text NOT NULL,
  source_pk    text NOT NULL,
  person_key   uuid,
  driver_id    text,
  match_rule   text,
  match_score  numeric(5,2),
  decided_by   text NOT NULL CHECK (decided_by IN ('system', 'manual')),
  actor        text NOT NULL,
  run_id       bigint,
  db_user      text NOT NULL DEFAULT CURRENT_USER,
  client       text DEFAULT NULLIF(current_setting('application_name', true), ''),
  txid         bigint NOT NULL DEFAULT txid_current(),
  note         text,
  details      jsonb NOT NULL DEFAULT '{}'::jsonb
);

CREATE INDEX identity_audit_person_idx ON canon.identity_audit (person_key)
  WHERE person_key IS NOT NULL;
CREATE INDEX identity_audit_source_idx ON canon.identity_audit (source_pk, id);

CREATE TRIGGER identity_audit_append_only
  BEFORE DELETE OR UPDATE ON canon.identity_audit
  FOR EACH ROW
  EXECUTE FUNCTION canon.refuse_audit_change();
CREATE TRIGGER identity_audit_no_truncate
  BEFORE TRUNCATE ON canon.identity_audit
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.refuse_audit_change();

COMMENT ON TABLE canon.identity_audit IS
  'Append-only history of identity decisions: every LINK / UNLINK / RELINK of canon.identity_links (by trigger) and every manual RESOLVE / IGNORE, with actor (run or database user), time and note.';
COMMENT ON COLUMN canon.identity_audit.actor IS
  '''run <id>'' when the pipeline run <id> wrote the link, else the database user (current_user).';
COMMENT ON COLUMN canon.identity_audit.client IS
  'application_name of the session; the CLI sets it to cabinet-leads <command> (<os user>@<host>).';
COMMENT ON COLUMN canon.identity_audit.txid IS
  'Transaction id: the rows of one operation (e.g. a resolve and its links) share it.';
