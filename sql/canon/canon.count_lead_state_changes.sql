-- canon.count_lead_state_changes: statement-level trigger function on
-- canon_internal.cabinet_lead_state (INSERT, UPDATE, DELETE, transition tables old_rows /
-- new_rows; TRUNCATE). Keeps canon_internal.cabinet_lead_state_counts equal to the stored rows
-- counted by lead date, stage and the flags the run's figures need: each statement adds
-- its new rows and subtracts its old ones, grouped (a few hundred counters), so that the
-- scope's figures of step 7 and the snapshot's counts per lead week cost what changed,
-- not a pass over every stored lead (at 1M leads two such passes were about 1 s of every
-- backfill run).
CREATE OR REPLACE FUNCTION canon.count_lead_state_changes()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    DELETE FROM canon_internal.cabinet_lead_state_counts;
    RETURN NULL;
  END IF;
  IF TG_OP = 'INSERT' THEN
    INSERT INTO canon_internal.cabinet_lead_state_counts AS c (
      lead_date, limbo_stage, with_identity, with_driver, with_trips, with_rule, leads)
    SELECT n.lead_date, n.limbo_stage, n.person_key IS NOT NULL, n.driver_id IS NOT NULL,
           n.trips_in_window > 0, n.window_days IS NOT NULL, count(*)
    FROM new_rows n
    GROUP BY 1, 2, 3, 4, 5, 6
    ORDER BY 1, 2, 3, 4, 5, 6
    ON CONFLICT (lead_date, limbo_stage, with_identity, with_driver, with_trips, with_rule)
      DO UPDATE SET leads = c.leads + excluded.leads;
  ELSIF TG_OP = 'UPDATE' THEN
    INSERT INTO canon_internal.cabinet_lead_state_counts AS c (
      lead_date, limbo_stage, with_identity, with_driver, with_trips, with_rule, leads)
    SELECT x.lead_date, x.limbo_stage, x.with_identity, x.with_driver, x.with_trips, x.with_rule, sum(x.n)
    FROM (
      SELECT o.lead_date, o.limbo_stage, o.person_key IS NOT NULL AS with_identity, o.driver_id IS NOT NULL AS with_driver,
             o.trips_in_window > 0 AS with_trips, o.window_days IS NOT NULL AS with_rule, -1 AS n
      FROM old_rows o
      UNION ALL
      SELECT n.lead_date, n.limbo_stage, n.person_key IS NOT NULL, n.driver_id IS NOT NULL,
             n.trips_in_window > 0, n.window_days IS NOT NULL, 1
      FROM new_rows n
    ) x
    GROUP BY 1, 2, 3, 4, 5, 6
    HAVING sum(x.n) <> 0
    ORDER BY 1, 2, 3, 4, 5, 6
    ON CONFLICT (lead_date, limbo_stage, with_identity, with_driver, with_trips, with_rule)
      DO UPDATE SET leads = c.leads + excluded.leads;
    DELETE FROM canon_internal.cabinet_lead_state_counts c WHERE c.leads = 0;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO canon_internal.cabinet_lead_state_counts AS c (
      lead_date, limbo_stage, with_identity, with_driver, with_trips, with_rule, leads)
    SELECT o.lead_date, o.limbo_stage, o.person_key IS NOT NULL, o.driver_id IS NOT NULL,
           o.trips_in_window > 0, o.window_days IS NOT NULL, -count(*)
    FROM old_rows o
    GROUP BY 1, 2, 3, 4, 5, 6
    ORDER BY 1, 2, 3, 4, 5, 6
    ON CONFLICT (lead_date, limbo_stage, with_identity, with_driver, with_trips, with_rule)
      DO UPDATE SET leads = c.leads + excluded.leads;
    DELETE FROM canon_internal.cabinet_lead_state_counts c WHERE c.leads = 0;
  END IF;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION canon.count_lead_state_changes() IS
  'Trigger on canon_internal.cabinet_lead_state: keeps canon_internal.cabinet_lead_state_counts equal to the stored rows counted by lead_date, limbo_stage and flags.';
