-- Up Migration
-- snapshot of migrations/parts/0007_tables.sql
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

-- snapshot of sql/ops/ops.last_complete_lead_week.sql
-- ops.last_complete_lead_week: the Monday of the most recent lead week (ISO, Monday to
-- Sunday) that is complete on p_today, i.e. ended at least p_after_days days ago:
-- the largest Monday W with W + 7 + p_after_days <= p_today. The current, partial week
-- is never returned. Used by the week-over-week alert rules (ops.limbo_alert_metrics)
-- with p_after_days = setting alert_week_complete_after_days (2: leads arrive late).
CREATE OR REPLACE FUNCTION ops.last_complete_lead_week(p_today date, p_after_days integer DEFAULT 0)
RETURNS date
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT date_trunc('week', (p_today - 7 - greatest(coalesce(p_after_days, 0), 0))::timestamp)::date
$$;
COMMENT ON FUNCTION ops.last_complete_lead_week(date, integer) IS
  'Monday of the last lead week complete on p_today (ended at least p_after_days days before): date_trunc(''week'', p_today - 7 - p_after_days). Never the current partial week.';

-- snapshot of sql/ops/ops.limbo_week_counts.sql
-- ops.limbo_week_counts: leads per limbo stage for each lead week (week_start = ISO
-- Monday of lead_date), the one definition of the counts that snapshots store and alert
-- rules test. p_run_id NULL: live, one pass over ops.v_cabinet_leads_limbo; a run id:
-- the rows stored for that run in ops.limbo_snapshot_weeks (no pass over the view).
-- PL/pgSQL so that only the branch taken is planned (the limbo view is costly to plan);
-- jit off because the view's cost estimate triggers JIT compilation that takes longer
-- (about 0.3 s) than the whole aggregate.
CREATE OR REPLACE FUNCTION ops.limbo_week_counts(p_run_id bigint DEFAULT NULL)
RETURNS TABLE (
  week_start            date,
  leads                 integer,
  leads_with_identity   integer,
  leads_with_driver     integer,
  limbo_no_identity     integer,
  limbo_no_driver       integer,
  limbo_no_trips_14d    integer,
  limbo_trips_no_claim  integer,
  limbo_ok              integer
)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
#variable_conflict use_column
BEGIN
  IF p_run_id IS NULL THEN
    RETURN QUERY
    SELECT l.week_start,
           count(*)::integer,
           (count(*) FILTER (WHERE l.person_key IS NOT NULL))::integer,
           (count(*) FILTER (WHERE l.driver_id IS NOT NULL))::integer,
           (count(*) FILTER (WHERE l.limbo_stage = 'NO_IDENTITY'))::integer,
           (count(*) FILTER (WHERE l.limbo_stage = 'NO_DRIVER'))::integer,
           (count(*) FILTER (WHERE l.limbo_stage = 'NO_TRIPS_14D'))::integer,
           (count(*) FILTER (WHERE l.limbo_stage = 'TRIPS_NO_CLAIM'))::integer,
           (count(*) FILTER (WHERE l.limbo_stage = 'OK'))::integer
    FROM ops.v_cabinet_leads_limbo l
    GROUP BY l.week_start
    ORDER BY l.week_start;
  ELSE
    RETURN QUERY
    SELECT w.week_start, w.leads, w.leads_with_identity, w.leads_with_driver, w.limbo_no_identity,
           w.limbo_no_driver, w.limbo_no_trips_14d, w.limbo_trips_no_claim, w.limbo_ok
    FROM ops.limbo_snapshot_weeks w
    WHERE w.run_id = p_run_id
    ORDER BY w.week_start;
  END IF;
END
$$;
COMMENT ON FUNCTION ops.limbo_week_counts(bigint) IS
  'Leads per limbo stage per lead week: live from ops.v_cabinet_leads_limbo (p_run_id NULL) or as stored in the snapshot of run p_run_id.';

-- snapshot of sql/ops/ops.limbo_alert_metrics.sql
-- ops.limbo_alert_metrics: every value the alert rules can test, one row per metric, for
-- ops.check_limbo_alerts (and for people: SELECT * FROM ops.limbo_alert_metrics()).
--   p_run_id NULL: live limbo counts (ops.limbo_week_counts: one pass over the limbo
--     view) and the run log as it is now;
--   p_run_id = a run at step 8: that run's snapshot rows (no second pass over the view),
--     and that run counted as the last COMPLETED one (if it fails, everything rolls back).
-- previous_value = the same metric in the snapshot before the latest one (before p_run_id's).
-- last_week / previous_week = the last two complete lead weeks (ops.last_complete_lead_week
-- with setting alert_week_complete_after_days), never the current partial week; their
-- values count the leads of that lead week in the stage (0 when the week has none).
CREATE OR REPLACE FUNCTION ops.limbo_alert_metrics(p_run_id bigint DEFAULT NULL)
RETURNS TABLE (
  metric               text,
  current_value        numeric,
  previous_value       numeric,
  previous_run_id      bigint,
  last_week            date,
  last_week_value      numeric,
  previous_week        date,
  previous_week_value  numeric,
  context              jsonb
)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH params AS (
    SELECT ops.last_complete_lead_week(canon.business_today(),
                                       canon.setting('alert_week_complete_after_days')::integer) AS last_week
  ),
  weeks AS (
    SELECT w.* FROM ops.limbo_week_counts(p_run_id) w
  ),
  totals AS (
    SELECT coalesce(sum(w.leads), 0) AS leads,
           coalesce(sum(w.leads_with_identity), 0) AS leads_with_identity,
           coalesce(sum(w.leads_with_driver), 0) AS leads_with_driver,
           coalesce(sum(w.limbo_no_identity), 0) AS limbo_no_identity,
           coalesce(sum(w.limbo_no_driver), 0) AS limbo_no_driver,
           coalesce(sum(w.limbo_no_trips_14d), 0) AS limbo_no_trips_14d,
           coalesce(sum(w.limbo_trips_no_claim), 0) AS limbo_trips_no_claim,
           coalesce(sum(w.limbo_ok), 0) AS limbo_ok,
           coalesce(sum(w.leads) FILTER (WHERE w.week_start = p.last_week), 0) AS leads_last_week,
           coalesce(sum(w.leads) FILTER (WHERE w.week_start = p.last_week - 7), 0) AS leads_previous_week
    FROM params p
    LEFT JOIN weeks w ON true
  ),
  last_wk AS (SELECT w.* FROM weeks w, params p WHERE w.week_start = p.last_week),
  prev_wk AS (SELECT w.* FROM weeks w, params p WHERE w.week_start = p.last_week - 7),
  -- the snapshot compared against: the one before the latest snapshot (before p_run_id's)
  anchor AS (
    SELECT s.taken_at, s.run_id
    FROM ops.limbo_snapshots s
    WHERE p_run_id IS NULL OR s.run_id = p_run_id
    ORDER BY s.taken_at DESC, s.run_id DESC
    LIMIT 1
  ),
  baseline AS (
    SELECT s.*,
           round(100.0 * s.leads_with_identity / nullif(s.leads, 0), 2) AS pct_with_identity,
           round(100.0 * s.leads_with_driver / nullif(s.leads, 0), 2) AS pct_with_driver
    FROM ops.limbo_snapshots s, anchor a
    WHERE (s.taken_at, s.run_id) < (a.taken_at, a.run_id)
    ORDER BY s.taken_at DESC, s.run_id DESC
    LIMIT 1
  ),
  -- run health: the run at step 8 (p_run_id, not dry) is the latest COMPLETED run
  this_run AS (
    SELECT r.id, now() AS completed_at, 'COMPLETED'::text AS status, NULL::text AS error_message
    FROM canon.ingestion_runs r
    WHERE r.id = p_run_id AND r.job_name = 'reconcile_cabinet_leads_pipeline' AND NOT r.dry_run
  ),
  last_completed AS (
    SELECT x.id, x.completed_at
    FROM (
      SELECT t.id, t.completed_at, 1 AS ord FROM this_run t
      UNION ALL
      (SELECT r.id, r.completed_at, 2
       FROM canon.ingestion_runs r
       WHERE r.job_name = 'reconcile_cabinet_leads_pipeline' AND r.status = 'COMPLETED' AND NOT r.dry_run
       ORDER BY r.created_at DESC, r.id DESC
       LIMIT 1)
    ) x
    ORDER BY x.ord
    LIMIT 1
  ),
  last_finished AS (
    SELECT x.id, x.status, x.completed_at, x.error_message
    FROM (
      SELECT t.id, t.status, t.completed_at, t.error_message, 1 AS ord FROM this_run t
      UNION ALL
      (SELECT r.id, r.status, r.completed_at, r.error_message, 2
       FROM canon.ingestion_runs r
       WHERE r.job_name = 'reconcile_cabinet_leads_pipeline' AND r.status IN ('COMPLETED', 'FAILED') AND NOT r.dry_run
       ORDER BY r.created_at DESC, r.id DESC
       LIMIT 1)
    ) x
    ORDER BY x.ord
    LIMIT 1
  )
  SELECT m.metric,
         m.current_value,
         m.previous_value,
         CASE WHEN m.weekly OR m.pct THEN b.run_id END,
         CASE WHEN m.weekly THEN p.last_week END,
         CASE WHEN m.weekly THEN coalesce(m.last_week_value, 0) END,
         CASE WHEN m.weekly THEN p.last_week - 7 END,
         CASE WHEN m.weekly THEN coalesce(m.previous_week_value, 0) END,
         coalesce(m.context, jsonb_build_object(
           'previous_taken_at', b.taken_at,
           'leads_last_week', t.leads_last_week,
           'leads_previous_week', t.leads_previous_week))
  FROM params p
  CROSS JOIN totals t
  LEFT JOIN baseline b ON true
  LEFT JOIN last_wk lw ON true
  LEFT JOIN prev_wk pw ON true
  LEFT JOIN last_completed lc ON true
  LEFT JOIN last_finished lf ON true
  CROSS JOIN LATERAL (
    VALUES
      (1, 'LEADS', t.leads::numeric, b.leads::numeric, lw.leads::numeric, pw.leads::numeric, true, false, NULL::jsonb),
      (2, 'NO_IDENTITY', t.limbo_no_identity, b.limbo_no_identity, lw.limbo_no_identity, pw.limbo_no_identity, true, false, NULL),
      (3, 'NO_DRIVER', t.limbo_no_driver, b.limbo_no_driver, lw.limbo_no_driver, pw.limbo_no_driver, true, false, NULL),
      (4, 'NO_TRIPS_14D', t.limbo_no_trips_14d, b.limbo_no_trips_14d, lw.limbo_no_trips_14d, pw.limbo_no_trips_14d, true, false, NULL),
      (5, 'TRIPS_NO_CLAIM', t.limbo_trips_no_claim, b.limbo_trips_no_claim, lw.limbo_trips_no_claim, pw.limbo_trips_no_claim, true, false, NULL),
      (6, 'OK', t.limbo_ok, b.limbo_ok, lw.limbo_ok, pw.limbo_ok, true, false, NULL),
      (7, 'PCT_WITH_IDENTITY', round(100.0 * t.leads_with_identity / nullif(t.leads, 0), 2), b.pct_with_identity,
       NULL, NULL, false, true, jsonb_build_object('leads', t.leads, 'leads_with_identity', t.leads_with_identity)),
      (8, 'PCT_WITH_DRIVER', round(100.0 * t.leads_with_driver / nullif(t.leads, 0), 2), b.pct_with_driver,
       NULL, NULL, false, true, jsonb_build_object('leads', t.leads, 'leads_with_driver', t.leads_with_driver)),
      (9, 'HOURS_SINCE_LAST_COMPLETED_RUN',
       round((extract(epoch FROM now() - lc.completed_at) / 3600)::numeric, 2), NULL, NULL, NULL, false, false,
       jsonb_build_object('run_id', lc.id, 'completed_at', lc.completed_at)),
      (10, 'LAST_RUN_FAILED', CASE lf.status WHEN 'FAILED' THEN 1 WHEN 'COMPLETED' THEN 0 END, NULL, NULL, NULL, false, false,
       jsonb_build_object('run_id', lf.id, 'status', lf.status, 'completed_at', lf.completed_at,
                          'error_message', lf.error_message))
  ) m (ord, metric, current_value, previous_value, last_week_value, previous_week_value, weekly, pct, context)
  ORDER BY m.ord
$$;
COMMENT ON FUNCTION ops.limbo_alert_metrics(bigint) IS
  'Values the alert rules test, one row per metric: current (live, or the snapshot of run p_run_id), previous snapshot, the last two complete lead weeks, run health. Read by ops.check_limbo_alerts.';

-- snapshot of sql/ops/ops.check_limbo_alerts.sql
-- ops.check_limbo_alerts: evaluates the enabled rules of ops.alert_rules on
-- ops.limbo_alert_metrics and returns the alerts that fire, in plain words (SPEC 9).
-- Called by the CLI (cabinet-leads alerts), by the worker after each run, at step 8 of
-- each run (through ops.snapshot_limbo, p_run_id = that run), and from psql:
--   SELECT * FROM ops.check_limbo_alerts();
-- p_run_id NULL reads live counts; a run id reads that run's snapshot (see the metrics).
-- With p_record (default) it records the alerts in ops.alerts: a new row the first time a
-- rule fires for a subject (first_seen_at), the same row updated while it keeps firing
-- (last_seen_at, values, times_seen), resolved_at set when it stops firing (also when its
-- rule is disabled or deleted). p_record => false only reads (reports, status).
-- notified_at is set by the worker when the alert webhook accepted the alert.
-- Week over week: change_pct = 100 * (last - previous) / previous over the last two
-- complete lead weeks; previous 0 and last 0 is no change; previous 0 and last > 0 is an
-- unbounded rise (fires for '>' and '>=', change_pct NULL). A stale-run rule fires when
-- no COMPLETED run exists at all. min_current_value, when set, must be reached too.
CREATE OR REPLACE FUNCTION ops.check_limbo_alerts(p_run_id bigint DEFAULT NULL, p_record boolean DEFAULT true)
RETURNS TABLE (
  rule_code       text,
  severity        text,
  metric          text,
  measure         text,
  comparison      text,
  threshold       numeric,
  current_value   numeric,
  previous_value  numeric,
  change_pct      numeric,
  subject         text,
  message         text,
  first_seen_at   timestamptz,
  last_seen_at    timestamptz,
  is_new          boolean,
  alert_id        bigint,
  notified_at     timestamptz
)
LANGUAGE sql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH settings AS (
    SELECT canon.setting('business_timezone') AS tz
  ),
  evaluated AS (
    SELECT r.rule_code, r.severity, r.metric, r.measure, r.comparison, r.threshold, r.min_current_value,
           CASE WHEN r.measure = 'WEEK_OVER_WEEK_PCT' THEN m.last_week_value ELSE m.current_value END AS cur,
           CASE WHEN r.measure = 'WEEK_OVER_WEEK_PCT' THEN m.previous_week_value ELSE m.previous_value END AS prev,
           m.previous_run_id, m.last_week, m.previous_week, m.context
    FROM ops.alert_rules r
    JOIN ops.limbo_alert_metrics(p_run_id) m ON m.metric = r.metric
    WHERE r.enabled
  ),
  tested AS (
    SELECT e.*,
           CASE
             WHEN e.measure = 'WEEK_OVER_WEEK_PCT' THEN
               CASE WHEN e.prev = 0 AND e.cur = 0 THEN 0::float8
                    WHEN e.prev = 0 THEN 'Infinity'::float8
                    ELSE ((e.cur - e.prev) * 100 / e.prev)::float8 END
             -- no COMPLETED run at all: infinitely stale
             WHEN e.metric = 'HOURS_SINCE_LAST_COMPLETED_RUN' AND e.cur IS NULL THEN 'Infinity'::float8
             ELSE e.cur::float8
           END AS value_tested,
           CASE e.metric
             WHEN 'LEADS' THEN 'Leads'
             WHEN 'NO_IDENTITY' THEN 'Leads in NO_IDENTITY (no person matched)'
             WHEN 'NO_DRIVER' THEN 'Leads in NO_DRIVER (person without a driver)'
             WHEN 'NO_TRIPS_14D' THEN 'Leads in NO_TRIPS_14D (no trips in the 14-day window)'
             WHEN 'TRIPS_NO_CLAIM' THEN 'Leads in TRIPS_NO_CLAIM (milestone reached, claim missing)'
             WHEN 'OK' THEN 'Leads OK'
             WHEN 'PCT_WITH_IDENTITY' THEN 'Share of leads with an identity'
             WHEN 'PCT_WITH_DRIVER' THEN 'Share of leads with a driver'
             ELSE e.metric
           END AS label,
           CASE WHEN e.metric LIKE 'PCT%' THEN ' %' ELSE '' END AS unit,
           CASE e.comparison
             WHEN '>' THEN 'above' WHEN '>=' THEN 'at or above' WHEN '<' THEN 'below'
             WHEN '<=' THEN 'at or below' ELSE 'equal to'
           END AS word
    FROM evaluated e
  ),
  firing AS (
    SELECT t.*,
           CASE WHEN t.measure = 'WEEK_OVER_WEEK_PCT' THEN 'lead week ' || t.last_week ELSE '' END AS subject,
           CASE
             WHEN t.measure = 'WEEK_OVER_WEEK_PCT' THEN
               CASE WHEN t.value_tested = 'Infinity'::float8 THEN NULL ELSE round(t.value_tested::numeric, 2) END
             WHEN t.prev > 0 THEN round((t.cur - t.prev) * 100 / t.prev, 2)
           END AS change_pct
    FROM tested t
    WHERE t.value_tested IS NOT NULL
      AND CASE t.comparison
            WHEN '>' THEN t.value_tested > t.threshold::float8
            WHEN '>=' THEN t.value_tested >= t.threshold::float8
            WHEN '<' THEN t.value_tested < t.threshold::float8
            WHEN '<=' THEN t.value_tested <= t.threshold::float8
            ELSE t.value_tested = t.threshold::float8
          END
      AND (t.min_current_value IS NULL OR t.cur IS NULL OR t.cur >= t.min_current_value)
  ),
  worded AS (
    SELECT f.*,
      CASE
        WHEN f.measure = 'WEEK_OVER_WEEK_PCT' AND f.prev = 0 THEN
          format('%s of lead week %s: %s, up from 0 in lead week %s (a rise from 0 exceeds any percentage; threshold: change %s %s %%; only complete lead weeks are compared).',
                 f.label, f.last_week, f.cur::float8, f.previous_week, f.word, f.threshold::float8)
        WHEN f.measure = 'WEEK_OVER_WEEK_PCT' THEN
          format('%s of lead week %s: %s, %s %s %% from %s in lead week %s (threshold: change %s %s %%; only complete lead weeks are compared).',
                 f.label, f.last_week, f.cur::float8, CASE WHEN f.change_pct >= 0 THEN 'up' ELSE 'down' END,
                 abs(f.change_pct)::float8, f.prev::float8, f.previous_week, f.word, f.threshold::float8)
        WHEN f.metric = 'HOURS_SINCE_LAST_COMPLETED_RUN' AND f.cur IS NULL THEN
          format('No COMPLETED run yet (threshold: %s hours): run cabinet-leads reconcile or start the worker.', f.threshold::float8)
        WHEN f.metric = 'HOURS_SINCE_LAST_COMPLETED_RUN' THEN
          format('The last COMPLETED run (#%s) finished %s hours ago, at %s (%s): %s the threshold of %s hours; check that the worker or the cron job is running.',
                 f.context->>'run_id', f.cur::float8,
                 to_char((f.context->>'completed_at')::timestamptz AT TIME ZONE s.tz, 'YYYY-MM-DD HH24:MI'), s.tz,
                 f.word, f.threshold::float8)
        WHEN f.metric = 'LAST_RUN_FAILED' THEN
          format('The last run (#%s, finished %s %s) %s: %s. Details: SELECT * FROM canon.ingestion_runs WHERE id = %s;',
                 f.context->>'run_id',
                 to_char((f.context->>'completed_at')::timestamptz AT TIME ZONE s.tz, 'YYYY-MM-DD HH24:MI'), s.tz,
                 f.context->>'status',
                 coalesce(left(split_part(f.context->>'error_message', E'\n', 1), 300), 'no error message'),
                 f.context->>'run_id')
        ELSE
          format('%s: %s%s, %s the threshold of %s%s%s.',
                 f.label, f.cur::float8, f.unit, f.word, f.threshold::float8, f.unit,
                 CASE WHEN f.prev IS NOT NULL
                      THEN format(' (%s%s at the previous snapshot, run #%s)', f.prev::float8, f.unit, f.previous_run_id)
                      ELSE '' END)
      END AS message
    FROM firing f
    CROSS JOIN settings s
  ),
  opened AS (
    SELECT a.id, a.rule_code, a.subject, a.first_seen_at, a.notified_at
    FROM ops.alerts a
    WHERE a.resolved_at IS NULL
  ),
  upserted AS (
    INSERT INTO ops.alerts AS a (
      rule_code, subject, severity, metric, measure, comparison, threshold, first_value, current_value,
      previous_value, change_pct, message, first_seen_at, last_seen_at, first_run_id, last_run_id)
    SELECT w.rule_code, w.subject, w.severity, w.metric, w.measure, w.comparison, w.threshold, w.cur, w.cur,
           w.prev, w.change_pct, w.message, now(), now(), p_run_id, p_run_id
    FROM worded w
    WHERE p_record
    ON CONFLICT (rule_code, subject) WHERE resolved_at IS NULL
    DO UPDATE SET severity = EXCLUDED.severity,
                  metric = EXCLUDED.metric,
                  measure = EXCLUDED.measure,
                  comparison = EXCLUDED.comparison,
                  threshold = EXCLUDED.threshold,
                  current_value = EXCLUDED.current_value,
                  previous_value = EXCLUDED.previous_value,
                  change_pct = EXCLUDED.change_pct,
                  message = EXCLUDED.message,
                  last_seen_at = greatest(a.last_seen_at, EXCLUDED.last_seen_at),
                  last_run_id = coalesce(EXCLUDED.last_run_id, a.last_run_id),
                  times_seen = a.times_seen + 1
    RETURNING a.id, a.rule_code, a.subject, a.first_seen_at, a.last_seen_at
  ),
  resolved AS (
    UPDATE ops.alerts a
    SET resolved_at = greatest(now(), a.last_seen_at)
    WHERE p_record
      AND a.resolved_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM worded w WHERE w.rule_code = a.rule_code AND w.subject = a.subject)
    RETURNING a.id
  )
  SELECT w.rule_code, w.severity, w.metric, w.measure, w.comparison, w.threshold,
         w.cur, w.prev, w.change_pct, w.subject, w.message,
         coalesce(u.first_seen_at, o.first_seen_at, now()),
         coalesce(u.last_seen_at, now()),
         o.id IS NULL,
         coalesce(u.id, o.id),
         o.notified_at
  FROM worded w
  LEFT JOIN opened o ON o.rule_code = w.rule_code AND o.subject = w.subject
  LEFT JOIN upserted u ON u.rule_code = w.rule_code AND u.subject = w.subject
  ORDER BY CASE w.severity WHEN 'CRITICAL' THEN 0 ELSE 1 END, w.rule_code, w.subject
$$;
COMMENT ON FUNCTION ops.check_limbo_alerts(bigint, boolean) IS
  'Firing alerts of ops.alert_rules (rule_code, metric, threshold, current and previous value, change_pct, message, first/last seen, is_new, notified_at). Records them in ops.alerts unless p_record => false. SELECT * FROM ops.check_limbo_alerts();';

-- snapshot of sql/ops/ops.snapshot_limbo.sql
-- ops.snapshot_limbo: pipeline step 8 (SPEC 7, 9). In one pass over
-- ops.v_cabinet_leads_limbo (ops.limbo_week_counts) it stores the run's limbo counts per lead week
-- (ops.limbo_snapshot_weeks) and over all leads (ops.limbo_snapshots), then evaluates the
-- alert rules on that snapshot and records the firing alerts (ops.check_limbo_alerts).
-- It runs inside the run's all-or-nothing transaction: a failed or dry run keeps nothing,
-- so only COMPLETED runs have snapshots. Calling it again for a run replaces its snapshot.
-- Returns the step's stats: counts, rows written, alerts firing (codes, new ones).
CREATE OR REPLACE FUNCTION ops.snapshot_limbo(p_run_id bigint)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_snap jsonb;
  v_weeks integer;
  v_alerts jsonb;
BEGIN
  IF p_run_id IS NULL THEN
    RAISE EXCEPTION 'ops.snapshot_limbo: p_run_id is NULL: expected the id of a row of canon.ingestion_runs'
      USING ERRCODE = '22023';
  END IF;

  DELETE FROM ops.limbo_snapshots s WHERE s.run_id = p_run_id;

  WITH weeks AS (
    SELECT w.* FROM ops.limbo_week_counts(NULL) w
  ),
  snapshot AS (
    INSERT INTO ops.limbo_snapshots (
      run_id, taken_at, business_date, leads, leads_with_identity, leads_with_driver,
      limbo_no_identity, limbo_no_driver, limbo_no_trips_14d, limbo_trips_no_claim, limbo_ok)
    SELECT p_run_id, now(), canon.business_today(),
           coalesce(sum(w.leads), 0), coalesce(sum(w.leads_with_identity), 0), coalesce(sum(w.leads_with_driver), 0),
           coalesce(sum(w.limbo_no_identity), 0), coalesce(sum(w.limbo_no_driver), 0),
           coalesce(sum(w.limbo_no_trips_14d), 0), coalesce(sum(w.limbo_trips_no_claim), 0), coalesce(sum(w.limbo_ok), 0)
    FROM weeks w
    RETURNING *
  ),
  week_rows AS (
    INSERT INTO ops.limbo_snapshot_weeks (
      run_id, week_start, leads, leads_with_identity, leads_with_driver,
      limbo_no_identity, limbo_no_driver, limbo_no_trips_14d, limbo_trips_no_claim, limbo_ok)
    SELECT p_run_id, w.week_start, w.leads, w.leads_with_identity, w.leads_with_driver,
           w.limbo_no_identity, w.limbo_no_driver, w.limbo_no_trips_14d, w.limbo_trips_no_claim, w.limbo_ok
    FROM weeks w
    RETURNING 1
  )
  SELECT to_jsonb(s), (SELECT count(*)::integer FROM week_rows) INTO v_snap, v_weeks
  FROM snapshot s;

  SELECT coalesce(jsonb_agg(jsonb_build_object(
           'rule_code', a.rule_code, 'severity', a.severity, 'subject', a.subject,
           'current_value', a.current_value, 'threshold', a.threshold, 'is_new', a.is_new)), '[]'::jsonb)
  INTO v_alerts
  FROM ops.check_limbo_alerts(p_run_id, true) a;

  RETURN jsonb_build_object(
    'run_id', p_run_id,
    'taken_at', v_snap->'taken_at',
    'business_date', v_snap->'business_date',
    'leads', v_snap->'leads',
    'leads_with_identity', v_snap->'leads_with_identity',
    'leads_with_driver', v_snap->'leads_with_driver',
    'stages', jsonb_build_object(
      'NO_IDENTITY', v_snap->'limbo_no_identity', 'NO_DRIVER', v_snap->'limbo_no_driver',
      'NO_TRIPS_14D', v_snap->'limbo_no_trips_14d', 'TRIPS_NO_CLAIM', v_snap->'limbo_trips_no_claim',
      'OK', v_snap->'limbo_ok'),
    'weeks_written', v_weeks,
    'rows_written', v_weeks + 1,
    'alerts_firing', jsonb_array_length(v_alerts),
    'alerts_new', (SELECT count(*) FROM jsonb_array_elements(v_alerts) x WHERE (x->>'is_new')::boolean),
    'alerts', v_alerts);
END
$$;
COMMENT ON FUNCTION ops.snapshot_limbo(bigint) IS
  'Pipeline step 8: stores the limbo counts of run p_run_id per stage, overall and per lead week (ops.limbo_snapshots, ops.limbo_snapshot_weeks), then evaluates and records the alerts. Returns step stats (counts, rows_written, alerts).';

-- snapshot of sql/ops/ops.v_limbo_history.sql
-- ops.v_limbo_history: the time series of limbo counts, one row per snapshot (one per
-- completed run, ops.limbo_snapshots), oldest first, with shares and the change of each
-- stage since the previous snapshot. Read by the report, `cabinet-leads status` and people:
--   SELECT taken_at, limbo_no_identity, limbo_no_identity_change FROM ops.v_limbo_history
--   ORDER BY taken_at DESC LIMIT 20;
-- Per lead week: SELECT * FROM ops.limbo_snapshot_weeks WHERE run_id = ...
CREATE OR REPLACE VIEW ops.v_limbo_history AS
SELECT s.run_id,
       s.taken_at,
       s.business_date,
       s.leads,
       s.leads_with_identity,
       s.leads_with_driver,
       round(100.0 * s.leads_with_identity / nullif(s.leads, 0), 2) AS pct_with_identity,
       round(100.0 * s.leads_with_driver / nullif(s.leads, 0), 2) AS pct_with_driver,
       s.limbo_no_identity,
       s.limbo_no_driver,
       s.limbo_no_trips_14d,
       s.limbo_trips_no_claim,
       s.limbo_ok,
       lag(s.run_id) OVER w AS previous_run_id,
       s.leads - lag(s.leads) OVER w AS leads_change,
       s.limbo_no_identity - lag(s.limbo_no_identity) OVER w AS limbo_no_identity_change,
       s.limbo_no_driver - lag(s.limbo_no_driver) OVER w AS limbo_no_driver_change,
       s.limbo_no_trips_14d - lag(s.limbo_no_trips_14d) OVER w AS limbo_no_trips_14d_change,
       s.limbo_trips_no_claim - lag(s.limbo_trips_no_claim) OVER w AS limbo_trips_no_claim_change,
       s.limbo_ok - lag(s.limbo_ok) OVER w AS limbo_ok_change
FROM ops.limbo_snapshots s
WINDOW w AS (ORDER BY s.taken_at, s.run_id);
COMMENT ON VIEW ops.v_limbo_history IS
  'Time series of limbo snapshots (one per completed run): leads per stage, shares with identity / driver, and the change of each stage since the previous snapshot.';
