-- ops.firing_limbo_alerts: the alerts that fire now, in plain words (SPEC 9): the enabled
-- rules of ops.alert_rules evaluated on ops.limbo_alert_metrics. Reads only: the part of
-- ops.check_limbo_alerts that decides, so that its read-only form needs no right to write
-- ops.alerts (a reader may call it: docs/security.md).
--   SELECT * FROM ops.firing_limbo_alerts();
-- p_run_id NULL reads live counts; a run id reads that run's snapshot (see the metrics).
-- Week over week: change_pct = 100 * (last - previous) / previous over the last two
-- complete lead weeks; previous 0 and last 0 is no change; previous 0 and last > 0 is an
-- unbounded rise (fires for '>' and '>=', change_pct NULL). A stale-run rule fires when
-- no COMPLETED run exists at all. min_current_value, when set, must be reached too.
CREATE OR REPLACE FUNCTION ops.firing_limbo_alerts(p_run_id bigint DEFAULT NULL)
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
  message         text
)
LANGUAGE sql
STABLE
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
  )
  SELECT w.rule_code, w.severity, w.metric, w.measure, w.comparison, w.threshold,
         w.cur, w.prev, w.change_pct, w.subject, w.message
  FROM worded w
  ORDER BY CASE w.severity WHEN 'CRITICAL' THEN 0 ELSE 1 END, w.rule_code, w.subject
$$;
COMMENT ON FUNCTION ops.firing_limbo_alerts(bigint) IS
  'Alerts of ops.alert_rules that fire now (live, or on the snapshot of run p_run_id), with metric, threshold, current and previous value, change_pct and message; reads only. ops.check_limbo_alerts records them.';
