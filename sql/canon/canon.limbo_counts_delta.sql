-- canon.limbo_counts_delta: the stored lead state counted (canon.cabinet_lead_state_counts,
-- leads > 0) with, for the given lead rows, their stored rows taken off (leads = -1) and
-- their rows of the limbo view's state added (leads = 1, canon.v_cabinet_lead_status_current):
-- summed by week and stage it is the view's count when the given rows are every row whose
-- stored state may not be current. Used by canon.limbo_week_counts_of_state.
CREATE OR REPLACE FUNCTION canon.limbo_counts_delta(p_lead_ids integer[])
RETURNS TABLE (week_start date, limbo_stage text, with_identity boolean, with_driver boolean, leads bigint)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
  SELECT date_trunc('week', c.lead_date::timestamp)::date, c.limbo_stage, c.with_identity, c.with_driver, c.leads
  FROM canon.cabinet_lead_state_counts c
  UNION ALL
  SELECT date_trunc('week', s.lead_date::timestamp)::date, s.limbo_stage, s.person_key IS NOT NULL, s.driver_id IS NOT NULL, -1
  FROM unnest(p_lead_ids) x (lead_id)
  JOIN canon.cabinet_lead_state s ON s.lead_id = x.lead_id
  UNION ALL
  SELECT date_trunc('week', v.lead_date::timestamp)::date, v.limbo_stage, v.person_key IS NOT NULL, v.driver_id IS NOT NULL, 1
  FROM canon.v_cabinet_lead_status_current v
  WHERE v.lead_id IN (SELECT unnest(p_lead_ids))
$$;
COMMENT ON FUNCTION canon.limbo_counts_delta(integer[]) IS
  'Stored state counters, with the given lead rows'' stored rows taken off (-1) and their current rows added (+1): the limbo view''s counts when those are all the rows that may not be current.';
