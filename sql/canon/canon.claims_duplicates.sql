-- Claims made twice for one lead under lead keys that differed only by blanks, taken out of
-- canon.claims_yango_cabinet_14d by ops.repair_lead_keys as they were. Append-only; finance reads
-- it through ops.v_cabinet_claims_duplicated.
CREATE TABLE canon.claims_duplicates (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  lead_source_pk   text NOT NULL,
  milestone        integer NOT NULL,
  claimed_as       text NOT NULL,
  kept_claimed_as  text NOT NULL,
  status           text NOT NULL,
  amount_expected  numeric(12,2) NOT NULL,
  currency         text NOT NULL,
  person_key       uuid,
  driver_id        text,
  lead_date        date NOT NULL,
  generated_at     timestamptz,
  paid_at          timestamptz,
  run_id           bigint,
  claim_created_at timestamptz,
  claim_updated_at timestamptz,
  set_aside_at     timestamptz NOT NULL DEFAULT now(),
  set_aside_by     text NOT NULL DEFAULT CURRENT_USER,
  repair_run_id    bigint REFERENCES canon.ingestion_runs(id),
  note             text NOT NULL
);

CREATE INDEX claims_duplicates_lead_idx ON canon.claims_duplicates (lead_source_pk, milestone);

COMMENT ON TABLE canon.claims_duplicates IS
  'Claims made twice for one cabinet lead (under lead keys that differ only by blanks at their ends), taken out of canon.claims_yango_cabinet_14d by ops.repair_lead_keys as they were; the claim kept for (lead_source_pk, milestone) stays there. Append-only record for finance: ops.v_cabinet_claims_duplicated.';
COMMENT ON COLUMN canon.claims_duplicates.lead_source_pk IS
  'The lead''s key (canon.lead_source_pk) now: the kept claim is in canon.claims_yango_cabinet_14d under it.';
COMMENT ON COLUMN canon.claims_duplicates.claimed_as IS
  'The key this duplicate claim was made under (with its blanks).';
COMMENT ON COLUMN canon.claims_duplicates.kept_claimed_as IS
  'The key the kept claim was made under when this one was set aside.';
