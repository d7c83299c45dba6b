-- ops.resolve_lead: an operator links a lead to the driver they know it belongs to
-- (AMBIGUOUS, CONFLICT, WEAK_MATCH_ONLY, ... leads), in one transaction, from psql or
-- `cabinet-leads resolve-lead`:
--   SELECT ops.resolve_lead('9f3a...', 'b41c...', 'called the driver: same person');
-- Links the lead to the driver's person (a new person when the driver has none, with
-- its driver link), rule MANUAL_RESOLUTION, score 100, HIGH; writes the identity origin
-- (decided_by 'manual') and marks the lead's unmatched row RESOLVED. Refuses an unknown
-- lead, an unknown or deleted driver, a lead already linked, and a driver whose person
-- already carries another lead unless p_force (then the lead joins that person).
-- Claims of the lead for another person (left behind when its link was deleted by hand)
-- were computed from another driver's trips: the unsettled ones are deleted (they would
-- block the right ones), and a paid or rejected one refuses the call (CL025: finance
-- first). The lead's claims are locked first (canon.lock_lead_claims), so a settlement in
-- flight is waited for and decided on as committed, and a later one finds them gone.
-- Recorded in canon.identity_audit (RESOLVE, plus the LINK rows written by trigger).
CREATE OR REPLACE FUNCTION ops.resolve_lead(p_lead_source_pk text, p_driver_id text, p_note text, p_force boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '30s'
AS $$
DECLARE
  v_lead record;
  v_link record;
  v_driver record;
  v_in_index boolean;
  v_person uuid;
  v_person_created boolean := false;
  v_other_leads text[];
  v_unmatched record;
  v_settled text;
  v_settled_drivers text;
  v_stale integer[];
  v_claims_removed jsonb;
  v_evidence jsonb;
  v_origin_written boolean;
  v_result jsonb;
BEGIN
  PERFORM canon.require_lead_key(p_lead_source_pk);
  IF p_driver_id IS NULL OR btrim(p_driver_id) = '' THEN
    RAISE EXCEPTION 'invalid driver_id %: expected a driver_id of public.drivers', coalesce(quote_literal(p_driver_id), 'NULL')
      USING ERRCODE = '22023';
  END IF;
  PERFORM canon.require_note(p_note, format('say why lead %s belongs to driver %s', quote_literal(p_lead_source_pk), quote_literal(p_driver_id)));
  IF p_force IS NULL THEN
    RAISE EXCEPTION 'invalid force NULL: expected true or false' USING ERRCODE = '22023';
  END IF;


  -- One identity change at a time, never in the middle of a pipeline run.
  SELECT b.* INTO v_lead FROM canon.begin_lead_change(p_lead_source_pk) b;

  SELECT k.person_key, k.match_rule, k.run_id,
         (SELECT pd.driver_id FROM canon.v_person_driver pd WHERE pd.person_key = k.person_key) AS driver_id
  INTO v_link
  FROM canon.identity_links k
  WHERE k.source_table = 'module_ct_cabinet_leads' AND k.source_pk = p_lead_source_pk;
  IF FOUND THEN
    RAISE EXCEPTION 'lead % is already linked to person % (driver %, rule %): unlink it first with ops.unlink_lead(%, note)',
      quote_literal(p_lead_source_pk), v_link.person_key, coalesce(v_link.driver_id, 'none'),
      v_link.match_rule || coalesce(' by run ' || v_link.run_id, ''), quote_literal(p_lead_source_pk)
      USING ERRCODE = 'CL021';
  END IF;

  SELECT d.driver_id, d.park_id, d.phone, d.car_number, d.car_normalized_number,
         coalesce(nullif(btrim(d.license_normalized_number), ''), d.license_number) AS license,
         coalesce(nullif(btrim(d.full_name), ''), concat_ws(' ', d.first_name, d.middle_name, d.last_name)) AS name
  INTO v_driver
  FROM public.drivers d
  WHERE d.driver_id = p_driver_id
  ORDER BY coalesce(d.updated_at, d.created_at) DESC NULLS LAST
  LIMIT 1;
  IF NOT FOUND THEN
    SELECT EXISTS (SELECT 1 FROM canon_internal.driver_index i WHERE i.driver_id = p_driver_id)
        OR EXISTS (SELECT 1 FROM canon.identity_links k WHERE k.source_table = 'drivers' AND k.source_pk = p_driver_id)
    INTO v_in_index;
    IF v_in_index THEN
      RAISE EXCEPTION 'driver % was deleted from public.drivers: a lead cannot be resolved to a deleted driver', quote_literal(p_driver_id)
        USING ERRCODE = 'CL024';
    END IF;
    RAISE EXCEPTION 'unknown driver %: no row of public.drivers has this driver_id', quote_literal(p_driver_id)
      USING ERRCODE = 'P0002';
  END IF;

  SELECT k.person_key INTO v_person
  FROM canon.identity_links k
  WHERE k.source_table = 'drivers' AND k.source_pk = p_driver_id;
  IF v_person IS NOT NULL THEN
    SELECT array_agg(k.source_pk ORDER BY k.linked_at, k.source_pk) INTO v_other_leads
    FROM canon.identity_links k
    WHERE k.source_table = 'module_ct_cabinet_leads' AND k.person_key = v_person;
    IF v_other_leads IS NOT NULL AND NOT p_force THEN
      RAISE EXCEPTION 'driver % is already linked to person % with lead(s) %: pass force => true to add lead % to that same person (both leads then claim this driver''s trips), or unlink the other lead first if its link is wrong',
        quote_literal(p_driver_id), v_person, array_to_string(v_other_leads, ', '), quote_literal(p_lead_source_pk)
        USING ERRCODE = 'CL023';
    END IF;
  END IF;

  -- LOCK the lead's claims, read as committed, before deciding on them: a settlement in
  -- flight is waited for. Claims of another person (any, when the person is new) are stale.
  SELECT string_agg(format('M%s %s', c.milestone, c.status), ', ' ORDER BY c.milestone)
           FILTER (WHERE c.status IN ('paid', 'rejected') AND (v_person IS NULL OR c.person_key IS DISTINCT FROM v_person)),
         string_agg(DISTINCT coalesce(c.driver_id, 'none'), ', ')
           FILTER (WHERE c.status IN ('paid', 'rejected') AND (v_person IS NULL OR c.person_key IS DISTINCT FROM v_person)),
         array_agg(c.milestone ORDER BY c.milestone)
           FILTER (WHERE c.status NOT IN ('paid', 'rejected') AND (v_person IS NULL OR c.person_key IS DISTINCT FROM v_person))
  INTO v_settled, v_settled_drivers, v_stale
  FROM canon.lock_lead_claims(p_lead_source_pk) c;
  IF v_settled IS NOT NULL THEN
    RAISE EXCEPTION 'lead % has settled claims (%) of another person (driver %): money already paid or rejected for another link; settle it with finance (change those claims) before resolving the lead to driver %',
      quote_literal(p_lead_source_pk), v_settled, v_settled_drivers, quote_literal(p_driver_id)
      USING ERRCODE = 'CL025';
  END IF;

  SELECT u.status, u.reason_code, u.attempts, u.candidates INTO v_unmatched
  FROM canon.identity_unmatched u
  WHERE u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = p_lead_source_pk;

  v_evidence := jsonb_build_object(
    'decided_by', 'manual',
    'db_user', current_user,
    'note', p_note,
    'driver_id', p_driver_id,
    'forced', p_force AND v_other_leads IS NOT NULL,
    'lead', jsonb_build_object('phone_norm', canon.normalize_phone(v_lead.park_phone),
                               'plate_norm', canon.normalize_plate(v_lead.plate),
                               'name_norm', canon.normalize_name(v_lead.lead_name)),
    'driver', jsonb_build_object('park_id', v_driver.park_id,
                                 'phone_norm', canon.normalize_phone(v_driver.phone),
                                 'plate_norm', canon.normalize_plate(coalesce(nullif(btrim(v_driver.car_normalized_number), ''), v_driver.car_number)),
                                 'name_norm', canon.normalize_name(v_driver.name)),
    'name_similarity', canon.name_similarity(v_lead.lead_name, v_driver.name),
    'previous_unmatched', CASE WHEN v_unmatched.status IS NOT NULL THEN
        jsonb_build_object('status', v_unmatched.status, 'reason_code', v_unmatched.reason_code,
                           'attempts', v_unmatched.attempts, 'candidates', v_unmatched.candidates) END);

  -- Exactly the stale claims locked above (none settled).
  PERFORM set_config('cabinet.protect_settled', 'ops.resolve_lead', true);
  WITH gone AS (
    DELETE FROM canon.claims_yango_cabinet_14d c
    WHERE c.lead_source_pk = p_lead_source_pk AND c.milestone = ANY (v_stale)
    RETURNING c.*
  )
  SELECT coalesce(jsonb_agg(jsonb_build_object('milestone', g.milestone, 'status', g.status, 'amount_expected', g.amount_expected,
                                               'person_key', g.person_key, 'driver_id', g.driver_id) ORDER BY g.milestone), '[]'::jsonb)
  INTO v_claims_removed
  FROM gone g;
  PERFORM set_config('cabinet.protect_settled', '', true);

  -- The audit trigger on canon.identity_links reads the note and details from here.
  PERFORM set_config('cabinet.audit_note', p_note, true);
  PERFORM set_config('cabinet.audit_details', jsonb_build_object('operation', 'resolve_lead', 'lead_source_pk', p_lead_source_pk)::text, true);

  IF v_person IS NULL THEN
    v_person := canon.new_person_key();
    v_person_created := true;
    INSERT INTO canon.identity_registry (person_key, confidence_level, primary_phone, primary_license, primary_name)
    VALUES (v_person, 'HIGH', canon.normalize_phone(v_driver.phone), canon.normalize_license(v_driver.license),
            canon.normalize_name(v_driver.name));
    INSERT INTO canon.identity_links (source_table, source_pk, person_key, match_rule, match_score, confidence_level, evidence)
    VALUES ('drivers', p_driver_id, v_person, 'MANUAL_RESOLUTION', 100, 'HIGH',
            jsonb_build_object('linked_with_lead', p_lead_source_pk) || v_evidence);
  END IF;

  INSERT INTO canon.identity_links (source_table, source_pk, person_key, match_rule, match_score, confidence_level, evidence)
  VALUES ('module_ct_cabinet_leads', p_lead_source_pk, v_person, 'MANUAL_RESOLUTION', 100, 'HIGH', v_evidence);

  INSERT INTO canon.identity_origin (person_key, origin_tag, origin_source_id, confidence_level, origin_created_at, decided_by)
  VALUES (v_person, 'cabinet_lead', p_lead_source_pk, 'HIGH', v_lead.lead_created_at, 'manual')
  ON CONFLICT (person_key) DO NOTHING;
  v_origin_written := FOUND;

  UPDATE canon.identity_unmatched u
  SET status = 'RESOLVED', resolved_at = now(), note = p_note
  WHERE u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = p_lead_source_pk AND u.status <> 'RESOLVED';

  v_result := jsonb_build_object(
    'action', 'RESOLVE',
    'lead_source_pk', p_lead_source_pk,
    'lead_rows', v_lead.lead_rows,
    'driver_id', p_driver_id,
    'person_key', v_person,
    'person_created', v_person_created,
    'driver_link_created', v_person_created,
    'forced', p_force AND v_other_leads IS NOT NULL,
    'other_leads_of_person', coalesce(to_jsonb(v_other_leads), '[]'::jsonb),
    'origin_written', v_origin_written,
    'unmatched_before', CASE WHEN v_unmatched.status IS NOT NULL THEN
        jsonb_build_object('status', v_unmatched.status, 'reason_code', v_unmatched.reason_code) END,
    'claims_removed', v_claims_removed,
    'match_rule', 'MANUAL_RESOLUTION',
    'match_score', 100,
    'name_similarity', v_evidence->'name_similarity',
    'db_user', current_user,
    'note', p_note);

  INSERT INTO canon.identity_audit (action, source_table, source_pk, person_key, driver_id, match_rule, match_score,
                                    decided_by, actor, note, details)
  VALUES ('RESOLVE', 'module_ct_cabinet_leads', p_lead_source_pk, v_person, p_driver_id, 'MANUAL_RESOLUTION', 100,
          'manual', current_user, p_note, v_result);

  PERFORM set_config('cabinet.audit_note', '', true);
  PERFORM set_config('cabinet.audit_details', '', true);
  -- The views show the change at once (the lead and whatever else the change marked).
  PERFORM ops.refresh_cabinet_lead_state(ARRAY[p_lead_source_pk]);
  RETURN v_result;
END
$$;
COMMENT ON FUNCTION ops.resolve_lead(text, text, text, boolean) IS
  'Operator: link a lead to a driver by hand (MANUAL_RESOLUTION, 100, HIGH) with person, driver link, origin (manual) and unmatched RESOLVED, audited. p_force: add the lead to a person that already carries another lead. The lead''s unsettled claims of another person are deleted; a settled one refuses (CL025), also one settled while it waits for the claim locks. Returns what was done.';
