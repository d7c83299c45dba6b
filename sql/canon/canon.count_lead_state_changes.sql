-- canon.count_lead_state_changes: statement-level trigger function on
-- canon_internal.cabinet_lead_state (INSERT, UPDATE, DELETE, transition tables old_rows /
-- new_rows; TRUNCATE). Keeps canon_internal.cabinet_lead_state_counts equal to the stored rows
-- counted by lead date, stage and flags (canon.v_cabinet_lead_state_counted: the same
-- grouping): each statement adds its new rows and subtracts its old ones, grouped (a few
-- hundred counters), so that the scope's figures of step 7, the snapshot's counts per lead
-- week and the weekly funnel cost what changed, not a pass over every stored lead (at 1M
-- leads two such passes were about 1 s of every backfill run).
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
      lead_date, limbo_stage, with_identity, with_driver, with_trips, with_rule, window_days,
      reached_m1, reached_m5, reached_m25, has_claim_m1, has_claim_m5, has_claim_m25,
      leads, trips, m1_amount, m5_amount, m25_amount, paid_claims, paid_amount)
    SELECT n.lead_date, n.limbo_stage, n.person_key IS NOT NULL, n.driver_id IS NOT NULL,
           n.trips_in_window > 0, n.window_days IS NOT NULL, coalesce(n.window_days, 0),
           n.reached_m1, n.reached_m5, n.reached_m25, n.has_claim_m1, n.has_claim_m5, n.has_claim_m25,
           count(*), sum(n.trips_in_window),
           coalesce(sum(n.m1_amount), 0), coalesce(sum(n.m5_amount), 0), coalesce(sum(n.m25_amount), 0),
           sum(n.paid_claims), sum(n.paid_amount)
    FROM new_rows n
    GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13
    ORDER BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13
    ON CONFLICT (lead_date, limbo_stage, with_identity, with_driver, with_trips, with_rule, window_days,
                 reached_m1, reached_m5, reached_m25, has_claim_m1, has_claim_m5, has_claim_m25)
      DO UPDATE SET leads = c.leads + excluded.leads, trips = c.trips + excluded.trips,
                    m1_amount = c.m1_amount + excluded.m1_amount, m5_amount = c.m5_amount + excluded.m5_amount,
                    m25_amount = c.m25_amount + excluded.m25_amount,
                    paid_claims = c.paid_claims + excluded.paid_claims, paid_amount = c.paid_amount + excluded.paid_amount;
  ELSIF TG_OP = 'UPDATE' THEN
    INSERT INTO canon_internal.cabinet_lead_state_counts AS c (
      lead_date, limbo_stage, with_identity, with_driver, with_trips, with_rule, window_days,
      reached_m1, reached_m5, reached_m25, has_claim_m1, has_claim_m5, has_claim_m25,
      leads, trips, m1_amount, m5_amount, m25_amount, paid_claims, paid_amount)
    SELECT x.lead_date, x.limbo_stage, x.with_identity, x.with_driver, x.with_trips, x.with_rule, x.window_days,
           x.reached_m1, x.reached_m5, x.reached_m25, x.has_claim_m1, x.has_claim_m5, x.has_claim_m25,
           sum(x.n), sum(x.n * x.trips), sum(x.n * x.m1_amount), sum(x.n * x.m5_amount), sum(x.n * x.m25_amount),
           sum(x.n * x.paid_claims), sum(x.n * x.paid_amount)
    FROM (
      SELECT o.lead_date, o.limbo_stage, o.person_key IS NOT NULL AS with_identity, o.driver_id IS NOT NULL AS with_driver,
             o.trips_in_window > 0 AS with_trips, o.window_days IS NOT NULL AS with_rule,
             coalesce(o.window_days, 0) AS window_days,
             o.reached_m1, o.reached_m5, o.reached_m25, o.has_claim_m1, o.has_claim_m5, o.has_claim_m25,
             o.trips_in_window AS trips, coalesce(o.m1_amount, 0) AS m1_amount, coalesce(o.m5_amount, 0) AS m5_amount,
             coalesce(o.m25_amount, 0) AS m25_amount, o.paid_claims, o.paid_amount, -1 AS n
      FROM old_rows o
      UNION ALL
      SELECT n.lead_date, n.limbo_stage, n.person_key IS NOT NULL, n.driver_id IS NOT NULL,
             n.trips_in_window > 0, n.window_days IS NOT NULL, coalesce(n.window_days, 0),
             n.reached_m1, n.reached_m5, n.reached_m25, n.has_claim_m1, n.has_claim_m5, n.has_claim_m25,
             n.trips_in_window, coalesce(n.m1_amount, 0), coalesce(n.m5_amount, 0), coalesce(n.m25_amount, 0),
             n.paid_claims, n.paid_amount, 1
      FROM new_rows n
    ) x
    GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13
    -- (a row that moved no counter but changed its trips, amounts or paid claims still changes the sums)
    HAVING sum(x.n) <> 0 OR sum(x.n * x.trips) <> 0 OR sum(x.n * x.m1_amount) <> 0
        OR sum(x.n * x.m5_amount) <> 0 OR sum(x.n * x.m25_amount) <> 0
        OR sum(x.n * x.paid_claims) <> 0 OR sum(x.n * x.paid_amount) <> 0
    ORDER BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13
    ON CONFLICT (lead_date, limbo_stage, with_identity, with_driver, with_trips, with_rule, window_days,
                 reached_m1, reached_m5, reached_m25, has_claim_m1, has_claim_m5, has_claim_m25)
      DO UPDATE SET leads = c.leads + excluded.leads, trips = c.trips + excluded.trips,
                    m1_amount = c.m1_amount + excluded.m1_amount, m5_amount = c.m5_amount + excluded.m5_amount,
                    m25_amount = c.m25_amount + excluded.m25_amount,
                    paid_claims = c.paid_claims + excluded.paid_claims, paid_amount = c.paid_amount + excluded.paid_amount;
    DELETE FROM canon_internal.cabinet_lead_state_counts c WHERE c.leads = 0;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO canon_internal.cabinet_lead_state_counts AS c (
      lead_date, limbo_stage, with_identity, with_driver, with_trips, with_rule, window_days,
      reached_m1, reached_m5, reached_m25, has_claim_m1, has_claim_m5, has_claim_m25,
      leads, trips, m1_amount, m5_amount, m25_amount, paid_claims, paid_amount)
    SELECT o.lead_date, o.limbo_stage, o.person_key IS NOT NULL, o.driver_id IS NOT NULL,
           o.trips_in_window > 0, o.window_days IS NOT NULL, coalesce(o.window_days, 0),
           o.reached_m1, o.reached_m5, o.reached_m25, o.has_claim_m1, o.has_claim_m5, o.has_claim_m25,
           -count(*), -sum(o.trips_in_window),
           -coalesce(sum(o.m1_amount), 0), -coalesce(sum(o.m5_amount), 0), -coalesce(sum(o.m25_amount), 0),
           -sum(o.paid_claims), -sum(o.paid_amount)
    FROM old_rows o
    GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13
    ORDER BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13
    ON CONFLICT (lead_date, limbo_stage, with_identity, with_driver, with_trips, with_rule, window_days,
                 reached_m1, reached_m5, reached_m25, has_claim_m1, has_claim_m5, has_claim_m25)
      DO UPDATE SET leads = c.leads + excluded.leads, trips = c.trips + excluded.trips,
                    m1_amount = c.m1_amount + excluded.m1_amount, m5_amount = c.m5_amount + excluded.m5_amount,
                    m25_amount = c.m25_amount + excluded.m25_amount,
                    paid_claims = c.paid_claims + excluded.paid_claims, paid_amount = c.paid_amount + excluded.paid_amount;
    DELETE FROM canon_internal.cabinet_lead_state_counts c WHERE c.leads = 0;
  END IF;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION canon.count_lead_state_changes() IS
  'Trigger on canon_internal.cabinet_lead_state: keeps canon_internal.cabinet_lead_state_counts equal to the stored rows counted by lead_date, limbo_stage and flags (canon.v_cabinet_lead_state_counted).';
