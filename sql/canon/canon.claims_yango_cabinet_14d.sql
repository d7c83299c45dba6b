-- The claims (SPEC 7c): one row per lead and milestone. Inserted by canon.insert_missing_claims;
-- finance sets paid or rejected, and the job never changes such a claim (trigger
-- claims_protect_settled; canon_internal.claims_settled keeps their record).
CREATE TABLE canon.claims_yango_cabinet_14d (
  lead_source_pk  text NOT NULL,
  milestone       integer NOT NULL CHECK (milestone > 0),
  person_key      uuid REFERENCES canon.identity_registry(person_key),
  driver_id       text,
  lead_date       date NOT NULL,
  amount_expected numeric(12,2) NOT NULL CHECK (amount_expected >= 0),
  currency        text NOT NULL DEFAULT 'PEN',
  status          text NOT NULL CHECK (status IN ('expected', 'generated', 'paid', 'rejected', 'expired')),
  generated_at    timestamptz,
  paid_at         timestamptz,
  run_id          bigint REFERENCES canon.ingestion_runs(id),
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (lead_source_pk, milestone)
);

CREATE INDEX claims_yango_cabinet_14d_lead_date_status_idx ON canon.claims_yango_cabinet_14d (lead_date, status);

CREATE TRIGGER claims_lead_state_delete
  AFTER DELETE ON canon.claims_yango_cabinet_14d REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.mark_lead_state_dirty_claims();
CREATE TRIGGER claims_lead_state_insert
  AFTER INSERT ON canon.claims_yango_cabinet_14d REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.mark_lead_state_dirty_claims();
CREATE TRIGGER claims_lead_state_update
  AFTER UPDATE ON canon.claims_yango_cabinet_14d REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.mark_lead_state_dirty_claims();
CREATE TRIGGER claims_protect_settled
  BEFORE DELETE OR UPDATE ON canon.claims_yango_cabinet_14d
  FOR EACH ROW
  EXECUTE FUNCTION canon.protect_settled_claims();
CREATE TRIGGER claims_record_settled_delete
  AFTER DELETE ON canon.claims_yango_cabinet_14d REFERENCING OLD TABLE AS old_claims
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.protect_settled_claims();
CREATE TRIGGER claims_record_settled_insert
  AFTER INSERT ON canon.claims_yango_cabinet_14d REFERENCING NEW TABLE AS new_claims
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.protect_settled_claims();
CREATE TRIGGER claims_record_settled_truncate
  AFTER TRUNCATE ON canon.claims_yango_cabinet_14d
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.protect_settled_claims();
CREATE TRIGGER claims_record_settled_update
  AFTER UPDATE ON canon.claims_yango_cabinet_14d REFERENCING OLD TABLE AS old_claims NEW TABLE AS new_claims
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.protect_settled_claims();

COMMENT ON TABLE canon.claims_yango_cabinet_14d IS
  'One claim per (lead_source_pk, milestone). The job never overwrites a paid or rejected claim.';
