-- Never-evaluated lead rows are listed in a table of their own instead of a flag on
-- canon.lead_keys. Clearing the flag of 2,000 evaluated rows rewrote 2,000 wide rows and
-- their seven index entries each (the flag was in a partial index's predicate, so no
-- update was HOT): 65 ms of a steady run. Deleting 2,000 rows of a small table with one
-- index costs a few.
CREATE TABLE IF NOT EXISTS canon.lead_keys_pending (
  lead_id    integer PRIMARY KEY,
  lead_date  date,
  marked_at  timestamptz NOT NULL DEFAULT now()
);
-- The batch reads the pending rows of its scope only (rows out of days_back stay listed).
CREATE INDEX IF NOT EXISTS lead_keys_pending_lead_date_idx ON canon.lead_keys_pending (lead_date);
COMMENT ON TABLE canon.lead_keys_pending IS
  'Lead rows (canon.lead_keys.lead_id, with their keyed lead_date) whose lead key may not be evaluated yet (no link, no unmatched row): new rows, and keys whose link or unmatched row was removed. canon.match_cabinet_leads reads it for never-evaluated leads and deletes the rows of the keys it evaluated.';
INSERT INTO canon.lead_keys_pending (lead_id, lead_date)
SELECT k.lead_id, k.lead_date FROM canon.lead_keys k WHERE k.match_pending
ON CONFLICT DO NOTHING;
DROP INDEX IF EXISTS canon.lead_keys_pending_idx;
ALTER TABLE canon.lead_keys DROP COLUMN IF EXISTS match_pending;
