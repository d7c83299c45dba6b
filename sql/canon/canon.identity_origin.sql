-- One row per person that came from a cabinet lead, written in the same transaction as the lead's
-- link (SPEC 5).
CREATE TABLE canon.identity_origin (
  person_key        uuid PRIMARY KEY REFERENCES canon.identity_registry(person_key),
  origin_tag        text NOT NULL CHECK (origin_tag = 'cabinet_lead'),
  origin_source_id  text NOT NULL,
  confidence_level  text NOT NULL CHECK (confidence_level IN ('HIGH', 'MEDIUM', 'LOW')),
  origin_created_at timestamp,
  decided_by        text NOT NULL CHECK (decided_by IN ('system', 'manual')),
  decided_at        timestamptz NOT NULL DEFAULT now(),
  run_id            bigint REFERENCES canon.ingestion_runs(id)
);

CREATE INDEX identity_origin_source_idx ON canon.identity_origin (origin_source_id);

COMMENT ON TABLE canon.identity_origin IS
  'One row per person that came from a cabinet lead; written in the same transaction as the lead link.';
