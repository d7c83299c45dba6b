-- canon.limbo_counts_delta: the stored lead state counted (canon_internal.cabinet_lead_state_counts,
-- leads > 0), with, for those of the given lead rows whose stored state is not current
-- (canon.lead_ids_not_current: the rule of canon.v_cabinet_lead_status_current), their
-- stored rows taken off (leads = -1) and their live rows added (leads = 1, one
-- canon.lead_status_live each: as a semi-join with canon.v_cabinet_lead_status the planner
-- evaluated the chain of every lead, minutes at 1M leads). Summed by week and stage it is
-- the limbo view's count when the given rows include every row whose stored state may not
-- be current. Used by canon.limbo_week_counts_of_state and the report's counts.
CREATE OR REPLACE FUNCTION canon.limbo_counts_delta(p_lead_ids integer[])
RETURNS TABLE (week_start date, limbo_stage text, with_identity boolean, with_driver boolean, leads bigint)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
  WITH not_current AS MATERIALIZED (
    SELECT n.lead_id FROM canon.lead_ids_not_current(p_lead_ids) n
  )
  SELECT date_trunc('week', c.lead_date::timestamp)::date, c.limbo_stage, c.with_identity, c.with_driver, c.leads
  FROM canon_internal.cabinet_lead_state_counts c
  UNION ALL
  SELECT date_trunc('week', s.lead_date::timestamp)::date, s.limbo_stage, s.person_key IS NOT NULL, s.driver_id IS NOT NULL, -1
  FROM not_current n
  JOIN canon_internal.cabinet_lead_state s ON s.lead_id = n.lead_id
  UNION ALL
  SELECT date_trunc('week', v.lead_date::timestamp)::date, v.limbo_stage, v.person_key IS NOT NULL, v.driver_id IS NOT NULL, 1
  FROM not_current n
  CROSS JOIN LATERAL canon.lead_status_live(n.lead_id) v
$$;
COMMENT ON FUNCTION canon.limbo_counts_delta(integer[]) IS
  'Stored state counters, with those of the given lead rows whose stored state is not current counted live instead: the limbo view''s counts when those are all the rows that may not be current.';
