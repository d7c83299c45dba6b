-- ops.check_limbo_alerts: the alerts that fire (ops.firing_limbo_alerts) with their
-- history in ops.alerts (SPEC 9). Called by the CLI (cabinet-leads alerts), by the worker
-- after each run, at step 8 of each run (through ops.snapshot_limbo, p_run_id = that run),
-- and from psql:
--   SELECT * FROM ops.check_limbo_alerts();
-- p_run_id NULL reads live counts; a run id reads that run's snapshot (see the metrics).
-- With p_record (default) it records the alerts in ops.alerts: a new row the first time a
-- rule fires for a subject (first_seen_at), the same row updated while it keeps firing
-- (last_seen_at, values, times_seen), resolved_at set when it stops firing (also when its
-- rule is disabled or deleted). p_record => false only reads (reports, status, and
-- cabinet_leads_reader, who may not write ops.alerts: that statement is then never run).
-- notified_at is set by the worker when the alert webhook accepted the alert.
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
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
  IF p_record IS NOT TRUE THEN
    -- READ ONLY: the open alerts say what is new and what was notified.
    RETURN QUERY
      SELECT f.rule_code, f.severity, f.metric, f.measure, f.comparison, f.threshold,
             f.current_value, f.previous_value, f.change_pct, f.subject, f.message,
             coalesce(o.first_seen_at, now()), now(), o.id IS NULL, o.id, o.notified_at
      FROM ops.firing_limbo_alerts(p_run_id) f
      LEFT JOIN ops.alerts o ON o.rule_code = f.rule_code AND o.subject = f.subject AND o.resolved_at IS NULL
      ORDER BY CASE f.severity WHEN 'CRITICAL' THEN 0 ELSE 1 END, f.rule_code, f.subject;
    RETURN;
  END IF;

  -- RECORD: one statement, so that "opened" is the state before this check.
  RETURN QUERY
    WITH worded AS MATERIALIZED (
      SELECT f.* FROM ops.firing_limbo_alerts(p_run_id) f
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
      SELECT w.rule_code, w.subject, w.severity, w.metric, w.measure, w.comparison, w.threshold, w.current_value,
             w.current_value, w.previous_value, w.change_pct, w.message, now(), now(), p_run_id, p_run_id
      FROM worded w
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
      WHERE a.resolved_at IS NULL
        AND NOT EXISTS (SELECT 1 FROM worded w WHERE w.rule_code = a.rule_code AND w.subject = a.subject)
      RETURNING a.id
    )
    SELECT w.rule_code, w.severity, w.metric, w.measure, w.comparison, w.threshold,
           w.current_value, w.previous_value, w.change_pct, w.subject, w.message,
           coalesce(u.first_seen_at, o.first_seen_at, now()),
           coalesce(u.last_seen_at, now()),
           o.id IS NULL,
           coalesce(u.id, o.id),
           o.notified_at
    FROM worded w
    LEFT JOIN opened o ON o.rule_code = w.rule_code AND o.subject = w.subject
    LEFT JOIN upserted u ON u.rule_code = w.rule_code AND u.subject = w.subject
    ORDER BY CASE w.severity WHEN 'CRITICAL' THEN 0 ELSE 1 END, w.rule_code, w.subject;
END
$$;
COMMENT ON FUNCTION ops.check_limbo_alerts(bigint, boolean) IS
  'Firing alerts of ops.alert_rules (rule_code, metric, threshold, current and previous value, change_pct, message, first/last seen, is_new, notified_at). Records them in ops.alerts unless p_record => false (read only: what cabinet_leads_reader may call). SELECT * FROM ops.check_limbo_alerts();';
