-- The matching rules (SPEC 6), strongest first: score and confidence of the link each makes;
-- R4_PROBABILISTIC is the probabilistic tier after them (its score is each link's probability).
-- Read by canon.lead_candidates and canon.lead_decisions. A change marks every OPEN unmatched lead
-- due (trigger match_rules_mark_open_due); docs/matching.md, "Changing a rule".
CREATE TABLE canon.match_rules (
  rule             text PRIMARY KEY CHECK (rule IN ('R1_PHONE_EXACT', 'R2_LICENSE_EXACT', 'R3_PLATE_EXACT_NAME_SIMILAR', 'R3B_PLATE_NAME_NO_DATE', 'R4_PROBABILISTIC')),
  rank             integer NOT NULL UNIQUE CHECK (rank > 0),
  rule_group       text NOT NULL CHECK (rule_group IN ('PHONE', 'LICENSE', 'PLATE', 'PROBABILISTIC')),
  score            integer NOT NULL CHECK ((score >= 0) AND (score <= 100)),
  confidence_level text NOT NULL CHECK (confidence_level IN ('HIGH', 'MEDIUM', 'LOW')),
  description      text NOT NULL
);

CREATE TRIGGER match_rules_changed
  AFTER INSERT OR DELETE OR UPDATE OR TRUNCATE ON canon.match_rules
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.mark_open_leads_due();

COMMENT ON TABLE canon.match_rules IS
  'The matching rules (SPEC 6), strongest first (rank): score and confidence of a link each makes. A change marks every OPEN unmatched lead due for a retry.';

INSERT INTO canon.match_rules (rule, rank, rule_group, score, confidence_level, description) VALUES
  ('R1_PHONE_EXACT', 1, 'PHONE', 95, 'HIGH', 'normalised phone equal (not a shared phone)'),
  ('R2_LICENSE_EXACT', 2, 'LICENSE', 92, 'HIGH', 'normalised licence equal'),
  ('R3_PLATE_EXACT_NAME_SIMILAR', 3, 'PLATE', 85, 'MEDIUM', 'plate equal, name similar, hire date in the window or unknown'),
  ('R3B_PLATE_NAME_NO_DATE', 4, 'PLATE', 80, 'MEDIUM', 'plate equal, name similar, hire date outside the window'),
  ('R4_PROBABILISTIC', 5, 'PROBABILISTIC', 99, 'MEDIUM', 'probabilistic tier (canon.link_probabilistic), after the rules: the link''s score is its probability x 100 (at least the active version''s link band), HIGH at 0.9999 or more');
