-- canon.estimate_fs_u: the u probabilities of the probabilistic tier estimated from the live
-- bases, for a person writing a new parameter version (docs/matching.md, "Where the m and u
-- come from"): for p_sample random drivers, how many other drivers share their plate
-- exactly, by one confusion, by one other edit (PER_DRIVER, found through the deletion-key
-- index as the tier finds them); for p_sample random (lead, driver) pairs, the share in each
-- hire-date window; the share of drivers in and out of the target park. Reads only; the
-- name tokens need no estimate (their u is each token's share, read live).
CREATE OR REPLACE FUNCTION canon.estimate_fs_u(p_sample integer DEFAULT 2000)
RETURNS TABLE (comparison text, level text, u numeric, u_kind text, sample integer)
LANGUAGE sql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
  WITH drivers AS MATERIALIZED (
    SELECT d.driver_id, d.plate_norm, d.hire_date, d.park_id
    FROM canon_internal.driver_index d
    ORDER BY random()
    LIMIT p_sample
  ),
  near AS (
    SELECT s.driver_id, (canon.plate_comparison(s.plate_norm, o.plate_norm)).level AS level
    FROM drivers s
    JOIN LATERAL (
      SELECT o.plate_norm FROM canon_internal.driver_index o
      WHERE canon.plate_edit_keys(o.plate_norm) && canon.plate_edit_keys(s.plate_norm)
        AND o.plate_norm IS NOT NULL AND o.driver_id <> s.driver_id
    ) o ON true
    WHERE s.plate_norm IS NOT NULL
  ),
  plated AS (SELECT count(*) AS n FROM drivers WHERE plate_norm IS NOT NULL),
  leads AS MATERIALIZED (
    SELECT k.lead_date FROM canon_internal.lead_keys k WHERE k.lead_date IS NOT NULL ORDER BY random() LIMIT p_sample
  ),
  pairs AS (
    SELECT CASE WHEN isfinite(d.hire_date) AND isfinite(l.lead_date) THEN d.hire_date - l.lead_date END AS days
    FROM (SELECT lead_date, row_number() OVER () AS i FROM leads) l
    JOIN (SELECT hire_date, row_number() OVER () AS i FROM drivers WHERE hire_date IS NOT NULL) d ON d.i = l.i
  )
  SELECT 'PLATE', lv.level, round(coalesce(x.n, 0)::numeric / greatest(p.n, 1), 6), 'PER_DRIVER', p.n::integer
  FROM (VALUES ('EXACT'), ('CONFUSION'), ('ONE_EDIT')) lv (level)
  CROSS JOIN plated p
  LEFT JOIN (SELECT n.level, count(*) AS n FROM near n GROUP BY n.level) x ON x.level = lv.level
  UNION ALL
  SELECT 'HIRE_DATE', h.level, round(avg(CASE WHEN h.hit THEN 1 ELSE 0 END)::numeric, 6), 'PAIR', count(*)::integer
  FROM pairs pr
  CROSS JOIN LATERAL (VALUES
    ('NEAR', pr.days BETWEEN 0 AND 30),
    ('CLOSE', pr.days BETWEEN -30 AND 90 AND NOT pr.days BETWEEN 0 AND 30),
    ('YEAR', pr.days BETWEEN -365 AND 365 AND NOT pr.days BETWEEN -30 AND 90),
    ('FAR', NOT pr.days BETWEEN -365 AND 365)) h (level, hit)
  WHERE pr.days IS NOT NULL
  GROUP BY h.level
  UNION ALL
  SELECT 'PARK', pk.level, round(avg(CASE WHEN pk.hit THEN 1 ELSE 0 END)::numeric, 6), 'PAIR', count(*)::integer
  FROM drivers d
  CROSS JOIN LATERAL (VALUES
    ('TARGET', d.park_id IS NOT DISTINCT FROM canon.setting('target_park_id')),
    ('OTHER', d.park_id IS DISTINCT FROM canon.setting('target_park_id'))) pk (level, hit)
  GROUP BY pk.level
$$;
COMMENT ON FUNCTION canon.estimate_fs_u(integer) IS
  'u of the probabilistic tier estimated from the live bases (p_sample random drivers and lead-driver pairs): plate EXACT / CONFUSION / ONE_EDIT as other drivers per driver (PER_DRIVER), hire-date windows and park as shares (PAIR). Reads only; a person writes them into a new canon.match_fs_levels version.';
