-- canon.claim_rules must give one rule per milestone and one window for any lead date
-- (checked at commit, so a rule can be closed and its successor added in one transaction).
CREATE CONSTRAINT TRIGGER claim_rules_consistent
  AFTER INSERT OR UPDATE ON canon.claim_rules
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION canon.enforce_claim_rules_consistent();
