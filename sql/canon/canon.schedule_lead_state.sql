-- canon.schedule_lead_state: step 7a. The lead rows whose stored state must be evaluated
-- again, into pg_temp.lead_state_todo (lead_id, the first reason that put it there)
-- (docs/change-detection.md):
-- * lead rows marked by the key refresh and keys marked by the link and claim triggers
--   (canon.take_lead_state_marks: the marks taken are removed after, and only those);
-- * every lead (any scope) of a driver with trip rows written since the last look, and,
--   when rows may have gone, every lead that had trip rows (canon.trip_drivers_changed);
-- * on a sweep (p_sweep): every lead of the scope, and lead rows that appeared, vanished
--   or changed key or date anywhere; after a change of the claim rules, every lead;
-- * with p_only_limbo, the scope's NO_DRIVER and TRIPS_NO_CLAIM leads.
-- Called by canon.generate_cabinet_claims. Returns {trips, reasons}.
CREATE OR REPLACE FUNCTION canon.schedule_lead_state(p_run_id bigint, p_scope_from date, p_only_limbo boolean, p_sweep boolean)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET client_min_messages = warning
SET jit = off
AS $$
DECLARE
  v_trips jsonb;
  v_rules_changed boolean := (SELECT m.full_refresh_needed FROM canon_internal.cabinet_lead_state_meta m);
BEGIN
  v_trips := canon.trip_drivers_changed(p_run_id);
  -- The lead rows to re-evaluate, with the first reason that put them there.
  DROP TABLE IF EXISTS pg_temp.lead_state_todo;
  CREATE TEMP TABLE lead_state_todo (lead_id integer PRIMARY KEY, reason text NOT NULL) ON COMMIT DROP;

  -- Lead rows that changed, keys whose links or claims changed (the marks taken now are
  -- removed at the end, and only those).
  INSERT INTO pg_temp.lead_state_todo
  SELECT x.lead_id, 'lead_or_links_or_claims_changed'
  FROM unnest(canon.take_lead_state_marks()) x (lead_id)
  ON CONFLICT DO NOTHING;

  INSERT INTO pg_temp.lead_state_todo
  SELECT s.lead_id, 'trips_written'
  FROM pg_temp.trip_drivers_changed d
  JOIN canon_internal.cabinet_lead_state s ON s.driver_id = d.driver_id
  ON CONFLICT DO NOTHING;

  -- Rows may have gone (deleted, or moved away by an update): only a lead that had trip
  -- rows can lose some (any scope); one without can only gain, and new rows are found.
  -- (the first look has nothing to compare with: every lead with a driver)
  IF (v_trips->>'rows_may_be_gone')::boolean THEN
    INSERT INTO pg_temp.lead_state_todo
    SELECT s.lead_id, 'trip_rows_gone'
    FROM canon_internal.cabinet_lead_state s
    WHERE s.trip_rows_in_window > 0
       OR (v_trips->>'whole_read_reason' = 'first_read' AND s.driver_id IS NOT NULL)
    ON CONFLICT DO NOTHING;
  END IF;

  IF p_sweep THEN
    INSERT INTO pg_temp.lead_state_todo
    SELECT l.id, 'sweep_scope'
    FROM public.module_ct_cabinet_leads l
    WHERE l.lead_created_at >= p_scope_from::timestamp
    ON CONFLICT DO NOTHING;
    -- Lead rows evaluated but gone, undated, re-keyed or re-dated; dated rows never evaluated.
    INSERT INTO pg_temp.lead_state_todo
    SELECT coalesce(s.lead_id, l.id), 'sweep_membership'
    FROM canon_internal.cabinet_lead_state s
    FULL JOIN (SELECT l.id, canon.lead_source_pk(l.external_id, l.id) AS lead_source_pk, canon.lead_date_of(l.lead_created_at) AS lead_date
               FROM public.module_ct_cabinet_leads l
               WHERE isfinite(l.lead_created_at)) l
      ON l.id = s.lead_id
    WHERE s.lead_id IS NULL OR l.id IS NULL
       OR s.lead_source_pk <> l.lead_source_pk OR s.lead_date <> l.lead_date
    ON CONFLICT DO NOTHING;
    IF v_rules_changed THEN
      INSERT INTO pg_temp.lead_state_todo
      SELECT s.lead_id, 'claim_rules_changed' FROM canon_internal.cabinet_lead_state s
      ON CONFLICT DO NOTHING;
    END IF;
  END IF;

  IF p_only_limbo THEN
    INSERT INTO pg_temp.lead_state_todo
    SELECT s.lead_id, 'only_limbo'
    FROM canon_internal.cabinet_lead_state s
    WHERE s.limbo_stage IN ('NO_DRIVER', 'TRIPS_NO_CLAIM') AND s.lead_date >= p_scope_from
    ON CONFLICT DO NOTHING;
  END IF;

  RETURN jsonb_build_object(
    'trips', v_trips,
    'reasons', (SELECT coalesce(jsonb_object_agg(r.reason, r.n), '{}'::jsonb)
                FROM (SELECT t.reason, count(*) AS n FROM pg_temp.lead_state_todo t GROUP BY t.reason) r));
END
$$;
COMMENT ON FUNCTION canon.schedule_lead_state(bigint, date, boolean, boolean) IS
  'Step 7a: the lead rows whose stored state is to be evaluated again, with why (pg_temp.lead_state_todo). Returns {trips, reasons}.';
