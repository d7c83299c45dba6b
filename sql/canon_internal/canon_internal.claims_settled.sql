-- Internal record of every paid or rejected claim's last known content, kept by the claims'
-- triggers; ops.check_invariants compares the claims with it (SETTLED_CLAIM_CHANGED,
-- SETTLED_CLAIM_REMOVED), so no change to settled money goes unseen.
CREATE TABLE canon_internal.claims_settled (
  lead_source_pk  text NOT NULL,
  milestone       integer NOT NULL,
  status          text NOT NULL CHECK (status IN ('paid', 'rejected')),
  amount_expected numeric(12,2) NOT NULL,
  currency        text NOT NULL,
  person_key      uuid,
  driver_id       text,
  lead_date       date NOT NULL,
  generated_at    timestamptz,
  paid_at         timestamptz,
  run_id          bigint,
  recorded_at     timestamptz NOT NULL DEFAULT now(),
  recorded_by     text NOT NULL DEFAULT CURRENT_USER,
  unsettled_at    timestamptz,
  unsettled_by    text,
  unsettled_txid  bigint,
  unsettled_to    text,
  unsettled_note  text,
  PRIMARY KEY (lead_source_pk, milestone),
  CONSTRAINT claims_settled_unsettled_check CHECK (((unsettled_at IS NULL) AND (unsettled_by IS NULL) AND (unsettled_txid IS NULL) AND (unsettled_to IS NULL) AND (unsettled_note IS NULL)) OR ((unsettled_at IS NOT NULL) AND (unsettled_to IN ('deleted', 'expected', 'generated', 'expired'))))
);

COMMENT ON TABLE canon_internal.claims_settled IS
  'Last known content of every paid or rejected claim, kept by the triggers of canon.claims_yango_cabinet_14d on every allowed change; a settled claim deleted or moved back to an unsettled status keeps its row, stamped unsettled_*. ops.check_invariants() reports claims that differ from it (SETTLED_CLAIM_CHANGED) and removals nobody explained (SETTLED_CLAIM_REMOVED).';
COMMENT ON COLUMN canon_internal.claims_settled.unsettled_at IS
  'When the settled claim was deleted or moved back to an unsettled status (NULL while it is settled).';
COMMENT ON COLUMN canon_internal.claims_settled.unsettled_by IS
  'Database user of the transaction that unsettled it.';
COMMENT ON COLUMN canon_internal.claims_settled.unsettled_txid IS
  'That transaction (txid_current(), as canon.identity_audit.txid: join to see which operation it was).';
COMMENT ON COLUMN canon_internal.claims_settled.unsettled_to IS
  '''deleted'' (also when its key changed), or the unsettled status it was moved to.';
COMMENT ON COLUMN canon_internal.claims_settled.unsettled_note IS
  'Why: the transaction''s cabinet.settled_change_note, or written by finance afterwards; NULL is reported by doctor (SETTLED_CLAIM_REMOVED).';
