-- ops.funnel_week_counts: the counts of the weekly funnel per lead week (what
-- ops.v_cabinet_14d_funnel_weekly shows) without a pass over every lead: the stored
-- state's counters corrected for the rows whose stored state may not be current
-- (canon.lead_ids_maybe_not_current: marked, or written since the last read of the lead
-- rows; every row when the counts do not add up), canon.funnel_week_counts_of. Equal to
-- the aggregates of ops.v_cabinet_leads_limbo and ops.v_cabinet_claims_expected_14d
-- (test/sql/ops.funnel_week_counts.test.ts). SECURITY DEFINER (it only reads; a fixed
-- search_path): the counters and the lead rows are not a reader's, the funnel view is.
CREATE OR REPLACE FUNCTION ops.funnel_week_counts()
RETURNS TABLE (
  week_start             date,
  leads                  bigint,
  leads_with_identity    bigint,
  leads_with_driver      bigint,
  leads_with_trips_14d   bigint,
  leads_window_open      bigint,
  reached_m1_14d         bigint,
  reached_m5_14d         bigint,
  reached_m25_14d        bigint,
  trips_14d              numeric,
  claims_expected        bigint,
  claims_expected_amount numeric,
  claims_present         bigint,
  claims_present_amount  numeric,
  claims_paid            bigint,
  claims_paid_amount     numeric,
  limbo_no_identity      bigint,
  limbo_no_driver        bigint,
  limbo_no_trips_14d     bigint,
  limbo_trips_no_claim   bigint,
  limbo_ok               bigint
)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
  SELECT * FROM canon.funnel_week_counts_of(canon.lead_ids_maybe_not_current(true))
$$;
COMMENT ON FUNCTION ops.funnel_week_counts() IS
  'Counts of the weekly 14-day funnel per lead week (leads, flags, milestones, claims expected / present / paid with amounts, stages), from the stored state''s counters corrected for the rows that may not be current; what ops.v_cabinet_14d_funnel_weekly shows.';
