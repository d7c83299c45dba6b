-- Invariants enforced by the database itself, checked at commit.
CREATE CONSTRAINT TRIGGER identity_registry_has_link
  AFTER INSERT ON canon.identity_registry
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION canon.enforce_person_has_link();
CREATE CONSTRAINT TRIGGER identity_links_person_keeps_link
  AFTER DELETE OR UPDATE OF person_key ON canon.identity_links
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION canon.enforce_person_has_link();
CREATE CONSTRAINT TRIGGER identity_links_lead_not_open
  AFTER INSERT OR UPDATE ON canon.identity_links
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION canon.enforce_lead_not_linked_and_open();
CREATE CONSTRAINT TRIGGER identity_unmatched_lead_not_linked
  AFTER INSERT OR UPDATE ON canon.identity_unmatched
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION canon.enforce_lead_not_linked_and_open();
