-- canon.driver_odd_counts_drift: what the next run would count as odd driver timestamps
-- without reading every row (the versions tracked in canon_internal.driver_index_state.odd_versions
-- that are still there, and the versions written since the last read), against every row
-- counted now, at this moment's threshold. Nothing to check when the next run counts
-- every row anyway (no tracked versions, the table rewritten, the threshold moved back).
-- Read by ops.check_caches, repaired by ops.repair_caches (the next run counts every row).
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
    SELECT s.odd_versions, s.odd_version_xmins, n.future_from, canon.xmin_age_limit(sc.seen_xmin) AS age_limit
    FROM canon_internal.driver_index_state s
    CROSS JOIN now_from n
    CROSS JOIN canon_internal.source_scan_state sc
    WHERE sc.source_table = 'drivers'
      AND s.odd_versions IS NOT NULL
      AND n.future_from >= s.odd_future_from
      AND s.odd_relfilenode = pg_relation_filenode('public.drivers'::regclass)
      AND canon.xmin_age_limit(sc.seen_xmin) IS NOT NULL
  ),
  counted AS (
    SELECT o.why, age(d.xmin) <= st.age_limit OR t.tid IS NOT NULL AS seen_by_next_run
    FROM stored st
    CROSS JOIN public.drivers d
    CROSS JOIN LATERAL (SELECT canon.driver_timestamp_oddity(d.updated_at, d.created_at, st.future_from) AS why) o
    LEFT JOIN unnest(st.odd_versions, st.odd_version_xmins) t (tid, x) ON t.tid = d.ctid AND t.x = d.xmin
    WHERE o.why IS NOT NULL
  ),
  totals AS (
    SELECT count(*) FILTER (WHERE c.why = 'FUTURE_TIMESTAMP' AND c.seen_by_next_run) AS next_future,
           count(*) FILTER (WHERE c.why = 'NO_TIMESTAMP' AND c.seen_by_next_run) AS next_untimed,
           count(*) FILTER (WHERE c.why = 'FUTURE_TIMESTAMP') AS future,
           count(*) FILTER (WHERE c.why = 'NO_TIMESTAMP') AS untimed
    FROM counted c
  )
  SELECT format('odd driver timestamps: the next run would count %s future and %s without timestamp, counted now %s and %s',
                t.next_future, t.next_untimed, t.future, t.untimed)
  FROM totals t
  WHERE EXISTS (SELECT 1 FROM stored)
    AND (t.next_future, t.next_untimed) IS DISTINCT FROM (t.future, t.untimed)
$$;
COMMENT ON FUNCTION canon.driver_odd_counts_drift() IS
  'The odd driver timestamps the next run would count from the tracked versions and the versions written since the last read, against every row counted now (ops.check_caches).';
