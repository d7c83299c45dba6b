-- ops.not_this_driver: a person answers that a lead is not a given driver (a relative, a
-- namesake, the car's previous owner), from psql or `cabinet-leads not-this-driver`:
--   SELECT ops.not_this_driver('9f3a...', 'd-123', 'his brother: other DNI on the call');
-- Stores the label (canon.lead_driver_labels; again: the new note) so later runs never link
-- the pair, and marks the lead's OPEN unmatched row due, so the next run decides it without
-- that driver. Refuses an unknown lead, an unknown driver and a lead linked to that driver
-- (unlink it first).
CREATE OR REPLACE FUNCTION ops.not_this_driver(p_lead_source_pk text, p_driver_id text, p_note text)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '30s'
AS $$
DECLARE
  v_linked_driver text;
  v_due integer;
BEGIN
  PERFORM canon.require_lead_key(p_lead_source_pk);
  PERFORM canon.require_note(p_note, format('say why lead %s is not driver %s', quote_literal(p_lead_source_pk), coalesce(quote_literal(p_driver_id), 'NULL')));
  PERFORM canon.begin_lead_change(p_lead_source_pk);
  IF p_driver_id IS NULL OR NOT EXISTS (SELECT 1 FROM canon_internal.driver_index i WHERE i.driver_id = p_driver_id)
     AND NOT EXISTS (SELECT 1 FROM public.drivers d WHERE d.driver_id = p_driver_id) THEN
    RAISE EXCEPTION 'unknown driver %', coalesce(quote_literal(p_driver_id), 'NULL') USING ERRCODE = 'P0002';
  END IF;
  SELECT pd.driver_id INTO v_linked_driver
  FROM canon.identity_links k
  JOIN canon.v_person_driver pd ON pd.person_key = k.person_key
  WHERE k.source_table = 'module_ct_cabinet_leads' AND k.source_pk = p_lead_source_pk AND pd.driver_id = p_driver_id;
  IF FOUND THEN
    RAISE EXCEPTION 'lead % is linked to driver %: unlink it first with ops.unlink_lead(%, note)',
      quote_literal(p_lead_source_pk), quote_literal(p_driver_id), quote_literal(p_lead_source_pk)
      USING ERRCODE = 'CL021';
  END IF;
  INSERT INTO canon.lead_driver_labels AS l (lead_source_pk, driver_id, note)
  VALUES (p_lead_source_pk, p_driver_id, p_note)
  ON CONFLICT (lead_source_pk, driver_id) DO UPDATE
    SET note = excluded.note, labelled_by = current_user, labelled_at = now();
  UPDATE canon.identity_unmatched u SET retry_due = true
  WHERE u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = p_lead_source_pk AND u.status = 'OPEN' AND NOT u.retry_due;
  GET DIAGNOSTICS v_due = ROW_COUNT;
  RETURN jsonb_build_object('action', 'NOT_THIS_DRIVER', 'lead_source_pk', p_lead_source_pk, 'driver_id', p_driver_id,
                            'marked_due', v_due > 0, 'db_user', current_user, 'note', p_note);
END
$$;
COMMENT ON FUNCTION ops.not_this_driver(text, text, text) IS
  'Operator: the lead is not this driver. Stores the label (canon.lead_driver_labels) so no later run links the pair (rules or probabilistic tier) and marks the lead due; refuses unknown leads and drivers and a lead linked to that driver. Returns what was done.';
