-- One row per canonical person (SPEC 5), created only with the link that needs it; a person
-- without a link is refused at commit (trigger identity_registry_has_link).
CREATE TABLE canon.identity_registry (
  person_key       uuid DEFAULT canon.new_person_key() PRIMARY KEY,
  confidence_level text NOT NULL CHECK (confidence_level IN ('HIGH', 'MEDIUM', 'LOW')),
  primary_phone    text,
  primary_license  text,
  primary_name     text,
  created_run_id   bigint REFERENCES canon.ingestion_runs(id),
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE CONSTRAINT TRIGGER identity_registry_has_link
  AFTER INSERT ON canon.identity_registry
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW
  EXECUTE FUNCTION canon.enforce_person_has_link();

COMMENT ON TABLE canon.identity_registry IS
  'One row per canonical person. Created only together with the link that needs it.';
