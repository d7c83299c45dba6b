-- The alert rules (SPEC 9) evaluated by ops.check_limbo_alerts; edited with UPDATE and INSERT.
CREATE TABLE ops.alert_rules (
  rule_code         text PRIMARY KEY CHECK (rule_code ~ '^[A-Z0-9_]+$'),
  description       text NOT NULL,
  metric            text NOT NULL CHECK (metric IN ('LEADS', 'NO_IDENTITY', 'NO_DRIVER', 'NO_TRIPS_14D', 'TRIPS_NO_CLAIM', 'OK', 'PCT_WITH_IDENTITY', 'PCT_WITH_DRIVER', 'HOURS_SINCE_LAST_COMPLETED_RUN', 'LAST_RUN_FAILED')),
  measure           text NOT NULL DEFAULT 'CURRENT' CHECK (measure IN ('CURRENT', 'WEEK_OVER_WEEK_PCT')),
  comparison        text NOT NULL CHECK (comparison IN ('>', '>=', '<', '<=', '=')),
  threshold         numeric NOT NULL,
  min_current_value numeric,
  severity          text NOT NULL DEFAULT 'WARNING' CHECK (severity IN ('WARNING', 'CRITICAL')),
  enabled           boolean NOT NULL DEFAULT true,
  CONSTRAINT alert_rules_check CHECK ((measure = 'CURRENT') OR (metric IN ('LEADS', 'NO_IDENTITY', 'NO_DRIVER', 'NO_TRIPS_14D', 'TRIPS_NO_CLAIM', 'OK')))
);

COMMENT ON TABLE ops.alert_rules IS
  'Alert rules evaluated by ops.check_limbo_alerts: metric, measure (CURRENT value, or WEEK_OVER_WEEK_PCT = % change between the last two complete lead weeks), comparison, threshold, optional min_current_value, severity, enabled. Edit with UPDATE/INSERT.';
COMMENT ON COLUMN ops.alert_rules.measure IS
  'CURRENT: the metric now (all leads; runs for run metrics). WEEK_OVER_WEEK_PCT: 100 * (last - previous) / previous over the leads of the last two complete lead weeks; from 0 to more than 0 counts as an unbounded rise.';
COMMENT ON COLUMN ops.alert_rules.min_current_value IS
  'Optional: the rule fires only when the current value is at least this (silences e.g. week-over-week rises from 1 to 2 leads). NULL: no minimum.';

INSERT INTO ops.alert_rules (rule_code, description, metric, measure, comparison, threshold, severity, enabled) VALUES
  ('NO_IDENTITY_ABOVE', 'More than 100 leads without identity (limbo stage NO_IDENTITY).', 'NO_IDENTITY', 'CURRENT', '>', 100, 'WARNING', true),
  ('TRIPS_NO_CLAIM_ABOVE', 'More than 50 leads that reached a milestone without its claim (TRIPS_NO_CLAIM).', 'TRIPS_NO_CLAIM', 'CURRENT', '>', 50, 'WARNING', true),
  ('IDENTITY_SHARE_BELOW', 'Less than 80 % of leads have an identity.', 'PCT_WITH_IDENTITY', 'CURRENT', '<', 80, 'WARNING', true),
  ('NO_IDENTITY_WEEK_OVER_WEEK', 'NO_IDENTITY leads of the last complete lead week up more than 10 % on the week before.', 'NO_IDENTITY', 'WEEK_OVER_WEEK_PCT', '>', 10, 'WARNING', true),
  ('TRIPS_NO_CLAIM_WEEK_OVER_WEEK', 'TRIPS_NO_CLAIM leads of the last complete lead week up more than 5 % on the week before.', 'TRIPS_NO_CLAIM', 'WEEK_OVER_WEEK_PCT', '>', 5, 'WARNING', true),
  ('LAST_COMPLETED_RUN_STALE', 'The last COMPLETED run finished more than 2 hours ago (or there is none).', 'HOURS_SINCE_LAST_COMPLETED_RUN', 'CURRENT', '>', 2, 'CRITICAL', true),
  ('LAST_RUN_FAILED', 'The last finished run FAILED.', 'LAST_RUN_FAILED', 'CURRENT', '=', 1, 'CRITICAL', true);
