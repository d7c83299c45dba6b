-- Source record (a lead or a driver) to canonical person (SPEC 5). Written by
-- canon.link_decisions and the ops.* tools; every change is audited (canon.audit_identity_links).
CREATE TABLE canon.identity_links (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  source_table     text NOT NULL CHECK (source_table IN ('module_ct_cabinet_leads', 'drivers')),
  source_pk        text NOT NULL,
  person_key       uuid NOT NULL REFERENCES canon.identity_registry(person_key),
  match_rule       text NOT NULL,
  match_score      numeric(5,2) NOT NULL CHECK ((match_score >= 0) AND (match_score <= 100)),
  confidence_level text NOT NULL CHECK (confidence_level IN ('HIGH', 'MEDIUM', 'LOW')),
  evidence         jsonb NOT NULL DEFAULT '{}'::jsonb,
  linked_at        timestamptz NOT NULL DEFAULT now(),
  run_id           bigint REFERENCES canon.ingestion_runs(id),
  UNIQUE (source_table, source_pk)
);

CREATE INDEX identity_links_person_key_idx ON canon.identity_links (person_key, source_table, linked_at DESC);

CREATE TRIGGER identity_links_audit_delete
  AFTER DELETE ON canon.identity_links REFERENCING OLD TABLE AS old_links
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.audit_identity_links();
CREATE TRIGGER identity_links_audit_insert
  AFTER INSERT ON canon.identity_links REFERENCING NEW TABLE AS new_links
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.audit_identity_links();
CREATE TRIGGER identity_links_audit_update
  AFTER UPDATE ON canon.identity_links REFERENCING OLD TABLE AS old_links NEW TABLE AS new_links
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.audit_identity_links();
CREATE CONSTRAINT TRIGGER identity_links_lead_not_open
  AFTER INSERT OR UPDATE ON canon.identity_links
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW WHEN (new.source_table = 'module_ct_cabinet_leads')
  EXECUTE FUNCTION canon.enforce_lead_not_linked_and_open();
CREATE TRIGGER identity_links_lead_state_delete
  AFTER DELETE ON canon.identity_links REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.mark_lead_state_dirty_links();
CREATE TRIGGER identity_links_lead_state_insert
  AFTER INSERT ON canon.identity_links REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.mark_lead_state_dirty_links();
CREATE TRIGGER identity_links_lead_state_update
  AFTER UPDATE ON canon.identity_links REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.mark_lead_state_dirty_links();
CREATE TRIGGER identity_links_mark_lead_pending
  AFTER DELETE OR UPDATE OF source_table, source_pk ON canon.identity_links
  FOR EACH ROW
  EXECUTE FUNCTION canon.mark_lead_keys_pending();
CREATE CONSTRAINT TRIGGER identity_links_person_keeps_link
  AFTER DELETE OR UPDATE OF person_key ON canon.identity_links
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW
  EXECUTE FUNCTION canon.enforce_person_has_link();
CREATE TRIGGER identity_links_truncate_mark_lead_pending
  AFTER TRUNCATE ON canon.identity_links
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.mark_lead_keys_pending();

COMMENT ON TABLE canon.identity_links IS
  'Source record (lead or driver) to canonical person. A driver belongs to at most one person.';
