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
