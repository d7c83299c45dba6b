-- Limbo history and alerts (SPEC 9): snapshot tables written by ops.snapshot_limbo at
-- step 8 of every completed run, the alert rules a DBA edits with plain SQL, and the
-- state of every alert raised by ops.check_limbo_alerts (first / last seen, resolved).

-- One row per completed (not dry) run: leads per limbo stage over all leads.
CREATE TABLE ops.limbo_snapshots (
  run_id                bigint PRIMARY KEY REFERENCES canon.ingestion_runs (id) ON DELETE CASCADE,
  taken_at              timestamptz NOT NULL DEFAULT now(),
  business_date         date NOT NULL,
  leads                 integer NOT NULL CHECK (leads >= 0),
  leads_with_identity   integer NOT NULL CHECK (leads_with_identity >= 0),
  leads_with_driver     integer NOT NULL CHECK (leads_with_driver >= 0),
  limbo_no_identity     integer NOT NULL CHECK (limbo_no_identity >= 0),
  limbo_no_driver       integer NOT NULL CHECK (limbo_no_driver >= 0),
  limbo_no_trips_14d    integer NOT NULL CHECK (limbo_no_trips_14d >= 0),
  limbo_trips_no_claim  integer NOT NULL CHECK (limbo_trips_no_claim >= 0),
  limbo_ok              integer NOT NULL CHECK (limbo_ok >= 0),
  CHECK (limbo_no_identity + limbo_no_driver + limbo_no_trips_14d + limbo_trips_no_claim + limbo_ok = leads)
);
CREATE INDEX limbo_snapshots_taken_at_idx ON ops.limbo_snapshots (taken_at DESC, run_id DESC);
COMMENT ON TABLE ops.limbo_snapshots IS
  'Limbo counts of every completed run over all leads (written by ops.snapshot_limbo, step 8); time series in ops.v_limbo_history.';

-- The same counts per lead week (ISO Monday of lead_date), one row per week with leads.
CREATE TABLE ops.limbo_snapshot_weeks (
  run_id                bigint NOT NULL REFERENCES ops.limbo_snapshots (run_id) ON DELETE CASCADE,
  week_start            date NOT NULL CHECK (extract(isodow FROM week_start) = 1),
  leads                 integer NOT NULL CHECK (leads >= 0),
  leads_with_identity   integer NOT NULL CHECK (leads_with_identity >= 0),
  leads_with_driver     integer NOT NULL CHECK (leads_with_driver >= 0),
  limbo_no_identity     integer NOT NULL CHECK (limbo_no_identity >= 0),
  limbo_no_driver       integer NOT NULL CHECK (limbo_no_driver >= 0),
  limbo_no_trips_14d    integer NOT NULL CHECK (limbo_no_trips_14d >= 0),
  limbo_trips_no_claim  integer NOT NULL CHECK (limbo_trips_no_claim >= 0),
  limbo_ok              integer NOT NULL CHECK (limbo_ok >= 0),
  PRIMARY KEY (run_id, week_start),
  CHECK (limbo_no_identity + limbo_no_driver + limbo_no_trips_14d + limbo_trips_no_claim + limbo_ok = leads)
);
COMMENT ON TABLE ops.limbo_snapshot_weeks IS
  'Limbo counts of every completed run per lead week (week_start = ISO Monday of lead_date); they add up to ops.limbo_snapshots.';

-- When a lead week counts as complete for week-over-week rules: leads are inserted about
-- two days after lead_created_at, so a week is compared only from this many days after it ends.
INSERT INTO canon.settings (key, value, description) VALUES
  ('alert_week_complete_after_days', '2',
   'Days after a lead week (Monday-Sunday) ends before week-over-week alerts treat it as complete; leads arrive about 2 days after lead_created_at.')
ON CONFLICT (key) DO NOTHING;

-- The alert rules. Edit them with plain SQL, e.g.
--   UPDATE ops.alert_rules SET threshold = 150 WHERE rule_code = 'NO_IDENTITY_ABOVE';
--   UPDATE ops.alert_rules SET enabled = false WHERE rule_code = 'TRIPS_NO_CLAIM_WEEK_OVER_WEEK';
CREATE TABLE ops.alert_rules (
  rule_code          text PRIMARY KEY CHECK (rule_code ~ '^[A-Z0-9_]+$'),
  description        text NOT NULL,
  metric             text NOT NULL CHECK (metric IN (
                       'LEADS', 'NO_IDENTITY', 'NO_DRIVER', 'NO_TRIPS_14D', 'TRIPS_NO_CLAIM', 'OK',
                       'PCT_WITH_IDENTITY', 'PCT_WITH_DRIVER',
                       'HOURS_SINCE_LAST_COMPLETED_RUN', 'LAST_RUN_FAILED')),
  measure            text NOT NULL DEFAULT 'CURRENT' CHECK (measure IN ('CURRENT', 'WEEK_OVER_WEEK_PCT')),
  comparison         text NOT NULL CHECK (comparison IN ('>', '>=', '<', '<=', '=')),
  threshold          numeric NOT NULL,
  min_current_value  numeric,
  severity           text NOT NULL DEFAULT 'WARNING' CHECK (severity IN ('WARNING', 'CRITICAL')),
  enabled            boolean NOT NULL DEFAULT true,
  CHECK (measure = 'CURRENT'
         OR metric IN ('LEADS', 'NO_IDENTITY', 'NO_DRIVER', 'NO_TRIPS_14D', 'TRIPS_NO_CLAIM', 'OK'))
);
COMMENT ON TABLE ops.alert_rules IS
  'Alert rules evaluated by ops.check_limbo_alerts: metric, measure (CURRENT value, or WEEK_OVER_WEEK_PCT = % change between the last two complete lead weeks), comparison, threshold, optional min_current_value, severity, enabled. Edit with UPDATE/INSERT.';
COMMENT ON COLUMN ops.alert_rules.measure IS
  'CURRENT: the metric now (all leads; runs for run metrics). WEEK_OVER_WEEK_PCT: 100 * (last - previous) / previous over the leads of the last two complete lead weeks; from 0 to more than 0 counts as an unbounded rise.';
COMMENT ON COLUMN ops.alert_rules.min_current_value IS
  'Optional: the rule fires only when the current value is at least this (silences e.g. week-over-week rises from 1 to 2 leads). NULL: no minimum.';
INSERT INTO ops.alert_rules (rule_code, description, metric, measure, comparison, threshold, severity) VALUES
  ('NO_IDENTITY_ABOVE', 'More than 100 leads without identity (limbo stage NO_IDENTITY).',
   'NO_IDENTITY', 'CURRENT', '>', 100, 'WARNING'),
  ('TRIPS_NO_CLAIM_ABOVE', 'More than 50 leads that reached a milestone without its claim (TRIPS_NO_CLAIM).',
   'TRIPS_NO_CLAIM', 'CURRENT', '>', 50, 'WARNING'),
  ('IDENTITY_SHARE_BELOW', 'Less than 80 % of leads have an identity.',
   'PCT_WITH_IDENTITY', 'CURRENT', '<', 80, 'WARNING'),
  ('NO_IDENTITY_WEEK_OVER_WEEK', 'NO_IDENTITY leads of the last complete lead week up more than 10 % on the week before.',
   'NO_IDENTITY', 'WEEK_OVER_WEEK_PCT', '>', 10, 'WARNING'),
  ('TRIPS_NO_CLAIM_WEEK_OVER_WEEK', 'TRIPS_NO_CLAIM leads of the last complete lead week up more than 5 % on the week before.',
   'TRIPS_NO_CLAIM', 'WEEK_OVER_WEEK_PCT', '>', 5, 'WARNING'),
  ('LAST_COMPLETED_RUN_STALE', 'The last COMPLETED run finished more than 2 hours ago (or there is none).',
   'HOURS_SINCE_LAST_COMPLETED_RUN', 'CURRENT', '>', 2, 'CRITICAL'),
  ('LAST_RUN_FAILED', 'The last finished run FAILED.',
   'LAST_RUN_FAILED', 'CURRENT', '=', 1, 'CRITICAL');

-- One row per alert incident: opened the first time a rule fires (for a subject, e.g.
-- the lead week compared), updated while it keeps firing, resolved when it stops.
CREATE TABLE ops.alerts (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  rule_code       text NOT NULL,
  subject         text NOT NULL DEFAULT '',
  severity        text NOT NULL CHECK (severity IN ('WARNING', 'CRITICAL')),
  metric          text NOT NULL,
  measure         text NOT NULL,
  comparison      text NOT NULL,
  threshold       numeric NOT NULL,
  first_value     numeric,
  current_value   numeric,
  previous_value  numeric,
  change_pct      numeric,
  message         text NOT NULL,
  first_seen_at   timestamptz NOT NULL DEFAULT now(),
  last_seen_at    timestamptz NOT NULL DEFAULT now(),
  resolved_at     timestamptz,
  first_run_id    bigint,
  last_run_id     bigint,
  times_seen      integer NOT NULL DEFAULT 1 CHECK (times_seen >= 1),
  notified_at     timestamptz,
  CHECK (last_seen_at >= first_seen_at),
  CHECK (resolved_at IS NULL OR resolved_at >= last_seen_at)
);
CREATE UNIQUE INDEX alerts_open_uq ON ops.alerts (rule_code, subject) WHERE resolved_at IS NULL;
CREATE INDEX alerts_first_seen_idx ON ops.alerts (first_seen_at DESC);
COMMENT ON TABLE ops.alerts IS
  'Alert incidents recorded by ops.check_limbo_alerts: one open row per (rule_code, subject) while the rule fires (first_seen_at kept, last_seen_at and values updated), resolved_at set when it stops firing. notified_at: when the alert webhook accepted it (NULL: not sent yet).';
