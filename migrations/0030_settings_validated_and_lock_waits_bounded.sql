-- Up Migration
-- snapshot of sql/canon/canon.setting_problem.sql
-- canon.setting_problem: what is wrong with a value of a product setting for its type
-- (canon.settings.value_type, min_value, max_value), as one sentence; NULL when it is
-- valid. One definition for the trigger that refuses a bad value where it is written
-- (canon.enforce_setting_valid) and for doctor, which finds one stored behind its back
-- (ops.check_invariants, SETTING_INVALID). Types:
--   TEXT        anything (not validated)
--   IDENTIFIER  a key compared exactly (target_park_id): not blank, no spaces or control
--               characters at its ends (such a park id silently matches no driver)
--   INTEGER     digits with an optional minus sign, from min_value to max_value (the
--               readers cast it to integer)
--   TIME_ZONE   a name of pg_timezone_names, any case ('America/Lima'); abbreviations
--               and POSIX strings are refused: 'UTC-5' means UTC+5 to PostgreSQL
CREATE OR REPLACE FUNCTION canon.setting_problem(p_value text, p_value_type text, p_min_value bigint, p_max_value bigint)
RETURNS text
LANGUAGE plpgsql
STABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  c_int_min constant bigint := -2147483648;
  c_int_max constant bigint := 2147483647;
  v_range text;
  v_closest text;
BEGIN
  IF p_value IS NULL THEN
    RETURN 'no value';
  END IF;
  CASE p_value_type
    WHEN 'TEXT' THEN
      RETURN NULL;
    WHEN 'IDENTIFIER' THEN
      IF p_value !~ '[^[:space:][:cntrl:]\u00a0\u2000-\u200b\u202f\u205f\u3000\ufeff]' THEN
        RETURN 'blank: expected an identifier';
      ELSIF p_value ~ '^[[:space:][:cntrl:]\u00a0\u2000-\u200b\u202f\u205f\u3000\ufeff]|[[:space:][:cntrl:]\u00a0\u2000-\u200b\u202f\u205f\u3000\ufeff]$' THEN
        RETURN 'spaces or control characters at its ends: expected the identifier alone (it is compared exactly)';
      END IF;
      RETURN NULL;
    WHEN 'INTEGER' THEN
      v_range := format('expected an integer from %s to %s',
                        greatest(coalesce(p_min_value, c_int_min), c_int_min), least(coalesce(p_max_value, c_int_max), c_int_max));
      IF p_value !~ '^-?[0-9]+$' THEN
        RETURN 'not an integer: ' || v_range;
      ELSIF length(ltrim(p_value, '-0')) > 18
            OR p_value::bigint NOT BETWEEN greatest(coalesce(p_min_value, c_int_min), c_int_min)
                                       AND least(coalesce(p_max_value, c_int_max), c_int_max) THEN
        RETURN 'out of range: ' || v_range;
      END IF;
      RETURN NULL;
    WHEN 'TIME_ZONE' THEN
      IF EXISTS (SELECT 1 FROM pg_catalog.pg_timezone_names z WHERE lower(z.name) = lower(p_value)) THEN
        RETURN NULL;
      END IF;
      IF p_value ~ '[0-9]' THEN
        RETURN 'unknown time zone: expected a name of pg_timezone_names such as America/Lima '
               '(an offset like UTC-5 means UTC+5 to PostgreSQL)';
      END IF;
      -- The closest name, when the value looks like a typo of one (America/Lim).
      SELECT z.name INTO v_closest
      FROM pg_catalog.pg_timezone_names z
      WHERE public.levenshtein(lower(left(p_value, 200)), lower(z.name)) <= 3
      ORDER BY public.levenshtein(lower(left(p_value, 200)), lower(z.name)), z.name
      LIMIT 1;
      RETURN 'unknown time zone: expected a name of pg_timezone_names'
             || coalesce(' (did you mean ' || v_closest || '?)', ' such as America/Lima');
    ELSE
      RETURN format('unknown value_type %s: expected TEXT, IDENTIFIER, INTEGER or TIME_ZONE', coalesce(p_value_type, 'NULL'));
  END CASE;
END
$$;
COMMENT ON FUNCTION canon.setting_problem(text, text, bigint, bigint) IS
  'What is wrong with a setting value for its value_type (TEXT, IDENTIFIER, INTEGER with min/max, TIME_ZONE), in one sentence; NULL when valid. Used by the trigger on canon.settings and by ops.check_invariants.';

-- snapshot of sql/canon/canon.enforce_setting_valid.sql
-- canon.enforce_setting_valid: trigger function of canon.settings (trigger
-- settings_validate, BEFORE INSERT OR UPDATE OR DELETE per row; trigger
-- settings_no_truncate, BEFORE TRUNCATE). A value that every run would fail on (an
-- unknown time zone, a blank park id, a non-integer) is refused where it is written,
-- with the setting and the value named (SQLSTATE 22023), instead of failing every later
-- run. A setting with a type is read by the product, so it is never deleted or renamed
-- (23001): its value is changed instead. Also stamps updated_at when a value changes.
CREATE OR REPLACE FUNCTION canon.enforce_setting_valid()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_problem text;
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    RAISE EXCEPTION 'canon.settings cannot be truncated: the product reads its settings; UPDATE a value instead'
      USING ERRCODE = '23001';
  END IF;
  IF TG_OP IN ('DELETE', 'UPDATE') AND OLD.value_type <> 'TEXT'
     AND (TG_OP = 'DELETE' OR NEW.key IS DISTINCT FROM OLD.key) THEN
    RAISE EXCEPTION 'setting % cannot be %: the product reads it; UPDATE its value instead',
                    OLD.key, CASE WHEN TG_OP = 'DELETE' THEN 'deleted' ELSE 'renamed' END
      USING ERRCODE = '23001';
  END IF;
  IF TG_OP = 'DELETE' THEN
    RETURN OLD;
  END IF;

  v_problem := canon.setting_problem(NEW.value, NEW.value_type, NEW.min_value, NEW.max_value);
  IF v_problem IS NOT NULL THEN
    RAISE EXCEPTION 'invalid setting % = %: %', NEW.key, quote_nullable(NEW.value), v_problem
      USING ERRCODE = '22023',
            HINT = 'The type and range of every setting: SELECT key, value, value_type, min_value, max_value FROM canon.settings;';
  END IF;
  IF TG_OP = 'UPDATE' AND NEW.value IS DISTINCT FROM OLD.value AND NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
    NEW.updated_at := now();
  END IF;
  RETURN NEW;
END
$$;
COMMENT ON FUNCTION canon.enforce_setting_valid() IS
  'Trigger of canon.settings: refuses a value invalid for its value_type (22023, naming setting and value, canon.setting_problem), the deletion, renaming or truncation of a typed setting (23001); stamps updated_at.';

-- snapshot of sql/canon/canon.bound_lock_timeout.sql
-- canon.bound_lock_timeout: bounds every lock wait of the current transaction to 30 s,
-- or less when the session asked for less (PGOPTIONS='-c lock_timeout=5s' or SET), so
-- that a table locked by someone else (canon.settings, canon.ingestion_runs, ...) fails
-- the statement with 55P03 instead of hanging it until the statement timeout. Transaction-
-- local (SET LOCAL): the pipeline calls it at its start and again after each COMMIT.
-- Returns the lock_timeout now in force.
CREATE OR REPLACE FUNCTION canon.bound_lock_timeout()
RETURNS text
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF (SELECT s.setting::bigint FROM pg_catalog.pg_settings s WHERE s.name = 'lock_timeout') NOT BETWEEN 1 AND 30000 THEN
    PERFORM set_config('lock_timeout', '30s', true);
  END IF;
  RETURN current_setting('lock_timeout');
END
$$;
COMMENT ON FUNCTION canon.bound_lock_timeout() IS
  'Sets lock_timeout to 30 s for the current transaction unless the session already has a shorter one; returns the lock_timeout in force. Called by ops.reconcile_cabinet_leads_pipeline at its start and after each COMMIT.';

-- snapshot of migrations/parts/0030_settings_validated.sql
-- Every setting the product reads has a type, and a value is checked against it where it
-- is written (trigger settings_validate, canon.enforce_setting_valid), not by the next
-- run failing on it. The values already stored are not checked here (a migration must
-- not fail on them): `cabinet-leads doctor` names any invalid one (SETTING_INVALID).
ALTER TABLE canon.settings
  ADD COLUMN IF NOT EXISTS value_type text NOT NULL DEFAULT 'TEXT'
    CONSTRAINT settings_value_type_check CHECK (value_type IN ('TEXT', 'IDENTIFIER', 'INTEGER', 'TIME_ZONE')),
  ADD COLUMN IF NOT EXISTS min_value bigint,
  ADD COLUMN IF NOT EXISTS max_value bigint;
ALTER TABLE canon.settings
  ADD CONSTRAINT settings_range_check CHECK (
    (value_type = 'INTEGER' OR (min_value IS NULL AND max_value IS NULL))
    AND (min_value IS NULL OR max_value IS NULL OR min_value <= max_value));
COMMENT ON TABLE canon.settings IS
  'Product settings shared by the job and the views (target park, business time zone, ...). Edit with UPDATE; a value invalid for its value_type is refused (trigger settings_validate).';
COMMENT ON COLUMN canon.settings.value_type IS
  'What the value must be: TEXT (anything), IDENTIFIER (not blank, no spaces at its ends), INTEGER (from min_value to max_value), TIME_ZONE (a name of pg_timezone_names). See canon.setting_problem.';
COMMENT ON COLUMN canon.settings.min_value IS 'Smallest value allowed (INTEGER settings).';
COMMENT ON COLUMN canon.settings.max_value IS 'Largest value allowed (INTEGER settings).';

UPDATE canon.settings s
SET value_type = t.value_type, min_value = t.min_value, max_value = t.max_value
FROM (VALUES
  ('target_park_id',                  'IDENTIFIER', NULL::bigint, NULL::bigint),
  ('business_timezone',               'TIME_ZONE',  NULL,         NULL),
  -- 0 = a full refresh on every run; a year at most
  ('driver_index_full_refresh_hours', 'INTEGER',    0,          8760),
  -- 0 would make every phone shared (R1 never used)
  ('shared_phone_min_other_people',   'INTEGER',    1,          1000),
  ('alert_week_complete_after_days',  'INTEGER',    0,          365),
  ('trips_settle_days',               'INTEGER',    0,          365)
) t (key, value_type, min_value, max_value)
WHERE s.key = t.key;

DROP TRIGGER IF EXISTS settings_validate ON canon.settings;
CREATE TRIGGER settings_validate
  BEFORE INSERT OR UPDATE OR DELETE ON canon.settings
  FOR EACH ROW EXECUTE FUNCTION canon.enforce_setting_valid();
DROP TRIGGER IF EXISTS settings_no_truncate ON canon.settings;
CREATE TRIGGER settings_no_truncate
  BEFORE TRUNCATE ON canon.settings
  FOR EACH STATEMENT EXECUTE FUNCTION canon.enforce_setting_valid();

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
    FULL JOIN canon.claims_settled s
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
    SELECT 40, 'SETTING_INVALID', 'settings of canon.settings invalid for their value_type (every run would fail on them), or read by the product and missing',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM settings_invalid ORDER BY example LIMIT 5) x), (SELECT count(*) FROM settings_invalid)
    UNION ALL
    SELECT 41, 'SETTING_UNGUARDED', 'the triggers that refuse an invalid setting where it is written must exist and be enabled',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM settings_guard ORDER BY example LIMIT 5) x), (SELECT count(*) FROM settings_guard)
  )
  SELECT c.invariant, c.n, coalesce(c.examples, '[]'::jsonb), c.description FROM checks c ORDER BY c.ord
$$;
COMMENT ON FUNCTION ops.check_invariants() IS
  'Every spec invariant with its violation count (0 = holds) and up to 5 examples: SELECT * FROM ops.check_invariants() WHERE violations > 0; cabinet-leads doctor exits 1 when any is violated.';

-- snapshot of sql/ops/ops.reconcile_cabinet_leads_pipeline.sql
-- ops.reconcile_cabinet_leads_pipeline: the one entry point of a reconciliation run
-- (SPEC 7), called by the graphile-worker task, the CLI and people in psql:
--   CALL ops.reconcile_cabinet_leads_pipeline(p_days_back => 30, p_limit => 2000);
-- It commits the RUNNING row first (visible at once), takes the job lock (or logs
-- SKIPPED), then runs steps 3-8 in one subtransaction: a failure rolls all of them
-- back and is logged as FAILED; a dry run rolls them back on purpose and keeps stats.
-- Every lock wait is bounded (canon.bound_lock_timeout, 30 s) from the first statement;
-- a setting that cannot be read in step 1 logs the run FAILED at once.
-- A procedure, not a function, because it must commit; so it has no SET clause and
-- qualifies every name. CALL it outside an explicit transaction block.
CREATE OR REPLACE PROCEDURE ops.reconcile_cabinet_leads_pipeline(
  p_days_back integer DEFAULT 30,
  p_limit integer DEFAULT 2000,
  p_dry_run boolean DEFAULT false,
  p_only_limbo boolean DEFAULT false,
  p_context jsonb DEFAULT '{}'::jsonb,
  p_raise_on_failure boolean DEFAULT true,
  INOUT run jsonb DEFAULT NULL
)
LANGUAGE plpgsql
AS $$
DECLARE
  c_job_name constant text := 'reconcile_cabinet_leads_pipeline';
  v_run_id bigint;
  v_today date;
  v_scope_from date;
  v_abandoned integer;
  v_status text;
  v_stats jsonb;
  v_steps jsonb := '[]'::jsonb;
  v_step_out jsonb;
  v_prev_snapshot bigint;
  v_t0 timestamptz;
  v_t timestamptz;
  v_sqlstate text;
  v_message text;
  v_detail text;
  v_context text;
BEGIN
  IF p_days_back IS NULL OR p_days_back < 0 OR p_days_back > 36500 THEN
    RAISE EXCEPTION 'invalid days_back %: expected an integer from 0 to 36500', coalesce(p_days_back::text, 'NULL')
      USING ERRCODE = '22023';
  END IF;
  IF p_limit IS NULL OR p_limit < 0 THEN
    RAISE EXCEPTION 'invalid limit %: expected an integer >= 0', coalesce(p_limit::text, 'NULL')
      USING ERRCODE = '22023';
  END IF;
  IF p_context IS NULL OR jsonb_typeof(p_context) <> 'object' THEN
    RAISE EXCEPTION 'invalid context %: expected a json object', coalesce(p_context::text, 'NULL')
      USING ERRCODE = '22023';
  END IF;

  v_t0 := clock_timestamp();
  -- Lock waits are bounded from the first statement (step 1 reads canon.settings and
  -- writes canon.ingestion_runs); a COMMIT ends the bound, so it is set again after it.
  PERFORM canon.bound_lock_timeout();

  -- Step 1: runs whose backend is gone are abandoned; log this run as RUNNING and commit.
  -- A setting that cannot be read (locked, invalid, missing) logs the run FAILED instead.
  BEGIN
    v_today := canon.business_today();
  EXCEPTION WHEN OTHERS OR query_canceled THEN
    GET STACKED DIAGNOSTICS v_sqlstate = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                            v_detail = PG_EXCEPTION_DETAIL, v_context = PG_EXCEPTION_CONTEXT;
    v_status := 'FAILED';
  END;
  v_scope_from := v_today - p_days_back;
  v_abandoned := canon.mark_abandoned_runs();
  INSERT INTO canon.ingestion_runs (
    job_name, status, dry_run, source_tables, params, scope_date_from, scope_date_to,
    trigger, client_host, client_pid, worker_job_id, backend_pid, backend_start,
    stats, error_message, error_sqlstate, completed_at
  )
  SELECT c_job_name, coalesce(v_status, 'RUNNING'), p_dry_run,
         '["module_ct_cabinet_leads", "drivers", "summary_daily"]'::jsonb,
         jsonb_build_object('days_back', p_days_back, 'limit', p_limit, 'dry_run', p_dry_run,
                            'only_limbo', p_only_limbo, 'business_today', v_today),
         v_scope_from, v_today,
         coalesce(p_context->>'trigger', 'psql'),
         coalesce(p_context->>'client_host', host(inet_client_addr())),
         (p_context->>'client_pid')::integer,
         p_context->>'worker_job_id',
         pg_backend_pid(),
         (SELECT a.backend_start FROM pg_catalog.pg_stat_activity a WHERE a.pid = pg_backend_pid()),
         CASE WHEN v_status = 'FAILED' THEN jsonb_build_object('abandoned_runs_marked', v_abandoned, 'steps', '[]'::jsonb,
           'error', jsonb_build_object('sqlstate', v_sqlstate, 'detail', v_detail, 'context', v_context)) ELSE '{}'::jsonb END,
         v_message, v_sqlstate, CASE WHEN v_status = 'FAILED' THEN clock_timestamp() END
  RETURNING id INTO v_run_id;
  COMMIT;
  IF v_status = 'FAILED' THEN
    SELECT to_jsonb(r) INTO run FROM canon.ingestion_runs r WHERE r.id = v_run_id;
    IF p_raise_on_failure THEN
      RAISE EXCEPTION 'run % FAILED: %', v_run_id, v_message
        USING ERRCODE = v_sqlstate, DETAIL = coalesce(v_detail, ''),
              HINT = format('The run is logged: SELECT * FROM canon.ingestion_runs WHERE id = %s', v_run_id);
    END IF;
    RETURN;
  END IF;
  PERFORM canon.bound_lock_timeout();

  -- Step 2: one run at a time, across every host. The lock lasts until the final commit.
  IF NOT pg_try_advisory_xact_lock(hashtext('cabinet_leads'), hashtext(c_job_name)) THEN
    UPDATE canon.ingestion_runs
    SET status = 'SKIPPED',
        completed_at = clock_timestamp(),
        stats = jsonb_build_object(
          'skipped_reason', 'another run holds the job lock',
          'running_run_ids', (SELECT coalesce(jsonb_agg(r.id ORDER BY r.id), '[]'::jsonb)
                              FROM canon.ingestion_runs r
                              WHERE r.job_name = c_job_name AND r.status = 'RUNNING' AND r.id <> v_run_id),
          'abandoned_runs_marked', v_abandoned)
    WHERE id = v_run_id;
    COMMIT;
    SELECT to_jsonb(r) INTO run FROM canon.ingestion_runs r WHERE r.id = v_run_id;
    RETURN;
  END IF;
  -- Settled claims are out of the run's reach (trigger claims_protect_settled).
  PERFORM set_config('cabinet.in_pipeline', 'on', true);

  v_stats := jsonb_build_object('abandoned_runs_marked', v_abandoned);

  -- Steps 3-8: all or nothing.
  BEGIN
    v_t := clock_timestamp();
    v_stats := v_stats || jsonb_build_object('source_contract_columns', canon.check_source_contract());
    v_steps := v_steps || jsonb_build_object('step', 'check_source_contract', 'status', 'done',
      'ms', round((extract(epoch FROM clock_timestamp() - v_t) * 1000)::numeric, 1));

    -- Limbo is counted once per run (a pass over every lead): "before" is the snapshot of
    -- the previous completed run (live counts only when there is none yet), "after" is
    -- this run's own snapshot in step 8.
    SELECT jsonb_build_object(
             'NO_IDENTITY', s.limbo_no_identity, 'NO_DRIVER', s.limbo_no_driver,
             'NO_TRIPS_14D', s.limbo_no_trips_14d, 'TRIPS_NO_CLAIM', s.limbo_trips_no_claim, 'OK', s.limbo_ok),
           s.run_id
    INTO v_step_out, v_prev_snapshot
    FROM ops.limbo_snapshots s
    ORDER BY s.taken_at DESC, s.run_id DESC
    LIMIT 1;
    v_stats := v_stats || jsonb_build_object(
      'limbo_before', coalesce(v_step_out, ops.limbo_stage_counts()),
      'limbo_before_as_of_run', v_prev_snapshot);

    v_t := clock_timestamp();
    v_step_out := canon.refresh_driver_index(v_run_id);
    PERFORM canon.failpoint('after_refresh_driver_index');
    v_stats := v_stats || jsonb_build_object('driver_index', v_step_out);
    v_steps := v_steps || jsonb_build_object('step', 'refresh_driver_index',
      'status', CASE WHEN v_step_out->'implemented' = 'false'::jsonb THEN 'not_implemented' ELSE 'done' END,
      'ms', round((extract(epoch FROM clock_timestamp() - v_t) * 1000)::numeric, 1));

    v_t := clock_timestamp();
    v_step_out := canon.match_cabinet_leads(v_run_id, v_scope_from, p_limit, p_only_limbo);
    PERFORM canon.failpoint('after_match');
    v_stats := v_stats || jsonb_build_object('match', v_step_out);
    v_steps := v_steps || jsonb_build_object('step', 'match_cabinet_leads',
      'status', CASE WHEN v_step_out->'implemented' = 'false'::jsonb THEN 'not_implemented' ELSE 'done' END,
      'ms', round((extract(epoch FROM clock_timestamp() - v_t) * 1000)::numeric, 1));

    v_t := clock_timestamp();
    -- A large batch (backfill) changes these tables faster than autovacuum analyses
    -- them; the next statements would be planned for the tables as they were.
    IF (v_stats->'match'->>'leads_evaluated')::integer >= 5000 THEN
      ANALYZE canon.identity_links, canon.identity_unmatched, canon.lead_keys, canon.identity_registry;
    END IF;
    v_step_out := canon.generate_cabinet_claims(v_run_id, v_scope_from, p_only_limbo);
    PERFORM canon.failpoint('after_claims');
    v_stats := v_stats || jsonb_build_object('claims', v_step_out);
    v_steps := v_steps || jsonb_build_object('step', 'generate_cabinet_claims',
      'status', CASE WHEN v_step_out->'implemented' = 'false'::jsonb THEN 'not_implemented' ELSE 'done' END,
      'ms', round((extract(epoch FROM clock_timestamp() - v_t) * 1000)::numeric, 1));

    v_t := clock_timestamp();
    v_step_out := ops.snapshot_limbo(v_run_id);
    PERFORM canon.failpoint('after_snapshot');
    v_stats := v_stats || jsonb_build_object('snapshot', v_step_out, 'limbo_after', v_step_out->'stages');
    v_steps := v_steps || jsonb_build_object('step', 'snapshot_limbo',
      'status', CASE WHEN v_step_out->'implemented' = 'false'::jsonb THEN 'not_implemented' ELSE 'done' END,
      'ms', round((extract(epoch FROM clock_timestamp() - v_t) * 1000)::numeric, 1));

    v_status := 'COMPLETED';
    IF p_dry_run THEN
      -- Roll back every write of steps 3-8; the variables keep the stats.
      RAISE EXCEPTION 'dry run' USING ERRCODE = 'CL0DR';
    END IF;
  EXCEPTION
    WHEN SQLSTATE 'CL0DR' THEN
      v_status := 'COMPLETED';
    WHEN OTHERS THEN
      GET STACKED DIAGNOSTICS v_sqlstate = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                              v_detail = PG_EXCEPTION_DETAIL, v_context = PG_EXCEPTION_CONTEXT;
      v_status := 'FAILED';
    -- OTHERS does not include a cancel (statement_timeout, Ctrl-C): log those too.
    WHEN query_canceled THEN
      GET STACKED DIAGNOSTICS v_sqlstate = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                              v_detail = PG_EXCEPTION_DETAIL, v_context = PG_EXCEPTION_CONTEXT;
      v_status := 'FAILED';
  END;

  -- Step 9: outcome, in the same transaction as the writes of steps 4-8.
  v_stats := v_stats || jsonb_build_object(
    'steps', v_steps,
    'steps_not_implemented', (SELECT coalesce(jsonb_agg(s->'step'), '[]'::jsonb)
                              FROM jsonb_array_elements(v_steps) s
                              WHERE s->>'status' = 'not_implemented'),
    'durations_ms', (SELECT coalesce(jsonb_object_agg(s->>'step', s->'ms'), '{}'::jsonb)
                     FROM jsonb_array_elements(v_steps) s)
                    || jsonb_build_object('total', round((extract(epoch FROM clock_timestamp() - v_t0) * 1000)::numeric, 1)));
  IF v_status = 'FAILED' THEN
    v_stats := v_stats || jsonb_build_object('error', jsonb_build_object(
      'sqlstate', v_sqlstate, 'detail', v_detail, 'context', v_context));
  END IF;

  UPDATE canon.ingestion_runs
  SET status = v_status,
      stats = v_stats,
      completed_at = clock_timestamp(),
      error_message = CASE WHEN v_status = 'FAILED' THEN v_message END,
      error_sqlstate = CASE WHEN v_status = 'FAILED' THEN v_sqlstate END
  WHERE id = v_run_id;
  COMMIT;

  SELECT to_jsonb(r) INTO run FROM canon.ingestion_runs r WHERE r.id = v_run_id;
  IF v_status = 'FAILED' AND p_raise_on_failure THEN
    RAISE EXCEPTION 'run % FAILED: %', v_run_id, v_message
      USING ERRCODE = v_sqlstate,
            DETAIL = coalesce(v_detail, ''),
            HINT = format('The run is logged: SELECT * FROM canon.ingestion_runs WHERE id = %s', v_run_id);
  END IF;
END
$$;
COMMENT ON PROCEDURE ops.reconcile_cabinet_leads_pipeline(integer, integer, boolean, boolean, jsonb, boolean, jsonb) IS
  'One reconciliation run (SPEC 7): CALL ops.reconcile_cabinet_leads_pipeline(p_days_back => 30, p_limit => 2000, p_dry_run => false). Returns the run row as jsonb; raises after logging when the run FAILED.';
