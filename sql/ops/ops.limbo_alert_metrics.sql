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
