-- The matching rules and their parameters as data (SPEC 6), read by canon.lead_candidates
-- and canon.lead_decisions: one place to change a score, a threshold or the hire window.
CREATE TABLE canon.match_rules (
  rule              text PRIMARY KEY
    CHECK (rule IN ('R1_PHONE_EXACT', 'R2_LICENSE_EXACT', 'R3_PLATE_EXACT_NAME_SIMILAR', 'R3B_PLATE_NAME_NO_DATE')),
  rank              integer NOT NULL UNIQUE CHECK (rank > 0),
  rule_group        text NOT NULL CHECK (rule_group IN ('PHONE', 'LICENSE', 'PLATE')),
  score             integer NOT NULL CHECK (score BETWEEN 0 AND 100),
  confidence_level  text NOT NULL CHECK (confidence_level IN ('HIGH', 'MEDIUM', 'LOW')),
  description       text NOT NULL
);
COMMENT ON TABLE canon.match_rules IS
  'The matching rules (SPEC 6), strongest first (rank): score and confidence of a link each makes. A change marks every OPEN unmatched lead due for a retry.';
INSERT INTO canon.match_rules (rule, rank, rule_group, score, confidence_level, description) VALUES
  ('R1_PHONE_EXACT', 1, 'PHONE', 95, 'HIGH', 'normalised phone equal (not a shared phone)'),
  ('R2_LICENSE_EXACT', 2, 'LICENSE', 92, 'HIGH', 'normalised licence equal'),
  ('R3_PLATE_EXACT_NAME_SIMILAR', 3, 'PLATE', 85, 'MEDIUM', 'plate equal, name similar, hire date in the window or unknown'),
  ('R3B_PLATE_NAME_NO_DATE', 4, 'PLATE', 80, 'MEDIUM', 'plate equal, name similar, hire date outside the window');

CREATE TABLE canon.match_parameters (
  singleton               boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  name_similarity_min     numeric(4, 3) NOT NULL DEFAULT 0.66 CHECK (name_similarity_min > 0 AND name_similarity_min <= 1),
  name_gap_min            numeric(4, 3) NOT NULL DEFAULT 0.15 CHECK (name_gap_min >= 0 AND name_gap_min <= 1),
  hire_days_before_lead   integer NOT NULL DEFAULT 90 CHECK (hire_days_before_lead >= 0),
  hire_days_after_lead    integer NOT NULL DEFAULT 30 CHECK (hire_days_after_lead >= 0),
  updated_at              timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE canon.match_parameters IS
  'Parameters of the matching rules (one row): the name similarity a plate candidate needs, the gap by which the best name must beat the second, the hire-date window of R3. A change marks every OPEN unmatched lead due for a retry.';
INSERT INTO canon.match_parameters DEFAULT VALUES;

CREATE TRIGGER match_rules_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON canon.match_rules
  FOR EACH STATEMENT EXECUTE FUNCTION canon.mark_open_leads_due();
CREATE TRIGGER match_parameters_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON canon.match_parameters
  FOR EACH STATEMENT EXECUTE FUNCTION canon.mark_open_leads_due();
