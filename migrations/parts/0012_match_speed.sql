-- Match speed (issue 7): the batch selection of canon.match_cabinet_leads costs what the
-- batch costs, not what the whole lead scope costs.

-- Unmatched leads are retried only when the driver index changed since their last
-- attempt; canon.refresh_driver_index sets changed_at whenever it writes or removes rows.
ALTER TABLE canon.driver_index_state ADD COLUMN IF NOT EXISTS changed_at timestamptz;
COMMENT ON COLUMN canon.driver_index_state.changed_at IS
  'Last time canon.refresh_driver_index wrote or removed rows of canon.driver_index: an OPEN unmatched lead last attempted at or after it is not retried (nothing it could match has changed).';
-- Existing databases: the index may have changed since any attempt: every OPEN lead is retried once.
UPDATE canon.driver_index_state SET changed_at = now() WHERE changed_at IS NULL;

-- Never-evaluated leads are found among the lead rows marked match_pending (a superset:
-- new rows are pending; the match step clears the flag of the keys it evaluated; a key
-- whose link or unmatched row goes away is marked pending again by trigger), through a
-- partial index that holds only pending rows.
ALTER TABLE canon.lead_keys ADD COLUMN IF NOT EXISTS match_pending boolean NOT NULL DEFAULT true;
COMMENT ON COLUMN canon.lead_keys.match_pending IS
  'True when the lead key of this row may not be evaluated yet (no link, no unmatched row): new rows, and keys whose link or unmatched row was removed. Cleared by canon.match_cabinet_leads.';
UPDATE canon.lead_keys k SET match_pending = false
WHERE k.match_pending
  AND (EXISTS (SELECT 1 FROM canon.identity_links l
               WHERE l.source_table = 'module_ct_cabinet_leads' AND l.source_pk = k.lead_source_pk)
       OR EXISTS (SELECT 1 FROM canon.identity_unmatched u
                  WHERE u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = k.lead_source_pk
                    AND u.status IN ('OPEN', 'IGNORED')));
CREATE INDEX IF NOT EXISTS lead_keys_pending_idx ON canon.lead_keys (lead_date, lead_id) WHERE match_pending;

DROP TRIGGER IF EXISTS identity_links_mark_lead_pending ON canon.identity_links;
CREATE TRIGGER identity_links_mark_lead_pending
  AFTER DELETE OR UPDATE OF source_table, source_pk ON canon.identity_links
  FOR EACH ROW EXECUTE FUNCTION canon.mark_lead_keys_pending();
DROP TRIGGER IF EXISTS identity_links_truncate_mark_lead_pending ON canon.identity_links;
CREATE TRIGGER identity_links_truncate_mark_lead_pending
  AFTER TRUNCATE ON canon.identity_links
  FOR EACH STATEMENT EXECUTE FUNCTION canon.mark_lead_keys_pending();
DROP TRIGGER IF EXISTS identity_unmatched_mark_lead_pending ON canon.identity_unmatched;
CREATE TRIGGER identity_unmatched_mark_lead_pending
  AFTER DELETE OR UPDATE OF source_table, source_pk ON canon.identity_unmatched
  FOR EACH ROW EXECUTE FUNCTION canon.mark_lead_keys_pending();
DROP TRIGGER IF EXISTS identity_unmatched_truncate_mark_lead_pending ON canon.identity_unmatched;
CREATE TRIGGER identity_unmatched_truncate_mark_lead_pending
  AFTER TRUNCATE ON canon.identity_unmatched
  FOR EACH STATEMENT EXECUTE FUNCTION canon.mark_lead_keys_pending();
