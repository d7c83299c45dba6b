-- canon.driver_odd_counts_drift: the odd driver timestamps counted by the last run that
-- counted them (canon_internal.driver_index_state.odd_*), when the next run would report
-- them again without counting (the table as many rows, none written since the last read,
-- no counted row past the threshold), against the rows counted now. Read by
-- ops.check_caches, repaired by ops.repair_caches (the next run counts again).
CREATE OR REPLACE FUNCTION canon.driver_odd_counts_drift()
RETURNS TABLE (example text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
  WITH now_from AS ( -- none while the time zone is invalid (doctor says so: SETTING_INVALID)
    SELECT (now() AT TIME ZONE s.value) + interval '1 day' AS future_from
    FROM canon.settings s
    WHERE s.key = 'business_timezone' AND canon.setting_problem(s.value, s.value_type, s.min_value, s.max_value) IS NULL
  ),
  stored AS (
    SELECT s.odd_rows, s.odd_future_rows, s.odd_untimed_rows, n.future_from
    FROM canon_internal.driver_index_state s
    CROSS JOIN now_from n
    CROSS JOIN canon_internal.source_scan_state sc
    WHERE sc.source_table = 'drivers'
      AND s.odd_rows IS NOT NULL
      AND n.future_from >= s.odd_future_from
      AND (s.odd_valid_before IS NULL OR n.future_from < s.odd_valid_before)
      AND canon.xmin_age_limit(sc.seen_xmin) IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM public.drivers w WHERE age(w.xmin) <= canon.xmin_age_limit(sc.seen_xmin))
  ),
  live AS (
    SELECT count(*) AS driver_rows,
           count(*) FILTER (WHERE d.updated_at > st.future_from OR d.created_at > st.future_from) AS future_rows,
           count(*) FILTER (WHERE d.updated_at IS NULL AND d.created_at IS NULL) AS untimed_rows
    FROM stored st CROSS JOIN public.drivers d
  )
  SELECT format('odd driver timestamps: stored %s future and %s without timestamp of %s rows, counted now %s and %s',
                st.odd_future_rows, st.odd_untimed_rows, st.odd_rows, l.future_rows, l.untimed_rows)
  FROM stored st CROSS JOIN live l
  WHERE l.driver_rows = st.odd_rows
    AND (l.future_rows, l.untimed_rows) IS DISTINCT FROM (st.odd_future_rows, st.odd_untimed_rows)
$$;
COMMENT ON FUNCTION canon.driver_odd_counts_drift() IS
  'The stored counts of odd driver timestamps, when the next run would reuse them, against the rows counted now (ops.check_caches).';
