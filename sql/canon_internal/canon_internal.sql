-- The schema canon_internal: what the product keeps to be fast and to know what it has read
-- (lead keys, the driver index, the stored lead state and its counters, marks, scan
-- bookkeeping, the record of settled claims). Every table here has a live definition and a
-- doctor check (ops.check_caches, ops.check_invariants); nobody edits them by hand:
-- `cabinet-leads doctor --repair` rebuilds what drifted (docs/change-detection.md).
CREATE SCHEMA canon_internal;
COMMENT ON SCHEMA canon_internal IS 'Cabinet leads reconciliation, internal: caches and bookkeeping kept by the pipeline (never edited by hand; doctor checks them).';
