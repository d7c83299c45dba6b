-- A person's "not this driver" answer for a lead (docs/matching.md, "Labels"): the pair is
-- never linked again, by the rules (canon.lead_candidates: NOT_THIS_DRIVER) or by the
-- probabilistic tier (canon.probabilistic_decisions), and the labels are the data the
-- tier's thresholds are checked on. Written by ops.not_this_driver.
CREATE TABLE canon.lead_driver_labels (
  lead_source_pk text NOT NULL,
  driver_id      text NOT NULL,
  label          text NOT NULL DEFAULT 'NOT_THIS_DRIVER' CHECK (label = 'NOT_THIS_DRIVER'),
  note           text NOT NULL CHECK (btrim(note) <> ''),
  labelled_by    text NOT NULL DEFAULT current_user,
  labelled_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (lead_source_pk, driver_id)
);

COMMENT ON TABLE canon.lead_driver_labels IS
  'A person''s answer that a lead is not a driver (NOT_THIS_DRIVER): the pair is never linked again by the rules nor the probabilistic tier. Written by ops.not_this_driver.';
