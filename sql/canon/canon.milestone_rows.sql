-- canon.milestone_rows: the one unpivot of a lead's three milestones (1, 5, 25) from its
-- m1_/m5_/m25_ columns into one row each, for ops.v_cabinet_claims_expected_14d and
-- canon.insert_missing_claims:
--   CROSS JOIN LATERAL canon.milestone_rows(c.m1_trips_threshold, c.m1_amount, c.reached_m1, ...) m
-- A plain SQL function returning a set, no SET clause and no STRICT, so the planner inlines
-- it into its VALUES list: the plans are those of the VALUES written by hand.
CREATE OR REPLACE FUNCTION canon.milestone_rows(
  p_m1_trips_threshold integer, p_m1_amount numeric, p_m1_reached boolean,
  p_m5_trips_threshold integer, p_m5_amount numeric, p_m5_reached boolean,
  p_m25_trips_threshold integer, p_m25_amount numeric, p_m25_reached boolean)
RETURNS TABLE (milestone integer, trips_threshold integer, amount numeric, reached boolean)
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
  VALUES (1, p_m1_trips_threshold, p_m1_amount, p_m1_reached),
         (5, p_m5_trips_threshold, p_m5_amount, p_m5_reached),
         (25, p_m25_trips_threshold, p_m25_amount, p_m25_reached)
$$;
COMMENT ON FUNCTION canon.milestone_rows(integer, numeric, boolean, integer, numeric, boolean, integer, numeric, boolean) IS
  'The three milestones (1, 5, 25) of a lead as rows (milestone, trips_threshold, amount, reached) from its m1_/m5_/m25_ values; inlined by the planner.';
