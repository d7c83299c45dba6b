-- The milestones of the 14-day claim (SPEC 7c): trips needed, amount, currency, window, validity
-- by lead date. Edited by people (a change re-evaluates every lead); read by the claim steps and
-- the claim views. Overlapping rules are refused (trigger claim_rules_consistent).
CREATE TABLE canon.claim_rules (
  milestone       integer NOT NULL CHECK (milestone > 0),
  trips_threshold integer NOT NULL CHECK (trips_threshold > 0),
  amount          numeric(12,2) NOT NULL CHECK (amount >= 0),
  currency        text NOT NULL DEFAULT 'PEN',
  window_days     integer NOT NULL CHECK (window_days > 0),
  valid_from      date NOT NULL DEFAULT '2000-01-01'::date,
  valid_to        date,
  PRIMARY KEY (milestone, valid_from),
  CONSTRAINT claim_rules_check CHECK ((valid_to IS NULL) OR (valid_to > valid_from))
);

CREATE CONSTRAINT TRIGGER claim_rules_consistent
  AFTER INSERT OR UPDATE ON canon.claim_rules
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW
  EXECUTE FUNCTION canon.enforce_claim_rules_consistent();
CREATE TRIGGER claim_rules_lead_state
  AFTER INSERT OR DELETE OR UPDATE OR TRUNCATE ON canon.claim_rules
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.mark_lead_state_rules_changed();

COMMENT ON TABLE canon.claim_rules IS
  'Milestones of the 14-day cabinet claim: trips threshold, amount, currency, window, validity (by lead_date).';

INSERT INTO canon.claim_rules (milestone, trips_threshold, amount, currency, window_days, valid_from) VALUES
  (1, 1, 25.00, 'PEN', 14, '2000-01-01'),
  (5, 5, 35.00, 'PEN', 14, '2000-01-01'),
  (25, 25, 100.00, 'PEN', 14, '2000-01-01');
