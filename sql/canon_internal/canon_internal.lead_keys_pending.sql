-- Internal marks: lead rows whose key may not be evaluated yet (no link, no unmatched row).
-- Written by canon.refresh_lead_keys and triggers; read by canon.select_lead_batch, which deletes
-- the marks of the keys it evaluated.
CREATE TABLE canon_internal.lead_keys_pending (
  lead_id   integer PRIMARY KEY,
  lead_date date,
  marked_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX lead_keys_pending_lead_date_idx ON canon_internal.lead_keys_pending (lead_date);

COMMENT ON TABLE canon_internal.lead_keys_pending IS
  'Lead rows (canon_internal.lead_keys.lead_id, with their keyed lead_date) whose lead key may not be evaluated yet (no link, no unmatched row): new rows, and keys whose link or unmatched row was removed. canon.select_lead_batch reads it for never-evaluated leads and deletes the rows of the keys it evaluated.';
