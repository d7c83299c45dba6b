-- canon.protect_settled_claims: trigger function of canon.claims_yango_cabinet_14d that
-- keeps settled money (paid or rejected claims) safe from the job. Two roles:
--   the guard (trigger claims_protect_settled, BEFORE UPDATE OR DELETE, per row): inside
--   a pipeline run (the run sets cabinet.in_pipeline = 'on' for its transaction) or an
--   operator tool (ops.unlink_lead & co. set cabinet.protect_settled to their name while
--   they change claims) a paid or rejected claim can never change or disappear (SQLSTATE
--   CL012), whatever the statement read before; outside them (finance corrections in
--   psql) every change is allowed;
--   the record (triggers claims_record_settled_*, AFTER each statement): every allowed
--   change is copied into canon_internal.claims_settled, the last known content of each settled
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
    DELETE FROM canon_internal.claims_settled;
    RETURN NULL;
  END IF;
  -- A settled claim gone, or no longer settled: its record stays, stamped.
  IF TG_OP = 'DELETE' THEN
    UPDATE canon_internal.claims_settled s
    SET unsettled_at = now(), unsettled_by = current_user, unsettled_txid = txid_current(), unsettled_to = 'deleted',
        unsettled_note = nullif(btrim(current_setting('cabinet.settled_change_note', true)), '')
    FROM old_claims o
    WHERE o.status IN ('paid', 'rejected')
      AND s.lead_source_pk = o.lead_source_pk AND s.milestone = o.milestone AND s.unsettled_at IS NULL;
  ELSIF TG_OP = 'UPDATE' THEN
    UPDATE canon_internal.claims_settled s
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
    INSERT INTO canon_internal.claims_settled AS s (
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
  'Trigger: a pipeline run or an operator tool (cabinet.protect_settled) can never change or delete a paid or rejected claim (SQLSTATE CL012); every allowed change of a settled claim is recorded in canon_internal.claims_settled, and one deleted or unsettled keeps its record, stamped unsettled_* with cabinet.settled_change_note.';
