-- Up Migration
-- snapshot of sql/canon/canon.refuse_audit_change.sql
-- canon.refuse_audit_change: trigger function that keeps canon.identity_audit
-- append-only. Fired before any UPDATE, DELETE or TRUNCATE of the audit table.
CREATE OR REPLACE FUNCTION canon.refuse_audit_change()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  RAISE EXCEPTION 'canon.identity_audit is append-only: % refused', TG_OP
    USING ERRCODE = 'CL020',
          HINT = 'Audit rows are never changed or removed; record a correction as a new operation (ops.resolve_lead, ops.unlink_lead, ops.ignore_lead).';
END
$$;
COMMENT ON FUNCTION canon.refuse_audit_change() IS 'Trigger: canon.identity_audit is append-only; UPDATE, DELETE and TRUNCATE raise CL020.';

-- snapshot of sql/canon/canon.audit_identity_links.sql
-- canon.audit_identity_links: statement-level trigger function on canon.identity_links
-- (one trigger per event, each with its transition table). Appends one
-- canon.identity_audit row per link inserted (LINK), deleted (UNLINK) or moved to
-- another person (RELINK), in one INSERT ... SELECT per statement, whoever writes:
-- the pipeline (actor 'run <id>', from the link's run_id), the ops.* tools or a
-- statement typed in psql (actor = current_user). The ops.* tools pass their note and
-- extra details through the transaction-local settings cabinet.audit_note and
-- cabinet.audit_details (jsonb).
CREATE OR REPLACE FUNCTION canon.audit_identity_links()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_note text := nullif(current_setting('cabinet.audit_note', true), '');
  v_details jsonb := coalesce(nullif(current_setting('cabinet.audit_details', true), '')::jsonb, '{}'::jsonb);
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO canon.identity_audit (
      action, source_table, source_pk, person_key, driver_id, match_rule, match_score,
      decided_by, actor, run_id, note, details)
    SELECT 'LINK', n.source_table, n.source_pk, n.person_key,
           CASE WHEN n.source_table = 'drivers' THEN n.source_pk END,
           n.match_rule, n.match_score,
           CASE WHEN n.run_id IS NULL THEN 'manual' ELSE 'system' END,
           CASE WHEN n.run_id IS NULL THEN current_user::text ELSE 'run ' || n.run_id END,
           n.run_id, v_note,
           v_details || jsonb_build_object('link_id', n.id, 'confidence_level', n.confidence_level)
    FROM new_links n;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO canon.identity_audit (
      action, source_table, source_pk, person_key, driver_id, match_rule, match_score,
      decided_by, actor, run_id, note, details)
    SELECT 'UNLINK', o.source_table, o.source_pk, o.person_key,
           CASE WHEN o.source_table = 'drivers' THEN o.source_pk END,
           o.match_rule, o.match_score,
           'manual', current_user::text, NULL, v_note,
           v_details || jsonb_build_object('removed_link', to_jsonb(o))
    FROM old_links o;
  ELSIF TG_OP = 'UPDATE' THEN
    INSERT INTO canon.identity_audit (
      action, source_table, source_pk, person_key, driver_id, match_rule, match_score,
      decided_by, actor, run_id, note, details)
    SELECT 'RELINK', n.source_table, n.source_pk, n.person_key,
           CASE WHEN n.source_table = 'drivers' THEN n.source_pk END,
           n.match_rule, n.match_score,
           CASE WHEN n.run_id IS NOT NULL AND n.run_id IS DISTINCT FROM o.run_id THEN 'system' ELSE 'manual' END,
           CASE WHEN n.run_id IS NOT NULL AND n.run_id IS DISTINCT FROM o.run_id THEN 'run ' || n.run_id ELSE current_user::text END,
           CASE WHEN n.run_id IS DISTINCT FROM o.run_id THEN n.run_id END,
           v_note,
           v_details || jsonb_build_object('link_id', n.id, 'previous_link', to_jsonb(o))
    FROM old_links o
    JOIN new_links n ON n.id = o.id
    WHERE n.person_key IS DISTINCT FROM o.person_key
       OR n.source_pk IS DISTINCT FROM o.source_pk
       OR n.source_table IS DISTINCT FROM o.source_table;
  END IF;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION canon.audit_identity_links() IS
  'Statement trigger on canon.identity_links: one canon.identity_audit row per link inserted (LINK), deleted (UNLINK) or moved to another person (RELINK); actor = ''run <id>'' or current_user.';

-- snapshot of migrations/parts/0008_tables.sql
-- Operator tools (issue 6): the identity audit trail, the triggers that feed it from
-- canon.identity_links whoever writes there (the job, ops.resolve_lead / unlink_lead, a
-- hand-written statement in psql), and the MANUAL_IGNORE reason of ops.ignore_lead.

CREATE TABLE canon.identity_audit (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at            timestamptz NOT NULL DEFAULT now(),
  action        text NOT NULL CHECK (action IN ('LINK', 'UNLINK', 'RELINK', 'RESOLVE', 'IGNORE')),
  source_table  text NOT NULL,
  source_pk     text NOT NULL,
  person_key    uuid,
  driver_id     text,
  match_rule    text,
  match_score   numeric(5, 2),
  decided_by    text NOT NULL CHECK (decided_by IN ('system', 'manual')),
  actor         text NOT NULL,
  run_id        bigint,
  db_user       text NOT NULL DEFAULT current_user,
  client        text DEFAULT nullif(current_setting('application_name', true), ''),
  txid          bigint NOT NULL DEFAULT txid_current(),
  note          text,
  details       jsonb NOT NULL DEFAULT '{}'::jsonb
);
-- No foreign keys on purpose: the audit outlives the persons, links and runs it names.
CREATE INDEX identity_audit_source_idx ON canon.identity_audit (source_pk, id);
CREATE INDEX identity_audit_person_idx ON canon.identity_audit (person_key) WHERE person_key IS NOT NULL;
COMMENT ON TABLE canon.identity_audit IS
  'Append-only history of identity decisions: every LINK / UNLINK / RELINK of canon.identity_links (by trigger) and every manual RESOLVE / IGNORE, with actor (run or database user), time and note.';
COMMENT ON COLUMN canon.identity_audit.actor IS '''run <id>'' when the pipeline run <id> wrote the link, else the database user (current_user).';
COMMENT ON COLUMN canon.identity_audit.client IS 'application_name of the session; the CLI sets it to cabinet-leads <command> (<os user>@<host>).';
COMMENT ON COLUMN canon.identity_audit.txid IS 'Transaction id: the rows of one operation (e.g. a resolve and its links) share it.';

-- Append-only: UPDATE, DELETE and TRUNCATE are refused whoever asks.
CREATE TRIGGER identity_audit_append_only
  BEFORE UPDATE OR DELETE ON canon.identity_audit
  FOR EACH ROW EXECUTE FUNCTION canon.refuse_audit_change();
CREATE TRIGGER identity_audit_no_truncate
  BEFORE TRUNCATE ON canon.identity_audit
  FOR EACH STATEMENT EXECUTE FUNCTION canon.refuse_audit_change();
REVOKE UPDATE, DELETE, TRUNCATE ON canon.identity_audit FROM PUBLIC;

-- Every link written, removed or moved is audited, set-based: one statement-level
-- trigger per event with its transition table (one INSERT ... SELECT per statement).
CREATE TRIGGER identity_links_audit_insert
  AFTER INSERT ON canon.identity_links
  REFERENCING NEW TABLE AS new_links
  FOR EACH STATEMENT EXECUTE FUNCTION canon.audit_identity_links();
CREATE TRIGGER identity_links_audit_delete
  AFTER DELETE ON canon.identity_links
  REFERENCING OLD TABLE AS old_links
  FOR EACH STATEMENT EXECUTE FUNCTION canon.audit_identity_links();
CREATE TRIGGER identity_links_audit_update
  AFTER UPDATE ON canon.identity_links
  REFERENCING OLD TABLE AS old_links NEW TABLE AS new_links
  FOR EACH STATEMENT EXECUTE FUNCTION canon.audit_identity_links();

-- A lead ignored by hand before the job ever evaluated it has no matcher reason yet.
ALTER TABLE canon.identity_unmatched DROP CONSTRAINT IF EXISTS identity_unmatched_reason_code_check;
ALTER TABLE canon.identity_unmatched ADD CONSTRAINT identity_unmatched_reason_code_check
  CHECK (reason_code IN ('AMBIGUOUS', 'CONFLICT', 'WEAK_MATCH_ONLY', 'SHARED_KEY', 'NO_CANDIDATES', 'MISSING_KEYS', 'MANUAL_IGNORE'));

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

  -- The audit trigger on canon.identity_links reads the note and details from here.
  PERFORM set_config('cabinet.audit_note', p_note, true);
  PERFORM set_config('cabinet.audit_details', jsonb_build_object('operation', 'resolve_lead', 'lead_source_pk', p_lead_source_pk)::text, true);

  IF v_person IS NULL THEN
    v_person := gen_random_uuid();
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
  RETURN v_result;
END
$$;
COMMENT ON FUNCTION ops.resolve_lead(text, text, text, boolean) IS
  'Operator: link a lead to a driver by hand (MANUAL_RESOLUTION, 100, HIGH) with person, driver link, origin (manual) and unmatched RESOLVED, audited. p_force: add the lead to a person that already carries another lead. Returns what was done.';

-- snapshot of sql/ops/ops.ignore_lead.sql
-- ops.ignore_lead: an operator stops the job from retrying a lead that will never match
-- (test lead, another park's driver, junk), in one transaction, from psql or
-- `cabinet-leads ignore-lead`:
--   SELECT ops.ignore_lead('9f3a...', 'test lead created by the cabinet support');
-- Marks the lead's canon.identity_unmatched row IGNORED with the note (creating the row,
-- reason MANUAL_IGNORE, when the job never evaluated the lead). The job never selects
-- nor overwrites an IGNORED row; to retry it again: UPDATE ... SET status = 'OPEN'.
-- Refuses an unknown lead and a linked lead (unlink it first). Calling it again on an
-- ignored lead records the new note. Audited in canon.identity_audit (IGNORE).
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
    'db_user', current_user,
    'note', p_note);

  INSERT INTO canon.identity_audit (action, source_table, source_pk, decided_by, actor, note, details)
  VALUES ('IGNORE', 'module_ct_cabinet_leads', p_lead_source_pk, 'manual', current_user, p_note, v_result);
  RETURN v_result;
END
$$;
COMMENT ON FUNCTION ops.ignore_lead(text, text) IS
  'Operator: mark a lead IGNORED in canon.identity_unmatched (created with reason MANUAL_IGNORE if needed) so the job stops retrying it; refuses unknown and linked leads; audited. Returns what was done.';

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

  SELECT string_agg(format('M%s %s', c.milestone, c.status), ', ' ORDER BY c.milestone) INTO v_settled
  FROM canon.claims_yango_cabinet_14d c
  WHERE c.lead_source_pk = p_lead_source_pk AND c.status IN ('paid', 'rejected');
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

  SELECT coalesce(jsonb_agg(to_jsonb(c) ORDER BY c.milestone), '[]'::jsonb) INTO v_claims
  FROM canon.claims_yango_cabinet_14d c
  WHERE c.lead_source_pk = p_lead_source_pk;
  SELECT to_jsonb(u) INTO v_unmatched
  FROM canon.identity_unmatched u
  WHERE u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = p_lead_source_pk;

  -- The audit trigger on canon.identity_links reads the note and details from here.
  PERFORM set_config('cabinet.audit_note', p_note, true);
  PERFORM set_config('cabinet.audit_details', jsonb_build_object(
    'operation', 'unlink_lead',
    'lead_source_pk', p_lead_source_pk,
    'person_removed', v_person_removed,
    'claims_removed', v_claims,
    'unmatched_removed', v_unmatched)::text, true);

  DELETE FROM canon.claims_yango_cabinet_14d c WHERE c.lead_source_pk = p_lead_source_pk;
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
  RETURN v_result;
END
$$;
COMMENT ON FUNCTION ops.unlink_lead(text, text) IS
  'Operator: remove a wrong lead link (and the person with its driver links and origin when no other lead uses it; the lead''s unsettled claims and unmatched row) so the next run re-evaluates the lead; audited (UNLINK). Returns what was done.';
