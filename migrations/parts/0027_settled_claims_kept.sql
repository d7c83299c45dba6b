-- Money paths are race-free (issue 14, item 5): the record of a settled claim outlives
-- the claim. A paid or rejected claim that is deleted, or moved back to an unsettled
-- status, keeps its row in canon.claims_settled, stamped with when, by whom, in which
-- transaction, to what and why (the note), so that settled money can never vanish
-- silently, whichever path removed it: ops.check_invariants() reports it
-- (SETTLED_CLAIM_REMOVED) until finance writes down why.
ALTER TABLE canon.claims_settled
  ADD COLUMN unsettled_at   timestamptz,
  ADD COLUMN unsettled_by   text,
  ADD COLUMN unsettled_txid bigint,
  ADD COLUMN unsettled_to   text,
  ADD COLUMN unsettled_note text,
  ADD CONSTRAINT claims_settled_unsettled_check CHECK (
    (unsettled_at IS NULL AND unsettled_by IS NULL AND unsettled_txid IS NULL AND unsettled_to IS NULL AND unsettled_note IS NULL)
    OR (unsettled_at IS NOT NULL AND unsettled_to IN ('deleted', 'expected', 'generated', 'expired')));
COMMENT ON TABLE canon.claims_settled IS
  'Last known content of every paid or rejected claim, kept by the triggers of canon.claims_yango_cabinet_14d on every allowed change; a settled claim deleted or moved back to an unsettled status keeps its row, stamped unsettled_*. ops.check_invariants() reports claims that differ from it (SETTLED_CLAIM_CHANGED) and removals nobody explained (SETTLED_CLAIM_REMOVED).';
COMMENT ON COLUMN canon.claims_settled.unsettled_at IS 'When the settled claim was deleted or moved back to an unsettled status (NULL while it is settled).';
COMMENT ON COLUMN canon.claims_settled.unsettled_by IS 'Database user of the transaction that unsettled it.';
COMMENT ON COLUMN canon.claims_settled.unsettled_txid IS 'That transaction (txid_current(), as canon.identity_audit.txid: join to see which operation it was).';
COMMENT ON COLUMN canon.claims_settled.unsettled_to IS '''deleted'' (also when its key changed), or the unsettled status it was moved to.';
COMMENT ON COLUMN canon.claims_settled.unsettled_note IS 'Why: the transaction''s cabinet.settled_change_note, or written by finance afterwards; NULL is reported by doctor (SETTLED_CLAIM_REMOVED).';
