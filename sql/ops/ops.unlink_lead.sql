-- ops.unlink_lead: an operator removes a wrong lead link, in one transaction, from psql
-- or `cabinet-leads unlink-lead`:
--   SELECT ops.unlink_lead('9f3a...', 'driver b41c is the brother; wrong person');
-- Deletes the lead's link. When no other lead is linked to that person, the person goes
-- too, with its driver link(s) and origin (no orphan persons); otherwise the person stays
-- and its origin moves to its earliest remaining lead. The lead's claims that are not
-- settled (expected, generated, expired) are deleted: they were computed from the wrong
-- driver's trips and would block the right ones. Its unmatched row (RESOLVED) is deleted
-- too, so the next run evaluates the lead as new. Refuses an unknown lead, a lead not
-- linked, and a lead with paid or rejected claims (settled money: finance first).
-- Race-free with finance: the lead's claims are locked (canon.lock_lead_claims) before
-- the decision, so a claim being settled meanwhile is waited for and then refuses the
-- unlink; a settlement that comes later waits for this transaction and then finds the
-- claim gone. The trigger guard (cabinet.protect_settled) refuses any settled row anyway.
-- Audited in canon.identity_audit (UNLINK rows, by trigger, with everything removed).
CREATE OR REPLACE FUNCTION ops.unlink_lead(p_lead_source_pk text, p_note text)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '30s'
AS $$
DECLARE
  v_link canon.identity_links%ROWTYPE;
  v_driver_id text;
  v_lead_rows integer;
  v_settled text;
  v_locked integer[];
  v_other_leads text[];
  v_person_removed boolean;
  v_claims jsonb;
  v_unmatched jsonb;
  v_foreign_claims text;
  v_driver_links jsonb := '[]'::jsonb;
  v_origin_moved_to text;
  v_result jsonb;
BEGIN
  PERFORM canon.require_lead_key(p_lead_source_pk);
  PERFORM canon.require_note(p_note, format('say why the link of lead %s is wrong', quote_literal(p_lead_source_pk)));
  -- A link is removable even when its lead row has since disappeared upstream.
  SELECT b.lead_rows INTO v_lead_rows FROM canon.begin_lead_change(p_lead_source_pk, p_allow_unknown => true) b;

  SELECT k.* INTO v_link
  FROM canon.identity_links k
  WHERE k.source_table = 'module_ct_cabinet_leads' AND k.source_pk = p_lead_source_pk
  FOR UPDATE;
  IF NOT FOUND THEN
    IF v_lead_rows = 0 THEN
      RAISE EXCEPTION 'unknown lead %: no row of public.module_ct_cabinet_leads has this lead_source_pk', quote_literal(p_lead_source_pk)
        USING ERRCODE = 'P0002';
    END IF;
    RAISE EXCEPTION 'lead % is not linked: nothing to unlink (%)', quote_literal(p_lead_source_pk),
      coalesce((SELECT format('unmatched: %s, %s', u.status, u.reason_code) FROM canon.identity_unmatched u
                WHERE u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = p_lead_source_pk), 'never evaluated')
      USING ERRCODE = 'CL022';
  END IF;
  SELECT pd.driver_id INTO v_driver_id FROM canon.v_person_driver pd WHERE pd.person_key = v_link.person_key;

  -- LOCK the lead's claims, read as committed, before deciding: a settlement in flight is waited for.
  SELECT string_agg(format('M%s %s', c.milestone, c.status), ', ' ORDER BY c.milestone)
           FILTER (WHERE c.status IN ('paid', 'rejected')),
         array_agg(c.milestone ORDER BY c.milestone)
  INTO v_settled, v_locked
  FROM canon.lock_lead_claims(p_lead_source_pk) c;
  IF v_settled IS NOT NULL THEN
    RAISE EXCEPTION 'lead % has settled claims (%): its link backs money already paid or rejected; settle it with finance (change those claims) before unlinking',
      quote_literal(p_lead_source_pk), v_settled
      USING ERRCODE = 'CL025';
  END IF;

  SELECT array_agg(k.source_pk ORDER BY k.source_pk) INTO v_other_leads
  FROM canon.identity_links k
  WHERE k.source_table = 'module_ct_cabinet_leads' AND k.person_key = v_link.person_key
    AND k.source_pk <> p_lead_source_pk;
  v_person_removed := v_other_leads IS NULL;

  IF v_person_removed THEN
    SELECT string_agg(format('%s M%s', c.lead_source_pk, c.milestone), ', ' ORDER BY c.lead_source_pk, c.milestone) INTO v_foreign_claims
    FROM canon.claims_yango_cabinet_14d c
    WHERE c.person_key = v_link.person_key AND c.lead_source_pk <> p_lead_source_pk;
    IF v_foreign_claims IS NOT NULL THEN
      RAISE EXCEPTION 'person % of lead % is still referenced by claims of other leads (%): fix those claims first',
        v_link.person_key, quote_literal(p_lead_source_pk), v_foreign_claims
        USING ERRCODE = 'CL025';
    END IF;
  END IF;

  SELECT to_jsonb(u) INTO v_unmatched
  FROM canon.identity_unmatched u
  WHERE u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = p_lead_source_pk;

  -- Exactly the claims locked above (none settled); the audit lists what was deleted.
  PERFORM set_config('cabinet.protect_settled', 'ops.unlink_lead', true);
  WITH gone AS (
    DELETE FROM canon.claims_yango_cabinet_14d c
    WHERE c.lead_source_pk = p_lead_source_pk AND c.milestone = ANY (v_locked)
    RETURNING c.*
  )
  SELECT coalesce(jsonb_agg(to_jsonb(g) ORDER BY g.milestone), '[]'::jsonb) INTO v_claims FROM gone g;
  PERFORM set_config('cabinet.protect_settled', '', true);

  -- The audit trigger on canon.identity_links reads the note and details from here.
  PERFORM set_config('cabinet.audit_note', p_note, true);
  PERFORM set_config('cabinet.audit_details', jsonb_build_object(
    'operation', 'unlink_lead',
    'lead_source_pk', p_lead_source_pk,
    'person_removed', v_person_removed,
    'claims_removed', v_claims,
    'unmatched_removed', v_unmatched)::text, true);

  DELETE FROM canon.identity_links k WHERE k.id = v_link.id;

  IF v_person_removed THEN
    DELETE FROM canon.identity_origin o WHERE o.person_key = v_link.person_key;
    WITH gone AS (
      DELETE FROM canon.identity_links k WHERE k.person_key = v_link.person_key RETURNING k.source_pk
    )
    SELECT coalesce(jsonb_agg(g.source_pk ORDER BY g.source_pk), '[]'::jsonb) INTO v_driver_links FROM gone g;
    DELETE FROM canon.identity_registry p WHERE p.person_key = v_link.person_key;
  ELSE
    -- The person stays; if it came from this lead, its origin is now its earliest remaining lead.
    WITH next_origin AS (
      SELECT k.source_pk, k.confidence_level, min(l.lead_created_at) AS lead_created_at
      FROM canon.identity_links k
      LEFT JOIN public.module_ct_cabinet_leads l ON canon.lead_source_pk(l.external_id, l.id) = k.source_pk
      WHERE k.source_table = 'module_ct_cabinet_leads' AND k.person_key = v_link.person_key
      GROUP BY k.source_pk, k.confidence_level
      ORDER BY min(l.lead_created_at) NULLS LAST, k.source_pk
      LIMIT 1
    )
    UPDATE canon.identity_origin o
    SET origin_source_id = n.source_pk, confidence_level = n.confidence_level, origin_created_at = n.lead_created_at,
        decided_by = 'manual', decided_at = now(), run_id = NULL
    FROM next_origin n
    WHERE o.person_key = v_link.person_key AND o.origin_source_id = p_lead_source_pk
    RETURNING n.source_pk INTO v_origin_moved_to;
  END IF;

  DELETE FROM canon.identity_unmatched u
  WHERE u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = p_lead_source_pk;

  PERFORM set_config('cabinet.audit_note', '', true);
  PERFORM set_config('cabinet.audit_details', '', true);

  v_result := jsonb_build_object(
    'action', 'UNLINK',
    'lead_source_pk', p_lead_source_pk,
    'lead_rows', v_lead_rows,
    'person_key', v_link.person_key,
    'driver_id', v_driver_id,
    'match_rule', v_link.match_rule,
    'linked_by_run', v_link.run_id,
    'person_removed', v_person_removed,
    'driver_links_removed', v_driver_links,
    'other_leads_of_person', coalesce(to_jsonb(v_other_leads), '[]'::jsonb),
    'origin_moved_to', v_origin_moved_to,
    'claims_removed', (SELECT coalesce(jsonb_agg(jsonb_build_object('milestone', c->'milestone', 'status', c->'status',
                                                                    'amount_expected', c->'amount_expected')), '[]'::jsonb)
                       FROM jsonb_array_elements(v_claims) c),
    'unmatched_removed', v_unmatched IS NOT NULL,
    'db_user', current_user,
    'note', p_note);
  -- The views show the change at once (the lead and whatever else the change marked).
  PERFORM ops.refresh_cabinet_lead_state(ARRAY[p_lead_source_pk]);
  RETURN v_result;
END
$$;
COMMENT ON FUNCTION ops.unlink_lead(text, text) IS
  'Operator: remove a wrong lead link (and the person with its driver links and origin when no other lead uses it; the lead''s unsettled claims and unmatched row) so the next run re-evaluates the lead; refuses a lead with paid or rejected claims, also one settled while it waits for the claim locks (CL025); audited (UNLINK). Returns what was done.';
