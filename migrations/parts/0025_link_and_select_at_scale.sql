-- New persons get time-ordered keys (canon.new_person_key, UUID v7), also when a row is
-- inserted by hand without one. Existing keys stay as they are: v4 and v7 keys are both
-- uuids and compare fine; only where new keys land in the indexes changes.
ALTER TABLE canon.identity_registry ALTER COLUMN person_key SET DEFAULT canon.new_person_key();

-- The two "linked and OPEN" constraint triggers queue an event only for the rows their
-- function checks (its own first condition, now also the trigger's WHEN): a driver link
-- or an unmatched row that is not OPEN can never violate it. Each queued event is a
-- function call at commit: the pipeline's driver links and resolved rows were about
-- 2,000 such calls per run that could only return. Same rule, checked at the same time.
DROP TRIGGER IF EXISTS identity_links_lead_not_open ON canon.identity_links;
CREATE CONSTRAINT TRIGGER identity_links_lead_not_open
  AFTER INSERT OR UPDATE ON canon.identity_links
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW
  WHEN (NEW.source_table = 'module_ct_cabinet_leads')
  EXECUTE FUNCTION canon.enforce_lead_not_linked_and_open();
DROP TRIGGER IF EXISTS identity_unmatched_lead_not_linked ON canon.identity_unmatched;
CREATE CONSTRAINT TRIGGER identity_unmatched_lead_not_linked
  AFTER INSERT OR UPDATE ON canon.identity_unmatched
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW
  WHEN (NEW.source_table = 'module_ct_cabinet_leads' AND NEW.status = 'OPEN')
  EXECUTE FUNCTION canon.enforce_lead_not_linked_and_open();
