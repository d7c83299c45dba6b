-- Reliability (issue 8): settled claims guarded against the job and recorded, so that
-- ops.check_invariants() (and `cabinet-leads doctor`) can tell when one changed anyway.

CREATE TABLE canon.claims_settled (
  lead_source_pk   text NOT NULL,
  milestone        integer NOT NULL,
  status           text NOT NULL CHECK (status IN ('paid', 'rejected')),
  amount_expected  numeric(12, 2) NOT NULL,
  currency         text NOT NULL,
  person_key       uuid,
  driver_id        text,
  lead_date        date NOT NULL,
  generated_at     timestamptz,
  paid_at          timestamptz,
  run_id           bigint,
  recorded_at      timestamptz NOT NULL DEFAULT now(),
  recorded_by      text NOT NULL DEFAULT current_user,
  PRIMARY KEY (lead_source_pk, milestone)
);
-- No foreign key to the claims on purpose: a settled claim deleted behind the guard's
-- back must leave its record behind, so that the invariant check can name it.
COMMENT ON TABLE canon.claims_settled IS
  'Last known content of every paid or rejected claim, kept by the triggers of canon.claims_yango_cabinet_14d on every allowed change; ops.check_invariants() reports claims that differ from it (SETTLED_CLAIM_CHANGED).';

-- Settled before this migration: recorded as they are now.
INSERT INTO canon.claims_settled (
  lead_source_pk, milestone, status, amount_expected, currency, person_key, driver_id, lead_date,
  generated_at, paid_at, run_id)
SELECT c.lead_source_pk, c.milestone, c.status, c.amount_expected, c.currency, c.person_key, c.driver_id,
       c.lead_date, c.generated_at, c.paid_at, c.run_id
FROM canon.claims_yango_cabinet_14d c
WHERE c.status IN ('paid', 'rejected');

-- The guard: a pipeline run can never change or delete a settled claim.
CREATE TRIGGER claims_protect_settled
  BEFORE UPDATE OR DELETE ON canon.claims_yango_cabinet_14d
  FOR EACH ROW EXECUTE FUNCTION canon.protect_settled_claims();
-- The record: every allowed change of a settled claim, once per statement.
CREATE TRIGGER claims_record_settled_insert
  AFTER INSERT ON canon.claims_yango_cabinet_14d
  REFERENCING NEW TABLE AS new_claims
  FOR EACH STATEMENT EXECUTE FUNCTION canon.protect_settled_claims();
CREATE TRIGGER claims_record_settled_update
  AFTER UPDATE ON canon.claims_yango_cabinet_14d
  REFERENCING OLD TABLE AS old_claims NEW TABLE AS new_claims
  FOR EACH STATEMENT EXECUTE FUNCTION canon.protect_settled_claims();
CREATE TRIGGER claims_record_settled_delete
  AFTER DELETE ON canon.claims_yango_cabinet_14d
  REFERENCING OLD TABLE AS old_claims
  FOR EACH STATEMENT EXECUTE FUNCTION canon.protect_settled_claims();
CREATE TRIGGER claims_record_settled_truncate
  AFTER TRUNCATE ON canon.claims_yango_cabinet_14d
  FOR EACH STATEMENT EXECUTE FUNCTION canon.protect_settled_claims();
