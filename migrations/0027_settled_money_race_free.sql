-- Up Migration
-- snapshot of migrations/parts/0027_settled_claims_kept.sql
-- Money paths are race-free (issue 14, item 5): the record of a settled claim outlives
-- the claim. A paid or rejected claim that is deleted, or moved back to an unsettled
-- status, keeps its row in canon.claims_settled, stamped with when, by whom, in which
-- transaction, to what and why (the note), so that settled money can never vanish
-- silently, whichever path removed it: ops.check_invariants() reports it
-- (SETTLED_CLAIM_REMOVED) until finance writes down why.
ALTER TABLE canon.claims_settled
  ADD COLUMN unsettled_at   timestamptz,
  ADD COLUMN unsettled_by   text,
  ADD COLUMN unsettled_txid bigint,
  ADD COLUMN unsettled_to   text,
  ADD COLUMN unsettled_note text,
  ADD CONSTRAINT claims_settled_unsettled_check CHECK (
    (unsettled_at IS NULL AND unsettled_by IS NULL AND unsettled_txid IS NULL AND unsettled_to IS NULL AND unsettled_note IS NULL)
    OR (unsettled_at IS NOT NULL AND unsettled_to IN ('deleted', 'expected', 'generated', 'expired')));
COMMENT ON TABLE canon.claims_settled IS
  'Last known content of every paid or rejected claim, kept by the triggers of canon.claims_yango_cabinet_14d on every allowed change; a settled claim deleted or moved back to an unsettled status keeps its row, stamped unsettled_*. ops.check_invariants() reports claims that differ from it (SETTLED_CLAIM_CHANGED) and removals nobody explained (SETTLED_CLAIM_REMOVED).';
COMMENT ON COLUMN canon.claims_settled.unsettled_at IS 'When the settled claim was deleted or moved back to an unsettled status (NULL while it is settled).';
COMMENT ON COLUMN canon.claims_settled.unsettled_by IS 'Database user of the transaction that unsettled it.';
COMMENT ON COLUMN canon.claims_settled.unsettled_txid IS 'That transaction (txid_current(), as canon.identity_audit.txid: join to see which operation it was).';
COMMENT ON COLUMN canon.claims_settled.unsettled_to IS '''deleted'' (also when its key changed), or the unsettled status it was moved to.';
COMMENT ON COLUMN canon.claims_settled.unsettled_note IS 'Why: the transaction''s cabinet.settled_change_note, or written by finance afterwards; NULL is reported by doctor (SETTLED_CLAIM_REMOVED).';

-- snapshot of sql/canon/canon.protect_settled_claims.sql
-- canon.protect_settled_claims: trigger function of canon.claims_yango_cabinet_14d that
-- keeps settled money (paid or rejected claims) safe from the job. Two roles:
--   the guard (trigger claims_protect_settled, BEFORE UPDATE OR DELETE, per row): inside
--   a pipeline run (the run sets cabinet.in_pipeline = 'on' for its transaction) or an
--   operator tool (ops.unlink_lead & co. set cabinet.protect_settled to their name while
--   they change claims) a paid or rejected claim can never change or disappear (SQLSTATE
--   CL012), whatever the statement read before; outside them (finance corrections in
--   psql) every change is allowed;
--   the record (triggers claims_record_settled_*, AFTER each statement): every allowed
--   change is copied into canon.claims_settled, the last known content of each settled
--   claim, which ops.check_invariants() compares with the table to find settled claims
--   changed behind the guard's back (trigger disabled, session_replication_role). A
--   settled claim deleted or moved back to an unsettled status keeps its record, stamped
--   unsettled_* with the transaction's cabinet.settled_change_note as the reason: no
--   path makes settled money vanish without a trace (doctor: SETTLED_CLAIM_REMOVED while
--   no note says why). Only a TRUNCATE of the claims (the demo's --reset) empties it.
CREATE OR REPLACE FUNCTION canon.protect_settled_claims()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF TG_LEVEL = 'ROW' THEN
    IF OLD.status IN ('paid', 'rejected') AND coalesce(current_setting('cabinet.in_pipeline', true), '') = 'on'
       AND (TG_OP = 'DELETE' OR to_jsonb(NEW) IS DISTINCT FROM to_jsonb(OLD)) THEN
      RAISE EXCEPTION 'claim (%, M%) is % and cannot be changed by a pipeline run', OLD.lead_source_pk, OLD.milestone, OLD.status
        USING ERRCODE = 'CL012',
              HINT = 'Settled claims are changed by finance outside a run; the job only inserts missing claims.';
    END IF;
    -- The row as locked now, not as the tool read it: a claim settled meanwhile is refused.
    IF OLD.status IN ('paid', 'rejected') AND coalesce(current_setting('cabinet.protect_settled', true), '') <> ''
       AND (TG_OP = 'DELETE' OR to_jsonb(NEW) IS DISTINCT FROM to_jsonb(OLD)) THEN
      RAISE EXCEPTION 'claim (%, M%) is % and cannot be changed by %', OLD.lead_source_pk, OLD.milestone, OLD.status,
        current_setting('cabinet.protect_settled', true)
        USING ERRCODE = 'CL012',
              HINT = 'The operator tools never change settled claims: finance changes them first, outside the tools.';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
  END IF;

  -- Statement level, after the change: bring the record of settled claims in step.
  IF TG_OP = 'TRUNCATE' THEN
    DELETE FROM canon.claims_settled;
    RETURN NULL;
  END IF;
  -- A settled claim gone, or no longer settled: its record stays, stamped.
  IF TG_OP = 'DELETE' THEN
    UPDATE canon.claims_settled s
    SET unsettled_at = now(), unsettled_by = current_user, unsettled_txid = txid_current(), unsettled_to = 'deleted',
        unsettled_note = nullif(btrim(current_setting('cabinet.settled_change_note', true)), '')
    FROM old_claims o
    WHERE o.status IN ('paid', 'rejected')
      AND s.lead_source_pk = o.lead_source_pk AND s.milestone = o.milestone AND s.unsettled_at IS NULL;
  ELSIF TG_OP = 'UPDATE' THEN
    UPDATE canon.claims_settled s
    SET unsettled_at = now(), unsettled_by = current_user, unsettled_txid = txid_current(),
        unsettled_to = coalesce((SELECT n.status FROM new_claims n
                                 WHERE n.lead_source_pk = o.lead_source_pk AND n.milestone = o.milestone), 'deleted'),
        unsettled_note = nullif(btrim(current_setting('cabinet.settled_change_note', true)), '')
    FROM old_claims o
    WHERE o.status IN ('paid', 'rejected')
      AND s.lead_source_pk = o.lead_source_pk AND s.milestone = o.milestone AND s.unsettled_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM new_claims n
                      WHERE n.lead_source_pk = o.lead_source_pk AND n.milestone = o.milestone AND n.status IN ('paid', 'rejected'));
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    INSERT INTO canon.claims_settled AS s (
      lead_source_pk, milestone, status, amount_expected, currency, person_key, driver_id, lead_date,
      generated_at, paid_at, run_id)
    SELECT n.lead_source_pk, n.milestone, n.status, n.amount_expected, n.currency, n.person_key, n.driver_id,
           n.lead_date, n.generated_at, n.paid_at, n.run_id
    FROM new_claims n
    WHERE n.status IN ('paid', 'rejected')
    ON CONFLICT (lead_source_pk, milestone) DO UPDATE
      SET status = excluded.status, amount_expected = excluded.amount_expected, currency = excluded.currency,
          person_key = excluded.person_key, driver_id = excluded.driver_id, lead_date = excluded.lead_date,
          generated_at = excluded.generated_at, paid_at = excluded.paid_at, run_id = excluded.run_id,
          recorded_at = now(), recorded_by = current_user,
          unsettled_at = NULL, unsettled_by = NULL, unsettled_txid = NULL, unsettled_to = NULL, unsettled_note = NULL;
  END IF;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION canon.protect_settled_claims() IS
  'Trigger: a pipeline run or an operator tool (cabinet.protect_settled) can never change or delete a paid or rejected claim (SQLSTATE CL012); every allowed change of a settled claim is recorded in canon.claims_settled, and one deleted or unsettled keeps its record, stamped unsettled_* with cabinet.settled_change_note.';

-- snapshot of sql/canon/canon.lock_lead_claims.sql
-- canon.lock_lead_claims: the claims of one lead, locked FOR UPDATE in milestone order and
-- read as committed, for the operator tools (ops.unlink_lead, ops.resolve_lead,
-- ops.ignore_lead) to decide on before they change anything. A claim that another
-- transaction is settling (finance's UPDATE ... SET status = 'paid') is waited for and
-- then read as finance left it; a claim locked here cannot be settled until the tool's
-- transaction ends, so finance's UPDATE waits and then sees what the tool did. One lock
-- order for every tool (the primary key's), so that two of them never deadlock.
CREATE OR REPLACE FUNCTION canon.lock_lead_claims(p_lead_source_pk text)
RETURNS SETOF canon.claims_yango_cabinet_14d
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '30s'
AS $$
BEGIN
  RETURN QUERY
    SELECT c.*
    FROM canon.claims_yango_cabinet_14d c
    WHERE c.lead_source_pk = p_lead_source_pk
    ORDER BY c.milestone
    FOR UPDATE;
EXCEPTION WHEN lock_not_available THEN
  RAISE EXCEPTION 'the claims of lead % are being changed by another transaction (finance?) that has held them for more than 30 s: try again when it has committed', quote_literal(p_lead_source_pk)
    USING ERRCODE = '55P03';
END
$$;
COMMENT ON FUNCTION canon.lock_lead_claims(text) IS
  'The claims of one lead locked FOR UPDATE in milestone order and read as committed (a settlement in flight is waited for, up to 30 s: 55P03), for the operator tools to decide on.';

-- snapshot of sql/ops/ops.unlink_lead.sql
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
  IF p_lead_source_pk IS NULL OR btrim(p_lead_source_pk) = '' THEN
    RAISE EXCEPTION 'invalid lead_source_pk %: expected a lead key', coalesce(quote_literal(p_lead_source_pk), 'NULL')
      USING ERRCODE = '22023';
  END IF;
  IF p_note IS NULL OR btrim(p_note) = '' THEN
    RAISE EXCEPTION 'a note is required: say why the link of lead % is wrong', quote_literal(p_lead_source_pk)
      USING ERRCODE = '22023';
  END IF;

  BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('cabinet_leads'), hashtext('reconcile_cabinet_leads_pipeline'));
  EXCEPTION WHEN lock_not_available THEN
    RAISE EXCEPTION 'a pipeline run (or another identity change) holds the job lock for more than 30 s: try again when it has finished'
      USING ERRCODE = '55P03';
  END;

  SELECT count(*) INTO v_lead_rows
  FROM public.module_ct_cabinet_leads l
  WHERE canon.lead_source_pk(l.external_id, l.id) = p_lead_source_pk;

  -- A link is removable even when its lead row has since disappeared upstream.
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

-- snapshot of sql/ops/ops.resolve_lead.sql
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
  IF p_lead_source_pk IS NULL OR btrim(p_lead_source_pk) = '' THEN
    RAISE EXCEPTION 'invalid lead_source_pk %: expected a lead key', coalesce(quote_literal(p_lead_source_pk), 'NULL')
      USING ERRCODE = '22023';
  END IF;
  IF p_driver_id IS NULL OR btrim(p_driver_id) = '' THEN
    RAISE EXCEPTION 'invalid driver_id %: expected a driver_id of public.drivers', coalesce(quote_literal(p_driver_id), 'NULL')
      USING ERRCODE = '22023';
  END IF;
  IF p_note IS NULL OR btrim(p_note) = '' THEN
    RAISE EXCEPTION 'a note is required: say why lead % belongs to driver %', quote_literal(p_lead_source_pk), quote_literal(p_driver_id)
      USING ERRCODE = '22023';
  END IF;
  IF p_force IS NULL THEN
    RAISE EXCEPTION 'invalid force NULL: expected true or false' USING ERRCODE = '22023';
  END IF;

  -- One identity change at a time, never in the middle of a pipeline run.
  BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('cabinet_leads'), hashtext('reconcile_cabinet_leads_pipeline'));
  EXCEPTION WHEN lock_not_available THEN
    RAISE EXCEPTION 'a pipeline run (or another identity change) holds the job lock for more than 30 s: try again when it has finished'
      USING ERRCODE = '55P03';
  END;

  SELECT min(l.id) AS lead_id, count(*) AS lead_rows,
         (array_agg(l.lead_created_at ORDER BY l.id))[1] AS lead_created_at,
         (array_agg(concat_ws(' ', l.first_name, l.middle_name, l.last_name) ORDER BY l.id))[1] AS lead_name,
         (array_agg(l.park_phone ORDER BY l.id))[1] AS park_phone,
         (array_agg(l.asset_plate_number ORDER BY l.id))[1] AS plate
  INTO v_lead
  FROM public.module_ct_cabinet_leads l
  WHERE canon.lead_source_pk(l.external_id, l.id) = p_lead_source_pk;
  IF v_lead.lead_id IS NULL THEN
    RAISE EXCEPTION 'unknown lead %: no row of public.module_ct_cabinet_leads has this lead_source_pk', quote_literal(p_lead_source_pk)
      USING ERRCODE = 'P0002';
  END IF;

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
    SELECT EXISTS (SELECT 1 FROM canon.driver_index i WHERE i.driver_id = p_driver_id)
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

-- snapshot of sql/ops/ops.ignore_lead.sql
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
  IF p_lead_source_pk IS NULL OR btrim(p_lead_source_pk) = '' THEN
    RAISE EXCEPTION 'invalid lead_source_pk %: expected a lead key', coalesce(quote_literal(p_lead_source_pk), 'NULL')
      USING ERRCODE = '22023';
  END IF;
  IF p_note IS NULL OR btrim(p_note) = '' THEN
    RAISE EXCEPTION 'a note is required: say why lead % is ignored', quote_literal(p_lead_source_pk)
      USING ERRCODE = '22023';
  END IF;

  BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('cabinet_leads'), hashtext('reconcile_cabinet_leads_pipeline'));
  EXCEPTION WHEN lock_not_available THEN
    RAISE EXCEPTION 'a pipeline run (or another identity change) holds the job lock for more than 30 s: try again when it has finished'
      USING ERRCODE = '55P03';
  END;

  SELECT count(*) INTO v_lead_rows
  FROM public.module_ct_cabinet_leads l
  WHERE canon.lead_source_pk(l.external_id, l.id) = p_lead_source_pk;
  IF v_lead_rows = 0 THEN
    RAISE EXCEPTION 'unknown lead %: no row of public.module_ct_cabinet_leads has this lead_source_pk', quote_literal(p_lead_source_pk)
      USING ERRCODE = 'P0002';
  END IF;

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

-- snapshot of sql/ops/ops.check_invariants.sql
-- ops.check_invariants: every invariant of the spec with its number of violations (0 =
-- holds) and up to 5 examples. Also `cabinet-leads doctor`, which exits 1 when any
-- invariant is violated, and the last statement of every reliability test. Read-only;
-- safe to run at any time, also while a run is in progress.
--   SELECT * FROM ops.check_invariants() WHERE violations > 0;
CREATE OR REPLACE FUNCTION ops.check_invariants()
RETURNS TABLE (invariant text, violations bigint, examples jsonb, description text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH orphan AS (
    SELECT p.person_key::text AS example
    FROM canon.identity_registry p
    WHERE NOT EXISTS (SELECT 1 FROM canon.identity_links l WHERE l.person_key = p.person_key)
  ),
  linked_open AS (
    SELECT l.source_pk AS example
    FROM canon.identity_links l
    JOIN canon.identity_unmatched u
      ON u.source_table = l.source_table AND u.source_pk = l.source_pk AND u.status = 'OPEN'
  ),
  driver_twice AS (
    SELECT format('%s (%s links)', l.source_pk, count(*)) AS example
    FROM canon.identity_links l
    WHERE l.source_table = 'drivers'
    GROUP BY l.source_pk
    HAVING count(*) > 1
  ),
  -- The same test as canon.mark_abandoned_runs (backend gone, or no longer in that run's
  -- CALL), plus runs RUNNING for over 2 hours.
  stuck AS (
    SELECT format('run %s (backend %s, started %s)', r.id, r.backend_pid, r.started_at) AS example
    FROM canon.ingestion_runs r
    WHERE r.status = 'RUNNING'
      AND (r.started_at < now() - interval '2 hours'
           OR NOT EXISTS (
             SELECT 1
             FROM pg_stat_activity a
             WHERE a.pid = r.backend_pid
               AND (r.backend_start IS NULL OR a.backend_start IS NULL OR a.backend_start = r.backend_start)
               AND (a.state IS NULL OR (a.state = 'active' AND a.query_start <= r.started_at))))
  ),
  limbo_mismatch AS (
    SELECT format('lead id %s: %s limbo rows%s', coalesce(l.id, v.lead_id), coalesce(v.n, 0),
                  CASE WHEN l.id IS NULL THEN ' (not a lead with lead_created_at)' ELSE '' END) AS example
    FROM (SELECT s.id FROM public.module_ct_cabinet_leads s WHERE s.lead_created_at IS NOT NULL) l
    FULL JOIN (SELECT lv.lead_id, count(*) AS n FROM ops.v_cabinet_leads_limbo lv GROUP BY lv.lead_id) v
      ON v.lead_id = l.id
    WHERE l.id IS NULL OR v.lead_id IS NULL OR v.n <> 1
  ),
  settled_guard AS (
    SELECT format('trigger %s %s', w.tgname, CASE WHEN t.tgname IS NULL THEN 'missing' ELSE 'disabled' END) AS example
    FROM (VALUES ('claims_protect_settled'), ('claims_record_settled_insert'), ('claims_record_settled_update'),
                 ('claims_record_settled_delete'), ('claims_record_settled_truncate')) w (tgname)
    LEFT JOIN pg_trigger t
      ON t.tgrelid = 'canon.claims_yango_cabinet_14d'::regclass AND t.tgname = w.tgname
    WHERE t.tgname IS NULL OR t.tgenabled NOT IN ('O', 'A')
  ),
  -- A settled claim that differs from its record, or is gone, or was settled unrecorded:
  -- it was changed while the guard was off (the guard and the record cannot be bypassed
  -- otherwise).
  settled_changed AS (
    SELECT format('%s M%s %s', coalesce(c.lead_source_pk, s.lead_source_pk), coalesce(c.milestone, s.milestone),
                  CASE WHEN c.lead_source_pk IS NULL THEN format('deleted (was %s)', s.status)
                       WHEN s.lead_source_pk IS NULL THEN format('%s but never recorded', c.status)
                       ELSE format('changed (recorded %s %s, now %s %s)', s.status, s.amount_expected, c.status, c.amount_expected)
                  END) AS example
    FROM (SELECT * FROM canon.claims_yango_cabinet_14d x WHERE x.status IN ('paid', 'rejected')) c
    FULL JOIN (SELECT * FROM canon.claims_settled r WHERE r.unsettled_at IS NULL) s
      ON s.lead_source_pk = c.lead_source_pk AND s.milestone = c.milestone
    WHERE c.lead_source_pk IS NULL
       OR s.lead_source_pk IS NULL
       OR (c.status, c.amount_expected, c.currency, c.person_key, c.driver_id, c.lead_date, c.generated_at, c.paid_at, c.run_id)
          IS DISTINCT FROM
          (s.status, s.amount_expected, s.currency, s.person_key, s.driver_id, s.lead_date, s.generated_at, s.paid_at, s.run_id)
  ),
  -- The counters of the stored lead state (kept by a trigger, read by the scope figures
  -- and the snapshots) against a count of the rows themselves.
  state_counts AS (
    SELECT format('%s %s identity=%s driver=%s trips=%s rule=%s: counted %s, stored %s',
                  lead_date, limbo_stage, with_identity::text, with_driver::text, with_trips::text, with_rule::text,
                  coalesce(c.leads, 0), coalesce(s.leads, 0)) AS example
    FROM canon.cabinet_lead_state_counts c
    FULL JOIN (SELECT x.lead_date, x.limbo_stage, x.person_key IS NOT NULL AS with_identity,
                      x.driver_id IS NOT NULL AS with_driver, x.trips_in_window > 0 AS with_trips,
                      x.window_days IS NOT NULL AS with_rule, count(*) AS leads
               FROM canon.cabinet_lead_state x
               GROUP BY 1, 2, 3, 4, 5, 6) s
      USING (lead_date, limbo_stage, with_identity, with_driver, with_trips, with_rule)
    WHERE coalesce(c.leads, 0) <> coalesce(s.leads, 0)
  ),
  -- A settled claim deleted or moved back to an unsettled status (its record stays,
  -- stamped by the trigger) with no note saying why: money that may have vanished by
  -- mistake, e.g. deleted by a statement that read it before finance settled it.
  settled_removed AS (
    SELECT format('%s M%s %s %s %s: %s at %s by %s (txid %s), no note', s.lead_source_pk, s.milestone, s.status,
                  s.amount_expected, s.currency,
                  CASE WHEN s.unsettled_to = 'deleted' THEN 'deleted' ELSE 'changed to ' || s.unsettled_to END,
                  date_trunc('second', s.unsettled_at), s.unsettled_by, s.unsettled_txid) AS example
    FROM canon.claims_settled s
    WHERE s.unsettled_at IS NOT NULL AND s.unsettled_note IS NULL
  ),
  checks (ord, invariant, description, examples, n) AS (
    SELECT 1, 'ORPHAN_PERSON', 'persons in canon.identity_registry without any identity link',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM orphan ORDER BY example LIMIT 5) x), (SELECT count(*) FROM orphan)
    UNION ALL
    SELECT 2, 'LEAD_LINKED_AND_OPEN', 'leads both linked and OPEN in canon.identity_unmatched',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM linked_open ORDER BY example LIMIT 5) x), (SELECT count(*) FROM linked_open)
    UNION ALL
    SELECT 3, 'DRIVER_LINKED_TWICE', 'drivers with more than one identity link (a driver belongs to at most one person)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM driver_twice ORDER BY example LIMIT 5) x), (SELECT count(*) FROM driver_twice)
    UNION ALL
    SELECT 4, 'RUN_STUCK_RUNNING', 'runs RUNNING whose backend is gone, or for over 2 hours (the next run marks the former FAILED, abandoned)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM stuck ORDER BY example LIMIT 5) x), (SELECT count(*) FROM stuck)
    UNION ALL
    SELECT 5, 'LIMBO_ROW_COUNT', 'ops.v_cabinet_leads_limbo must have exactly one row per lead with lead_created_at',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM limbo_mismatch ORDER BY example LIMIT 5) x), (SELECT count(*) FROM limbo_mismatch)
    UNION ALL
    SELECT 6, 'SETTLED_CLAIM_UNGUARDED', 'the triggers that keep pipeline runs off paid and rejected claims, and record them, must exist and be enabled',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM settled_guard ORDER BY example LIMIT 5) x), (SELECT count(*) FROM settled_guard)
    UNION ALL
    SELECT 7, 'SETTLED_CLAIM_CHANGED', 'paid or rejected claims that differ from canon.claims_settled (changed, deleted or settled while the guard was off)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM settled_changed ORDER BY example LIMIT 5) x), (SELECT count(*) FROM settled_changed)
    UNION ALL
    SELECT 8, 'LEAD_STATE_COUNTS', 'canon.cabinet_lead_state_counts must count the stored lead state rows (by lead date, stage and flags)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM state_counts ORDER BY example LIMIT 5) x), (SELECT count(*) FROM state_counts)
    UNION ALL
    SELECT 20, 'SETTLED_CLAIM_REMOVED', 'paid or rejected claims deleted, or moved back to an unsettled status, with no note saying why (their record in canon.claims_settled stays, stamped unsettled_*)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM settled_removed ORDER BY example LIMIT 5) x), (SELECT count(*) FROM settled_removed)
  )
  SELECT c.invariant, c.n, coalesce(c.examples, '[]'::jsonb), c.description FROM checks c ORDER BY c.ord
$$;
COMMENT ON FUNCTION ops.check_invariants() IS
  'Every spec invariant with its violation count (0 = holds) and up to 5 examples: SELECT * FROM ops.check_invariants() WHERE violations > 0; cabinet-leads doctor exits 1 when any is violated.';
