-- Alert incidents (SPEC 9): one open row per rule and subject while the rule fires, resolved when
-- it stops. Written by ops.check_limbo_alerts; notified_at set when the webhook accepted it.
CREATE TABLE ops.alerts (
  id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  rule_code      text NOT NULL,
  subject        text NOT NULL DEFAULT '',
  severity       text NOT NULL CHECK (severity IN ('WARNING', 'CRITICAL')),
  metric         text NOT NULL,
  measure        text NOT NULL,
  comparison     text NOT NULL,
  threshold      numeric NOT NULL,
  first_value    numeric,
  current_value  numeric,
  previous_value numeric,
  change_pct     numeric,
  message        text NOT NULL,
  first_seen_at  timestamptz NOT NULL DEFAULT now(),
  last_seen_at   timestamptz NOT NULL DEFAULT now(),
  resolved_at    timestamptz,
  first_run_id   bigint,
  last_run_id    bigint,
  times_seen     integer NOT NULL DEFAULT 1 CHECK (times_seen >= 1),
  notified_at    timestamptz,
  CONSTRAINT alerts_check CHECK (last_seen_at >= first_seen_at),
  CONSTRAINT alerts_check1 CHECK ((resolved_at IS NULL) OR (resolved_at >= last_seen_at))
);

CREATE INDEX alerts_first_seen_idx ON ops.alerts (first_seen_at DESC);
CREATE UNIQUE INDEX alerts_open_uq ON ops.alerts (rule_code, subject)
  WHERE resolved_at IS NULL;

COMMENT ON TABLE ops.alerts IS
  'Alert incidents recorded by ops.check_limbo_alerts: one open row per (rule_code, subject) while the rule fires (first_seen_at kept, last_seen_at and values updated), resolved_at set when it stops firing. notified_at: when the alert webhook accepted it (NULL: not sent yet).';
