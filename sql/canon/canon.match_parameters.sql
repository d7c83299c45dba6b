-- The parameters of the matching rules (one row; SPEC 6): the name similarity a plate candidate
-- needs, the lead the best name must have over the second, the hire-date window of R3. A change
-- marks every OPEN unmatched lead due (trigger match_parameters_mark_open_due).
CREATE TABLE canon.match_parameters (
  singleton             boolean DEFAULT true PRIMARY KEY CHECK (singleton),
  name_similarity_min   numeric(4,3) NOT NULL DEFAULT 0.66 CHECK ((name_similarity_min > 0) AND (name_similarity_min <= 1)),
  name_gap_min          numeric(4,3) NOT NULL DEFAULT 0.15 CHECK ((name_gap_min >= 0) AND (name_gap_min <= 1)),
  hire_days_before_lead integer NOT NULL DEFAULT 90 CHECK (hire_days_before_lead >= 0),
  hire_days_after_lead  integer NOT NULL DEFAULT 30 CHECK (hire_days_after_lead >= 0),
  updated_at            timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER match_parameters_changed
  AFTER INSERT OR DELETE OR UPDATE OR TRUNCATE ON canon.match_parameters
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.mark_open_leads_due();

COMMENT ON TABLE canon.match_parameters IS
  'Parameters of the matching rules (one row): the name similarity a plate candidate needs, the gap by which the best name must beat the second, the hire-date window of R3. A change marks every OPEN unmatched lead due for a retry.';

INSERT INTO canon.match_parameters (singleton, name_similarity_min, name_gap_min, hire_days_before_lead, hire_days_after_lead) VALUES
  (true, 0.660, 0.150, 90, 30);
