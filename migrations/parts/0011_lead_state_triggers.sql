-- Triggers that keep canon.cabinet_lead_state_dirty / _meta up to date, whoever writes.
CREATE TRIGGER identity_links_lead_state_insert
  AFTER INSERT ON canon.identity_links
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION canon.mark_lead_state_dirty_links();
CREATE TRIGGER identity_links_lead_state_delete
  AFTER DELETE ON canon.identity_links
  REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION canon.mark_lead_state_dirty_links();
CREATE TRIGGER identity_links_lead_state_update
  AFTER UPDATE ON canon.identity_links
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION canon.mark_lead_state_dirty_links();

CREATE TRIGGER claims_lead_state_insert
  AFTER INSERT ON canon.claims_yango_cabinet_14d
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION canon.mark_lead_state_dirty_claims();
CREATE TRIGGER claims_lead_state_delete
  AFTER DELETE ON canon.claims_yango_cabinet_14d
  REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION canon.mark_lead_state_dirty_claims();
CREATE TRIGGER claims_lead_state_update
  AFTER UPDATE ON canon.claims_yango_cabinet_14d
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION canon.mark_lead_state_dirty_claims();

CREATE TRIGGER claim_rules_lead_state
  AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON canon.claim_rules
  FOR EACH STATEMENT EXECUTE FUNCTION canon.mark_lead_state_rules_changed();
