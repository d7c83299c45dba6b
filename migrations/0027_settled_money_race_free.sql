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
--   a pipeline run (the run sets cabinet.in_pipeline = 'on' for its transaction) a paid
--   or rejected claim can never change or disappear (SQLSTATE CL012); outside a run
--   (finance corrections in psql) every change is allowed;
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
  'Trigger: a pipeline run can never change or delete a paid or rejected claim (SQLSTATE CL012); every allowed change of a settled claim is recorded in canon.claims_settled, and one deleted or unsettled keeps its record, stamped unsettled_* with cabinet.settled_change_note.';

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
