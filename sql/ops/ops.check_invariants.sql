-- ops.check_invariants: every invariant of the spec with its number of violations (0 =
-- holds) and up to 5 examples. Also `cabinet-leads doctor`, which exits 1 when any
-- invariant is violated, and the last statement of every reliability test. Read-only;
-- safe to run at any time, also while a run is in progress.
--   SELECT * FROM ops.check_invariants() WHERE violations > 0;
-- The caches (ord 10-19) are checked by ops.check_caches.
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
    FROM (SELECT s.id FROM public.module_ct_cabinet_leads s WHERE isfinite(s.lead_created_at)) l
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
    FULL JOIN (SELECT * FROM canon_internal.claims_settled r WHERE r.unsettled_at IS NULL) s
      ON s.lead_source_pk = c.lead_source_pk AND s.milestone = c.milestone
    WHERE c.lead_source_pk IS NULL
       OR s.lead_source_pk IS NULL
       OR (c.status, c.amount_expected, c.currency, c.person_key, c.driver_id, c.lead_date, c.generated_at, c.paid_at, c.run_id)
          IS DISTINCT FROM
          (s.status, s.amount_expected, s.currency, s.person_key, s.driver_id, s.lead_date, s.generated_at, s.paid_at, s.run_id)
  ),
  -- The counters of the stored lead state (kept by a trigger, read by the scope figures,
  -- the snapshots and the funnel) against a count of the rows themselves
  -- (canon.v_cabinet_lead_state_counted), every key and sum compared; one example per
  -- lead date, stage and the first flags.
  state_counts AS (
    SELECT format('%s %s identity=%s driver=%s trips=%s rule=%s: counted %s, stored %s%s',
                  x.lead_date, x.limbo_stage, x.with_identity::text, x.with_driver::text, x.with_trips::text,
                  x.with_rule::text, sum(x.counted), sum(x.stored),
                  CASE WHEN sum(x.counted) = sum(x.stored) THEN ' (milestones, claims, window, trips, amounts or paid claims differ)' ELSE '' END) AS example
    FROM (
      SELECT lead_date, limbo_stage, with_identity, with_driver, with_trips, with_rule,
             coalesce(c.leads, 0) AS counted, coalesce(s.leads, 0) AS stored
      FROM canon_internal.cabinet_lead_state_counts c
      FULL JOIN canon.v_cabinet_lead_state_counted s
        USING (lead_date, limbo_stage, with_identity, with_driver, with_trips, with_rule, window_days,
               reached_m1, reached_m5, reached_m25, has_claim_m1, has_claim_m5, has_claim_m25)
      WHERE (c.leads, c.trips, c.m1_amount, c.m5_amount, c.m25_amount, c.paid_claims, c.paid_amount)
            IS DISTINCT FROM (s.leads, s.trips, s.m1_amount, s.m5_amount, s.m25_amount, s.paid_claims, s.paid_amount)
    ) x
    GROUP BY x.lead_date, x.limbo_stage, x.with_identity, x.with_driver, x.with_trips, x.with_rule
  ),
  -- A settled claim deleted or moved back to an unsettled status (its record stays,
  -- stamped by the trigger) with no note saying why: money that may have vanished by
  -- mistake, e.g. deleted by a statement that read it before finance settled it.
  settled_removed AS (
    SELECT format('%s M%s %s %s %s: %s at %s by %s (txid %s), no note', s.lead_source_pk, s.milestone, s.status,
                  s.amount_expected, s.currency,
                  CASE WHEN s.unsettled_to = 'deleted' THEN 'deleted' ELSE 'changed to ' || s.unsettled_to END,
                  date_trunc('second', s.unsettled_at), s.unsettled_by, s.unsettled_txid) AS example
    FROM canon_internal.claims_settled s
    WHERE s.unsettled_at IS NOT NULL AND s.unsettled_note IS NULL
  ),
  -- Lead keys stored with blanks at their ends, or of blanks only: canon.lead_source_pk
  -- never makes them (written under an older definition, or by hand). Beside a twin (the
  -- same key without its blanks) one lead is counted, linked and claimed twice.
  lead_key_blanks AS (
    SELECT format('%s is %s%s (in %s)', canon.show_blanks(x.lead_key),
                  CASE WHEN x.trimmed IS NULL THEN 'blank' ELSE 'lead ' || canon.show_blanks(x.trimmed) END,
                  CASE WHEN x.keys > 1 THEN format(': one lead under %s keys', x.keys) ELSE '' END,
                  x.stored_in) AS example
    FROM (SELECT s.lead_key, s.stored_in, t.trimmed,
                 CASE WHEN t.trimmed IS NOT NULL
                      THEN count(*) OVER (PARTITION BY t.trimmed)
                           + (EXISTS (SELECT 1 FROM canon.identity_links l
                                      WHERE l.source_table = 'module_ct_cabinet_leads' AND l.source_pk = t.trimmed)
                              OR EXISTS (SELECT 1 FROM canon.claims_yango_cabinet_14d c WHERE c.lead_source_pk = t.trimmed)
                              OR EXISTS (SELECT 1 FROM canon_internal.lead_keys k WHERE k.lead_source_pk = t.trimmed))::int
                 END AS keys
          FROM (
            SELECT b.lead_key, string_agg(b.stored_in, ', ' ORDER BY b.stored_in) AS stored_in
            FROM (
              SELECT DISTINCT 'identity_links' AS stored_in, l.source_pk AS lead_key FROM canon.identity_links l
              WHERE l.source_table = 'module_ct_cabinet_leads' AND canon.lead_source_pk(l.source_pk, NULL) IS DISTINCT FROM l.source_pk
              UNION ALL
              SELECT DISTINCT 'identity_unmatched', u.source_pk FROM canon.identity_unmatched u
              WHERE canon.lead_source_pk(u.source_pk, NULL) IS DISTINCT FROM u.source_pk
              UNION ALL
              SELECT DISTINCT 'identity_origin', o.origin_source_id FROM canon.identity_origin o
              WHERE canon.lead_source_pk(o.origin_source_id, NULL) IS DISTINCT FROM o.origin_source_id
              UNION ALL
              SELECT DISTINCT 'claims_yango_cabinet_14d', c.lead_source_pk FROM canon.claims_yango_cabinet_14d c
              WHERE canon.lead_source_pk(c.lead_source_pk, NULL) IS DISTINCT FROM c.lead_source_pk
              UNION ALL
              -- (the record of a claim deleted or unsettled is history: it keeps the key it had)
              SELECT DISTINCT 'claims_settled', s.lead_source_pk FROM canon_internal.claims_settled s
              WHERE s.unsettled_at IS NULL AND canon.lead_source_pk(s.lead_source_pk, NULL) IS DISTINCT FROM s.lead_source_pk
              UNION ALL
              SELECT DISTINCT 'lead_keys', k.lead_source_pk FROM canon_internal.lead_keys k
              WHERE canon.lead_source_pk(k.lead_source_pk, NULL) IS DISTINCT FROM k.lead_source_pk
              UNION ALL
              SELECT DISTINCT 'cabinet_lead_state', s.lead_source_pk FROM canon_internal.cabinet_lead_state s
              WHERE canon.lead_source_pk(s.lead_source_pk, NULL) IS DISTINCT FROM s.lead_source_pk
            ) b
            GROUP BY b.lead_key
          ) s
          CROSS JOIN LATERAL (SELECT canon.lead_source_pk(s.lead_key, NULL) AS trimmed) t
    ) x
  ),
  -- Settings a run would fail on: a stored value invalid for its type (written while the
  -- trigger was off, or a time zone the server no longer knows), or a setting some canon
  -- or ops function reads through canon.setting that is missing.
  settings_invalid AS (
    SELECT format('%s = %s: %s', s.key, quote_nullable(s.value), p.problem) AS example
    FROM canon.settings s
    CROSS JOIN LATERAL (SELECT canon.setting_problem(s.value, s.value_type, s.min_value, s.max_value) AS problem) p
    WHERE p.problem IS NOT NULL
    UNION ALL
    SELECT format('%s missing (read by %s)', r.key, string_agg(DISTINCT r.reader, ', '))
    FROM (SELECT m[1] AS key, f.oid::regproc::text AS reader
          FROM pg_proc f
          CROSS JOIN LATERAL regexp_matches(f.prosrc, 'canon\.setting\(''([^'']+)''\)', 'g') m
          WHERE f.pronamespace IN ('canon'::regnamespace, 'ops'::regnamespace)) r
    WHERE NOT EXISTS (SELECT 1 FROM canon.settings s WHERE s.key = r.key)
    GROUP BY r.key
  ),
  settings_guard AS (
    SELECT format('trigger %s %s', w.tgname, CASE WHEN t.tgname IS NULL THEN 'missing' ELSE 'disabled' END) AS example
    FROM (VALUES ('settings_validate'), ('settings_no_truncate')) w (tgname)
    LEFT JOIN pg_trigger t
      ON t.tgrelid = 'canon.settings'::regclass AND t.tgname = w.tgname
    WHERE t.tgname IS NULL OR t.tgenabled NOT IN ('O', 'A')
  ),
  -- The token counts the relatives veto reads (canon.name_token_usage) against their live
  -- definition: every token of the stored name roles counted again (a pass over the roles).
  name_token_stats_drift AS (
    SELECT format('%s: counted given %s surname %s, stored given %s surname %s', coalesce(v.token, c.token),
                  coalesce(v.as_given, 0), coalesce(v.as_surname, 0), coalesce(c.as_given, 0), coalesce(c.as_surname, 0)) AS example
    FROM canon_internal.name_token_stats c
    FULL JOIN canon.v_name_token_stats v ON v.token = c.token
    WHERE (coalesce(c.as_given, 0), coalesce(c.as_surname, 0)) IS DISTINCT FROM (coalesce(v.as_given, 0), coalesce(v.as_surname, 0))
  ),
  -- The name roles: one row per index row, written with it (in full); their tokens against
  -- the source row the index holds for the 1,000 drivers indexed last and every 64th driver
  -- (bounded: splitting every driver's fields is ~10 s at 1M; docs/operations.md).
  driver_name_roles_drift AS (
    SELECT format('driver %s: %s', coalesce(i.driver_id, r.driver_id),
                  CASE WHEN r.driver_id IS NULL THEN 'indexed without name roles'
                       WHEN i.driver_id IS NULL THEN 'name roles of a driver not indexed'
                       ELSE 'name roles not written with its index row' END) AS example
    FROM canon_internal.driver_index i
    FULL JOIN canon_internal.driver_name_roles r ON r.driver_id = i.driver_id
    WHERE i.driver_id IS NULL OR r.driver_id IS NULL OR r.indexed_at <> i.indexed_at
    UNION ALL
    SELECT format('driver %s: name roles %s / %s, source %s / %s', r.driver_id,
                  coalesce(r.given_names::text, '-'), coalesce(r.surnames::text, '-'),
                  coalesce(v.given_names::text, '-'), coalesce(v.surnames::text, '-'))
    FROM canon.driver_name_roles_live(ARRAY(
           SELECT x.driver_id FROM canon_internal.driver_index x WHERE abs(hashtext(x.driver_id)) % 64 = 0
           UNION
           (SELECT x.driver_id FROM canon_internal.driver_index x ORDER BY x.indexed_at DESC LIMIT 1000))) v
    JOIN canon_internal.driver_name_roles r ON r.driver_id = v.driver_id
    WHERE v.source_indexed
      AND (r.given_names, r.surnames) IS DISTINCT FROM (v.given_names, v.surnames)
  ),
  -- The job lock held longer than a run can last (ops.job_lock_holders): every run is
  -- SKIPPED meanwhile, with exit code 0. Freed by ending the holder's session.
  job_lock_held AS (
    SELECT format('pid %s (%s) holds it since %s UTC (%s): SELECT pg_terminate_backend(%s);',
                  h.pid,
                  concat_ws(', ', nullif(h.application_name, ''), 'user ' || h.usename, h.state, 'run ' || h.run_id),
                  to_char(h.held_since AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), h.held_for, h.pid) AS example
    FROM ops.job_lock_holders() h
    WHERE h.too_long
  ),
  -- graphile-worker jobs and queues locked longer than a run can last (a worker killed
  -- with kill -9): no run of the queue starts until graphile-worker's 4-hour reset.
  worker_locked AS (
    SELECT format('%s %s (%s) locked by %s since %s UTC (%s): SELECT graphile_worker.force_unlock_workers(ARRAY[%L]);',
                  w.kind, w.id, w.name, w.locked_by, to_char(w.locked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'),
                  w.locked_for, w.locked_by) AS example
    FROM ops.worker_jobs_locked() w
    WHERE w.too_long
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
    SELECT 5, 'LIMBO_ROW_COUNT', 'ops.v_cabinet_leads_limbo must have exactly one row per dated lead (a finite lead_created_at)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM limbo_mismatch ORDER BY example LIMIT 5) x), (SELECT count(*) FROM limbo_mismatch)
    UNION ALL
    SELECT 6, 'SETTLED_CLAIM_UNGUARDED', 'the triggers that keep pipeline runs off paid and rejected claims, and record them, must exist and be enabled',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM settled_guard ORDER BY example LIMIT 5) x), (SELECT count(*) FROM settled_guard)
    UNION ALL
    SELECT 7, 'SETTLED_CLAIM_CHANGED', 'paid or rejected claims that differ from canon_internal.claims_settled (changed, deleted or settled while the guard was off)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM settled_changed ORDER BY example LIMIT 5) x), (SELECT count(*) FROM settled_changed)
    UNION ALL
    SELECT 8, 'LEAD_STATE_COUNTS', 'canon_internal.cabinet_lead_state_counts must count the stored lead state rows (by lead date, stage and flags)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM state_counts ORDER BY example LIMIT 5) x), (SELECT count(*) FROM state_counts)
    UNION ALL
    -- 10-19: each cache against its live definition
    SELECT x.ord, x.invariant, x.description, x.examples, x.violations FROM ops.check_caches() x
    UNION ALL
    SELECT 20, 'SETTLED_CLAIM_REMOVED', 'paid or rejected claims deleted, or moved back to an unsettled status, with no note saying why (their record in canon_internal.claims_settled stays, stamped unsettled_*)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM settled_removed ORDER BY example LIMIT 5) x), (SELECT count(*) FROM settled_removed)
    UNION ALL
    SELECT 30, 'LEAD_KEY_BLANK_ENDS', 'lead keys stored with blanks at their ends, or of blanks only, which canon.lead_source_pk never makes: next to the same key without them, one lead is linked and claimed twice (repair: ops.repair_lead_keys)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM lead_key_blanks ORDER BY example LIMIT 5) x), (SELECT count(*) FROM lead_key_blanks)
    UNION ALL
    SELECT 40, 'SETTING_INVALID', 'settings of canon.settings invalid for their value_type (every run would fail on them), or read by the product and missing',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM settings_invalid ORDER BY example LIMIT 5) x), (SELECT count(*) FROM settings_invalid)
    UNION ALL
    SELECT 41, 'SETTING_UNGUARDED', 'the triggers that refuse an invalid setting where it is written must exist and be enabled',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM settings_guard ORDER BY example LIMIT 5) x), (SELECT count(*) FROM settings_guard)
    UNION ALL
    SELECT 50, 'NAME_TOKEN_STATS', 'canon_internal.name_token_stats must count the stored name roles per token (canon.v_name_token_stats)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM name_token_stats_drift ORDER BY example LIMIT 5) x), (SELECT count(*) FROM name_token_stats_drift)
    UNION ALL
    SELECT 51, 'DRIVER_NAME_ROLES', 'canon_internal.driver_name_roles must hold one row per driver index row, written with it, with the name fields of its source row (canon.v_driver_name_roles; content checked on the 1,000 drivers indexed last and every 64th)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM driver_name_roles_drift ORDER BY example LIMIT 5) x), (SELECT count(*) FROM driver_name_roles_drift)
    UNION ALL
    SELECT 60, 'JOB_LOCK_HELD_TOO_LONG', 'sessions holding the job lock for longer than a run can last (setting job_lock_held_max_minutes): every run is SKIPPED meanwhile (ops.job_lock_holders; free it with pg_terminate_backend)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM job_lock_held ORDER BY example LIMIT 5) x), (SELECT count(*) FROM job_lock_held)
    UNION ALL
    SELECT 61, 'WORKER_JOB_LOCKED_TOO_LONG', 'graphile-worker jobs and queues locked for longer than a run can last (setting job_lock_held_max_minutes), by a worker that was killed: no run of the queue starts until they are unlocked (ops.worker_jobs_locked; graphile_worker.force_unlock_workers)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM worker_locked ORDER BY example LIMIT 5) x), (SELECT count(*) FROM worker_locked)
  )
  SELECT c.invariant, c.n, coalesce(c.examples, '[]'::jsonb), c.description FROM checks c ORDER BY c.ord
$$;
COMMENT ON FUNCTION ops.check_invariants() IS
  'Every spec invariant with its violation count (0 = holds) and up to 5 examples: SELECT * FROM ops.check_invariants() WHERE violations > 0; cabinet-leads doctor exits 1 when any is violated.';
