-- ops.ignore_lead: an operator stops the job from retrying a lead that will never match
-- (test lead, another park's driver, junk), in one transaction, from psql or
-- `cabinet-leads ignore-lead`:
--   SELECT ops.ignore_lead('9f3a...', 'test lead created by the cabinet support');
-- Marks the lead's canon.identity_unmatched row IGNORED with the note (creating the row,
-- reason MANUAL_IGNORE, when the job never evaluated the lead). The job never selects
-- nor overwrites an IGNORED row; to retry it again: UPDATE ... SET status = 'OPEN'.
-- Refuses an unknown lead and a linked lead (unlink it first). Calling it again on an
-- ignored lead records the new note. Claims of the lead (left behind when its link was
-- deleted by hand) have no person any more: the unsettled ones are deleted, and a paid or
-- rejected one refuses the call (CL025: money went out for this lead, it is not junk).
-- The lead's claims are locked first (canon.lock_lead_claims), so a settlement in flight
-- is waited for and decided on as committed, and a later one finds them gone.
-- Audited in canon.identity_audit (IGNORE).
CREATE OR REPLACE FUNCTION ops.ignore_lead(p_lead_source_pk text, p_note text)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '30s'
AS $$
DECLARE
  v_lead_rows integer;
  v_link record;
  v_before record;
  v_settled text;
  v_unsettled integer[];
  v_claims_removed jsonb;
  v_result jsonb;
BEGIN
  PERFORM canon.require_lead_key(p_lead_source_pk);
  PERFORM canon.require_note(p_note, format('say why lead %s is ignored', quote_literal(p_lead_source_pk)));
  SELECT b.lead_rows INTO v_lead_rows FROM canon.begin_lead_change(p_lead_source_pk) b;

  SELECT k.person_key, k.match_rule,
         (SELECT pd.driver_id FROM canon.v_person_driver pd WHERE pd.person_key = k.person_key) AS driver_id
  INTO v_link
  FROM canon.identity_links k
  WHERE k.source_table = 'module_ct_cabinet_leads' AND k.source_pk = p_lead_source_pk;
  IF FOUND THEN
    RAISE EXCEPTION 'lead % is linked to person % (driver %, rule %): a linked lead is not retried; if the link is wrong, unlink it first with ops.unlink_lead(%, note)',
      quote_literal(p_lead_source_pk), v_link.person_key, coalesce(v_link.driver_id, 'none'), v_link.match_rule,
      quote_literal(p_lead_source_pk)
      USING ERRCODE = 'CL021';
  END IF;

  -- LOCK the lead's claims, read as committed, before deciding: a settlement in flight is waited for.
  SELECT string_agg(format('M%s %s', c.milestone, c.status), ', ' ORDER BY c.milestone)
           FILTER (WHERE c.status IN ('paid', 'rejected')),
         array_agg(c.milestone ORDER BY c.milestone) FILTER (WHERE c.status NOT IN ('paid', 'rejected'))
  INTO v_settled, v_unsettled
  FROM canon.lock_lead_claims(p_lead_source_pk) c;
  IF v_settled IS NOT NULL THEN
    RAISE EXCEPTION 'lead % has settled claims (%): money was paid or rejected for it, so it is not junk; settle it with finance (change those claims) before ignoring it',
      quote_literal(p_lead_source_pk), v_settled
      USING ERRCODE = 'CL025';
  END IF;
  -- Exactly the claims locked above (none settled).
  PERFORM set_config('cabinet.protect_settled', 'ops.ignore_lead', true);
  WITH gone AS (
    DELETE FROM canon.claims_yango_cabinet_14d c
    WHERE c.lead_source_pk = p_lead_source_pk AND c.milestone = ANY (v_unsettled)
    RETURNING c.*
  )
  SELECT coalesce(jsonb_agg(jsonb_build_object('milestone', g.milestone, 'status', g.status, 'amount_expected', g.amount_expected,
                                               'person_key', g.person_key, 'driver_id', g.driver_id) ORDER BY g.milestone), '[]'::jsonb)
  INTO v_claims_removed
  FROM gone g;
  PERFORM set_config('cabinet.protect_settled', '', true);

  SELECT u.status, u.reason_code, u.attempts, u.note INTO v_before
  FROM canon.identity_unmatched u
  WHERE u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = p_lead_source_pk
  FOR UPDATE;

  INSERT INTO canon.identity_unmatched AS u (
    source_table, source_pk, reason_code, details, candidates, status, resolved_at, note)
  VALUES ('module_ct_cabinet_leads', p_lead_source_pk, 'MANUAL_IGNORE',
          jsonb_build_object('ignored_before_evaluation', true), '[]'::jsonb, 'IGNORED', now(), p_note)
  ON CONFLICT (source_table, source_pk) DO UPDATE
    SET status = 'IGNORED', resolved_at = now(), note = excluded.note;

  v_result := jsonb_build_object(
    'action', 'IGNORE',
    'lead_source_pk', p_lead_source_pk,
    'lead_rows', v_lead_rows,
    'unmatched_row_created', v_before.status IS NULL,
    'reason_code', coalesce(v_before.reason_code, 'MANUAL_IGNORE'),
    'status_before', v_before.status,
    'note_before', v_before.note,
    'attempts', v_before.attempts,
    'claims_removed', v_claims_removed,
    'db_user', current_user,
    'note', p_note);

  INSERT INTO canon.identity_audit (action, source_table, source_pk, decided_by, actor, note, details)
  VALUES ('IGNORE', 'module_ct_cabinet_leads', p_lead_source_pk, 'manual', current_user, p_note, v_result);
  -- Removed claims change the lead's stored state: the views show it at once.
  IF v_claims_removed <> '[]'::jsonb THEN
    PERFORM ops.refresh_cabinet_lead_state(ARRAY[p_lead_source_pk]);
  END IF;
  RETURN v_result;
END
$$;
COMMENT ON FUNCTION ops.ignore_lead(text, text) IS
  'Operator: mark a lead IGNORED in canon.identity_unmatched (created with reason MANUAL_IGNORE if needed) so the job stops retrying it; refuses unknown and linked leads, and leads with paid or rejected claims (CL025), also one settled while it waits for the claim locks; deletes its unsettled claims; audited. Returns what was done.';
