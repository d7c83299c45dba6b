-- Up Migration
-- The baseline: every object of sql/, in the order of sql/load-order.txt
-- (npx tsx scripts/baseline.ts). Before the first release it is written again from sql/;
-- after it, it never changes (migrations/README.md).
SET check_function_bodies = off;

-- snapshot of sql/canon_internal/canon_internal.sql
-- The schema canon_internal: what the product keeps to be fast and to know what it has read
-- (lead keys, the driver index, the stored lead state and its counters, marks, scan
-- bookkeeping, the record of settled claims). Every table here has a live definition and a
-- doctor check (ops.check_caches, ops.check_invariants); nobody edits them by hand:
-- `cabinet-leads doctor --repair` rebuilds what drifted (docs/change-detection.md).
CREATE SCHEMA canon_internal;
COMMENT ON SCHEMA canon_internal IS 'Cabinet leads reconciliation, internal: caches and bookkeeping kept by the pipeline (never edited by hand; doctor checks them).';

-- snapshot of sql/canon/canon.sql
-- The schema canon (SPEC 4): canonical identities and their links, the runs, the claims,
-- the settings and rules people edit, and the functions of the pipeline. Its tables are the
-- product's contract; the caches and bookkeeping behind them are in canon_internal. The
-- extensions the matcher uses are installed with it (in the database's default schema).
CREATE SCHEMA canon;
COMMENT ON SCHEMA canon IS 'Cabinet leads reconciliation: canonical identities, links, runs and claims.';

CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS fuzzystrmatch;
CREATE EXTENSION IF NOT EXISTS unaccent;

-- snapshot of sql/ops/ops.sql
-- The schema ops (SPEC 4): what people and tools read and call: the pipeline procedure,
-- the limbo, claim and funnel views, snapshots, alerts and the operator functions.
CREATE SCHEMA ops;
COMMENT ON SCHEMA ops IS 'Cabinet leads reconciliation: pipeline entry point, limbo views, snapshots and alerts.';

-- snapshot of sql/canon/canon.summary_daily_write_counts.sql
-- canon.summary_daily_write_counts: what canon.summary_daily_writes returns (the statistics
-- system's view of public.summary_daily), for canon.trip_drivers_changed to compare with
-- what it last acted on (canon_internal.source_scan_state).
CREATE TYPE canon.summary_daily_write_counts AS (
  relfilenode  oid,
  inserted     bigint,
  updated      bigint,
  deleted      bigint,
  blocks       bigint,
  stats_epoch  text
);
COMMENT ON TYPE canon.summary_daily_write_counts IS
  'What the statistics system says of public.summary_daily (canon.summary_daily_writes).';

-- snapshot of sql/canon/canon.actionable_no_identity_leads.sql
-- canon.actionable_no_identity_leads: the NO_IDENTITY lead rows a person can act on now:
-- an OPEN unmatched record the matcher will not decide by itself (AMBIGUOUS, CONFLICT,
-- WEAK_MATCH_ONLY, SHARED_KEY, PROBABLE_MATCH: cabinet-leads review) or whose lead lacks every key
-- (MISSING_KEYS); not a lead the job retries (not evaluated yet, NO_CANDIDATES) or one
-- marked IGNORED. As canon.v_cabinet_lead_status_current shows them, reached through the
-- keys of those records (canon.lead_ids_of_keys: the rows keyed so by the last read) and
-- p_lead_ids, which must hold every row whose key or state may have changed since
-- (canon.lead_ids_maybe_not_current): no pass over every lead. Callers:
-- ops.limbo_stage_actions, ops.oldest_actionable_leads (the report).
CREATE OR REPLACE FUNCTION canon.actionable_no_identity_leads(p_lead_ids integer[])
RETURNS TABLE (lead_id integer, lead_date date)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
  WITH open_records AS MATERIALIZED (
    SELECT u.source_pk
    FROM canon.identity_unmatched u
    WHERE u.source_table = 'module_ct_cabinet_leads'
      AND u.status = 'OPEN'
      AND u.reason_code IN ('AMBIGUOUS', 'CONFLICT', 'WEAK_MATCH_ONLY', 'SHARED_KEY', 'PROBABLE_MATCH', 'MISSING_KEYS')
  ),
  reachable AS MATERIALIZED (
    SELECT unnest(canon.lead_ids_of_keys(ARRAY(SELECT o.source_pk FROM open_records o))) AS lead_id
    UNION
    SELECT unnest(p_lead_ids)
  )
  SELECT c.lead_id, c.lead_date
  FROM canon.v_cabinet_lead_status_current c
  WHERE c.lead_id IN (SELECT r.lead_id FROM reachable r)
    AND c.limbo_stage = 'NO_IDENTITY'
    AND c.lead_source_pk IN (SELECT o.source_pk FROM open_records o)
$$;
COMMENT ON FUNCTION canon.actionable_no_identity_leads(integer[]) IS
  'NO_IDENTITY lead rows with an OPEN unmatched record a person must decide (AMBIGUOUS, CONFLICT, WEAK_MATCH_ONLY, SHARED_KEY, PROBABLE_MATCH) or complete (MISSING_KEYS); exact when p_lead_ids holds every row whose key or state may have changed since the last read.';

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

-- snapshot of sql/canon/canon.begin_lead_change.sql
-- canon.begin_lead_change: the end of the operator tools' prologue (ops.unlink_lead,
-- ops.resolve_lead, ops.ignore_lead), once their arguments are checked: takes the job lock
-- (canon.take_job_lock: one identity change at a time, never inside a pipeline run), then
-- reads the lead's rows as committed after it: how many rows have the key, and the first
-- one's (lowest id) values. An unknown lead (no row) is refused with P0002 unless
-- p_allow_unknown (a link is removable after its lead row disappeared upstream): then
-- lead_rows is 0 and the rest NULL.
CREATE OR REPLACE FUNCTION canon.begin_lead_change(
  p_lead_source_pk text,
  p_allow_unknown boolean DEFAULT false,
  OUT lead_rows integer,
  OUT lead_id integer,
  OUT lead_created_at timestamp,
  OUT lead_name text,
  OUT park_phone text,
  OUT plate text)
RETURNS record
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM canon.take_job_lock();

  SELECT count(*), min(l.id),
         (array_agg(l.lead_created_at ORDER BY l.id))[1],
         (array_agg(concat_ws(' ', l.first_name, l.middle_name, l.last_name) ORDER BY l.id))[1],
         (array_agg(l.park_phone ORDER BY l.id))[1],
         (array_agg(l.asset_plate_number ORDER BY l.id))[1]
  INTO lead_rows, lead_id, lead_created_at, lead_name, park_phone, plate
  FROM public.module_ct_cabinet_leads l
  WHERE canon.lead_source_pk(l.external_id, l.id) = p_lead_source_pk;
  IF lead_rows = 0 AND p_allow_unknown IS NOT TRUE THEN
    RAISE EXCEPTION 'unknown lead %: no row of public.module_ct_cabinet_leads has this lead_source_pk', quote_literal(p_lead_source_pk)
      USING ERRCODE = 'P0002';
  END IF;
END
$$;
COMMENT ON FUNCTION canon.begin_lead_change(text, boolean) IS
  'Operator tools'' prologue after the argument checks: takes the job lock, then counts the lead''s rows and returns the first one''s values; refuses an unknown lead (P0002) unless p_allow_unknown.';

-- snapshot of sql/canon/canon.blank_characters.sql
-- canon.blank_characters: the one list of the characters that count as blank at the ends
-- of a cabinet external_id (canon.lead_source_pk strips them; the import lets that
-- function decide). Unicode White_Space plus the invisible characters copy-paste and
-- spreadsheets leave at the ends of ids; docs/limbo-and-claims.md says why. IMMUTABLE
-- with no argument: the planner evaluates it once per query, so callers pay nothing per row.
-- In a database whose encoding is not UTF8 the characters it cannot hold are left out
-- (no value there can contain them).
CREATE OR REPLACE FUNCTION canon.blank_characters()
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_code_points integer[] := ARRAY[
    -- Unicode White_Space (PropList.txt): TAB, LF, VT, FF, CR, SPACE, NEXT LINE (NEL),
    -- NO-BREAK SPACE, OGHAM SPACE MARK, EN QUAD .. HAIR SPACE, LINE SEPARATOR, PARAGRAPH
    -- SEPARATOR, NARROW NO-BREAK SPACE, MEDIUM MATHEMATICAL SPACE, IDEOGRAPHIC SPACE
    x'0009', x'000A', x'000B', x'000C', x'000D', x'0020', x'0085', x'00A0', x'1680',
    x'2000', x'2001', x'2002', x'2003', x'2004', x'2005', x'2006', x'2007', x'2008', x'2009', x'200A',
    x'2028', x'2029', x'202F', x'205F', x'3000',
    -- invisible, not White_Space: MONGOLIAN VOWEL SEPARATOR (White_Space before Unicode
    -- 6.3), ZERO WIDTH SPACE, WORD JOINER, ZERO WIDTH NO-BREAK SPACE (a byte order mark)
    x'180E', x'200B', x'2060', x'FEFF']::integer[];
  v_code integer;
  v_blanks text := '';
BEGIN
  IF getdatabaseencoding() = 'UTF8' THEN
    FOREACH v_code IN ARRAY v_code_points LOOP
      v_blanks := v_blanks || chr(v_code);
    END LOOP;
    RETURN v_blanks;
  END IF;
  -- Other encodings: chr() would read the code point as a byte there; convert from UTF-8.
  FOREACH v_code IN ARRAY v_code_points LOOP
    BEGIN
      v_blanks := v_blanks || convert_from(
        CASE WHEN v_code < 128 THEN set_byte('\x00'::bytea, 0, v_code)
             WHEN v_code < 2048 THEN set_byte(set_byte('\x0000'::bytea, 0, 192 | (v_code >> 6)), 1, 128 | (v_code & 63))
             ELSE set_byte(set_byte(set_byte('\x000000'::bytea, 0, 224 | (v_code >> 12)), 1, 128 | ((v_code >> 6) & 63)), 2, 128 | (v_code & 63))
        END, 'UTF8');
    EXCEPTION WHEN untranslatable_character OR character_not_in_repertoire THEN
      NULL; -- not a character of this database's encoding
    END;
  END LOOP;
  RETURN v_blanks;
END
$$;
COMMENT ON FUNCTION canon.blank_characters() IS
  'The characters that are blank at the ends of a lead''s external_id: Unicode White_Space (U+0009-000D, 0020, 0085, 00A0, 1680, 2000-200A, 2028, 2029, 202F, 205F, 3000) plus U+180E, 200B, 2060, FEFF. Used by canon.lead_source_pk.';

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

-- snapshot of sql/canon/canon.business_today.sql
-- canon.business_today: "today" in the business time zone (setting business_timezone,
-- default America/Lima), never the server's. Every window, scope and alert uses it.
CREATE OR REPLACE FUNCTION canon.business_today()
RETURNS date
LANGUAGE sql
STABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT (now() AT TIME ZONE canon.setting('business_timezone'))::date
$$;
COMMENT ON FUNCTION canon.business_today() IS 'Current date in the business time zone (canon.settings.business_timezone).';

-- snapshot of sql/canon/canon.check_source_contract.sql
-- canon.check_source_contract: raises one error naming every contract violation
-- (SQLSTATE CL002), or returns the number of checked columns. Step 3 of every run.
CREATE OR REPLACE FUNCTION canon.check_source_contract()
RETURNS integer
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_problems text;
BEGIN
  SELECT string_agg(v.problem, '; ' ORDER BY v.table_name, v.column_name NULLS FIRST)
  INTO v_problems
  FROM canon.source_contract_violations() v;
  IF v_problems IS NOT NULL THEN
    RAISE EXCEPTION 'source contract violated: %', v_problems
      USING ERRCODE = 'CL002',
            HINT = 'The upstream tables must have the columns listed in canon.source_contract.';
  END IF;
  RETURN (SELECT count(*)::integer FROM canon.source_contract);
END
$$;
COMMENT ON FUNCTION canon.check_source_contract() IS 'Raises one error (SQLSTATE CL002) naming every missing table or column or incompatible type.';

-- snapshot of sql/canon/canon.clear_lead_state_marks.sql
-- canon.clear_lead_state_marks: removes the marks read by canon.take_lead_state_marks in
-- this transaction (same row or key and the same mark_seq), once their lead rows are
-- evaluated; a mark made again meanwhile (new mark_seq) stays for the next evaluation.
-- Returns the number of marks removed.
CREATE OR REPLACE FUNCTION canon.clear_lead_state_marks()
RETURNS integer
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_dirty integer;
  v_pending integer;
  v_paid integer;
BEGIN
  IF to_regclass('pg_temp.lead_state_marks') IS NULL THEN
    RETURN 0;
  END IF;
  DELETE FROM canon_internal.cabinet_lead_state_dirty d
  USING pg_temp.lead_state_marks m
  WHERE m.lead_source_pk IS NOT NULL AND NOT m.paid AND d.lead_source_pk = m.lead_source_pk AND d.mark_seq = m.mark_seq;
  GET DIAGNOSTICS v_dirty = ROW_COUNT;
  DELETE FROM canon_internal.cabinet_lead_state_paid_dirty d
  USING pg_temp.lead_state_marks m
  WHERE m.paid AND d.lead_source_pk = m.lead_source_pk AND d.mark_seq = m.mark_seq;
  GET DIAGNOSTICS v_paid = ROW_COUNT;
  DELETE FROM canon_internal.cabinet_lead_state_pending p
  USING pg_temp.lead_state_marks m
  WHERE m.lead_id IS NOT NULL AND p.lead_id = m.lead_id AND p.mark_seq = m.mark_seq;
  GET DIAGNOSTICS v_pending = ROW_COUNT;
  DROP TABLE pg_temp.lead_state_marks;
  RETURN v_dirty + v_pending + v_paid;
END
$$;
COMMENT ON FUNCTION canon.clear_lead_state_marks() IS
  'Removes exactly the lead state marks taken by canon.take_lead_state_marks in this transaction. Returns how many.';

-- snapshot of sql/canon/canon.count_lead_state_changes.sql
-- canon.count_lead_state_changes: statement-level trigger function on
-- canon_internal.cabinet_lead_state (INSERT, UPDATE, DELETE, transition tables old_rows /
-- new_rows; TRUNCATE). Keeps canon_internal.cabinet_lead_state_counts equal to the stored rows
-- counted by lead date, stage and flags (canon.v_cabinet_lead_state_counted: the same
-- grouping): each statement adds its new rows and subtracts its old ones, grouped (a few
-- hundred counters), so that the scope's figures of step 7, the snapshot's counts per lead
-- week and the weekly funnel cost what changed, not a pass over every stored lead (at 1M
-- leads two such passes were about 1 s of every backfill run).
CREATE OR REPLACE FUNCTION canon.count_lead_state_changes()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    DELETE FROM canon_internal.cabinet_lead_state_counts;
    RETURN NULL;
  END IF;
  IF TG_OP = 'INSERT' THEN
    INSERT INTO canon_internal.cabinet_lead_state_counts AS c (
      lead_date, limbo_stage, with_identity, with_driver, with_trips, with_rule, window_days,
      reached_m1, reached_m5, reached_m25, has_claim_m1, has_claim_m5, has_claim_m25,
      leads, trips, m1_amount, m5_amount, m25_amount, paid_claims, paid_amount)
    SELECT n.lead_date, n.limbo_stage, n.person_key IS NOT NULL, n.driver_id IS NOT NULL,
           n.trips_in_window > 0, n.window_days IS NOT NULL, coalesce(n.window_days, 0),
           n.reached_m1, n.reached_m5, n.reached_m25, n.has_claim_m1, n.has_claim_m5, n.has_claim_m25,
           count(*), sum(n.trips_in_window),
           coalesce(sum(n.m1_amount), 0), coalesce(sum(n.m5_amount), 0), coalesce(sum(n.m25_amount), 0),
           sum(n.paid_claims), sum(n.paid_amount)
    FROM new_rows n
    GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13
    ORDER BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13
    ON CONFLICT (lead_date, limbo_stage, with_identity, with_driver, with_trips, with_rule, window_days,
                 reached_m1, reached_m5, reached_m25, has_claim_m1, has_claim_m5, has_claim_m25)
      DO UPDATE SET leads = c.leads + excluded.leads, trips = c.trips + excluded.trips,
                    m1_amount = c.m1_amount + excluded.m1_amount, m5_amount = c.m5_amount + excluded.m5_amount,
                    m25_amount = c.m25_amount + excluded.m25_amount,
                    paid_claims = c.paid_claims + excluded.paid_claims, paid_amount = c.paid_amount + excluded.paid_amount;
  ELSIF TG_OP = 'UPDATE' THEN
    INSERT INTO canon_internal.cabinet_lead_state_counts AS c (
      lead_date, limbo_stage, with_identity, with_driver, with_trips, with_rule, window_days,
      reached_m1, reached_m5, reached_m25, has_claim_m1, has_claim_m5, has_claim_m25,
      leads, trips, m1_amount, m5_amount, m25_amount, paid_claims, paid_amount)
    SELECT x.lead_date, x.limbo_stage, x.with_identity, x.with_driver, x.with_trips, x.with_rule, x.window_days,
           x.reached_m1, x.reached_m5, x.reached_m25, x.has_claim_m1, x.has_claim_m5, x.has_claim_m25,
           sum(x.n), sum(x.n * x.trips), sum(x.n * x.m1_amount), sum(x.n * x.m5_amount), sum(x.n * x.m25_amount),
           sum(x.n * x.paid_claims), sum(x.n * x.paid_amount)
    FROM (
      SELECT o.lead_date, o.limbo_stage, o.person_key IS NOT NULL AS with_identity, o.driver_id IS NOT NULL AS with_driver,
             o.trips_in_window > 0 AS with_trips, o.window_days IS NOT NULL AS with_rule,
             coalesce(o.window_days, 0) AS window_days,
             o.reached_m1, o.reached_m5, o.reached_m25, o.has_claim_m1, o.has_claim_m5, o.has_claim_m25,
             o.trips_in_window AS trips, coalesce(o.m1_amount, 0) AS m1_amount, coalesce(o.m5_amount, 0) AS m5_amount,
             coalesce(o.m25_amount, 0) AS m25_amount, o.paid_claims, o.paid_amount, -1 AS n
      FROM old_rows o
      UNION ALL
      SELECT n.lead_date, n.limbo_stage, n.person_key IS NOT NULL, n.driver_id IS NOT NULL,
             n.trips_in_window > 0, n.window_days IS NOT NULL, coalesce(n.window_days, 0),
             n.reached_m1, n.reached_m5, n.reached_m25, n.has_claim_m1, n.has_claim_m5, n.has_claim_m25,
             n.trips_in_window, coalesce(n.m1_amount, 0), coalesce(n.m5_amount, 0), coalesce(n.m25_amount, 0),
             n.paid_claims, n.paid_amount, 1
      FROM new_rows n
    ) x
    GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13
    -- (a row that moved no counter but changed its trips, amounts or paid claims still changes the sums)
    HAVING sum(x.n) <> 0 OR sum(x.n * x.trips) <> 0 OR sum(x.n * x.m1_amount) <> 0
        OR sum(x.n * x.m5_amount) <> 0 OR sum(x.n * x.m25_amount) <> 0
        OR sum(x.n * x.paid_claims) <> 0 OR sum(x.n * x.paid_amount) <> 0
    ORDER BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13
    ON CONFLICT (lead_date, limbo_stage, with_identity, with_driver, with_trips, with_rule, window_days,
                 reached_m1, reached_m5, reached_m25, has_claim_m1, has_claim_m5, has_claim_m25)
      DO UPDATE SET leads = c.leads + excluded.leads, trips = c.trips + excluded.trips,
                    m1_amount = c.m1_amount + excluded.m1_amount, m5_amount = c.m5_amount + excluded.m5_amount,
                    m25_amount = c.m25_amount + excluded.m25_amount,
                    paid_claims = c.paid_claims + excluded.paid_claims, paid_amount = c.paid_amount + excluded.paid_amount;
    DELETE FROM canon_internal.cabinet_lead_state_counts c WHERE c.leads = 0;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO canon_internal.cabinet_lead_state_counts AS c (
      lead_date, limbo_stage, with_identity, with_driver, with_trips, with_rule, window_days,
      reached_m1, reached_m5, reached_m25, has_claim_m1, has_claim_m5, has_claim_m25,
      leads, trips, m1_amount, m5_amount, m25_amount, paid_claims, paid_amount)
    SELECT o.lead_date, o.limbo_stage, o.person_key IS NOT NULL, o.driver_id IS NOT NULL,
           o.trips_in_window > 0, o.window_days IS NOT NULL, coalesce(o.window_days, 0),
           o.reached_m1, o.reached_m5, o.reached_m25, o.has_claim_m1, o.has_claim_m5, o.has_claim_m25,
           -count(*), -sum(o.trips_in_window),
           -coalesce(sum(o.m1_amount), 0), -coalesce(sum(o.m5_amount), 0), -coalesce(sum(o.m25_amount), 0),
           -sum(o.paid_claims), -sum(o.paid_amount)
    FROM old_rows o
    GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13
    ORDER BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13
    ON CONFLICT (lead_date, limbo_stage, with_identity, with_driver, with_trips, with_rule, window_days,
                 reached_m1, reached_m5, reached_m25, has_claim_m1, has_claim_m5, has_claim_m25)
      DO UPDATE SET leads = c.leads + excluded.leads, trips = c.trips + excluded.trips,
                    m1_amount = c.m1_amount + excluded.m1_amount, m5_amount = c.m5_amount + excluded.m5_amount,
                    m25_amount = c.m25_amount + excluded.m25_amount,
                    paid_claims = c.paid_claims + excluded.paid_claims, paid_amount = c.paid_amount + excluded.paid_amount;
    DELETE FROM canon_internal.cabinet_lead_state_counts c WHERE c.leads = 0;
  END IF;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION canon.count_lead_state_changes() IS
  'Trigger on canon_internal.cabinet_lead_state: keeps canon_internal.cabinet_lead_state_counts equal to the stored rows counted by lead_date, limbo_stage and flags (canon.v_cabinet_lead_state_counted).';

-- snapshot of sql/canon/canon.count_name_token_changes.sql
-- canon.count_name_token_changes: statement-level trigger function on
-- canon_internal.driver_name_roles (INSERT, UPDATE, DELETE with transition tables new_rows /
-- old_rows; TRUNCATE). Keeps canon_internal.name_token_stats equal to the roles counted per token
-- (canon.v_name_token_stats): each statement adds its new rows' tokens and subtracts its
-- old rows' tokens, grouped per token, so a run pays for the drivers it re-indexed, never
-- for a pass over every driver. Counters in token order (bytewise, COLLATE "C": the
-- cheapest sort, the same for every writer): two writers never deadlock.
CREATE OR REPLACE FUNCTION canon.count_name_token_changes()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- a full index build sorts 3 to 4 tokens a driver: in memory, not on disk (4 MB default)
SET work_mem = '64MB'
AS $$
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    DELETE FROM canon_internal.name_token_stats;
    RETURN NULL;
  END IF;
  -- One branch per operation: a transition table the operation has not cannot be named.
  IF TG_OP = 'INSERT' THEN
    INSERT INTO canon_internal.name_token_stats AS c (token, as_given, as_surname)
    SELECT x.token, sum(x.g), sum(x.s)
    FROM (SELECT t.token COLLATE "C" AS token, 1 AS g, 0 AS s FROM new_rows n CROSS JOIN unnest(n.given_names) t (token)
          UNION ALL
          SELECT t.token, 0, 1 FROM new_rows n CROSS JOIN unnest(n.surnames) t (token)) x
    GROUP BY x.token
    ORDER BY x.token
    ON CONFLICT (token) DO UPDATE
      SET as_given = c.as_given + excluded.as_given, as_surname = c.as_surname + excluded.as_surname;
  ELSIF TG_OP = 'UPDATE' THEN
    INSERT INTO canon_internal.name_token_stats AS c (token, as_given, as_surname)
    SELECT x.token, sum(x.g), sum(x.s)
    FROM (SELECT t.token COLLATE "C" AS token, 1 AS g, 0 AS s FROM new_rows n CROSS JOIN unnest(n.given_names) t (token)
          UNION ALL
          SELECT t.token, 0, 1 FROM new_rows n CROSS JOIN unnest(n.surnames) t (token)
          UNION ALL
          SELECT t.token, -1, 0 FROM old_rows o CROSS JOIN unnest(o.given_names) t (token)
          UNION ALL
          SELECT t.token, 0, -1 FROM old_rows o CROSS JOIN unnest(o.surnames) t (token)) x
    GROUP BY x.token
    HAVING sum(x.g) <> 0 OR sum(x.s) <> 0
    ORDER BY x.token
    ON CONFLICT (token) DO UPDATE
      SET as_given = c.as_given + excluded.as_given, as_surname = c.as_surname + excluded.as_surname;
    DELETE FROM canon_internal.name_token_stats c WHERE c.as_given = 0 AND c.as_surname = 0;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO canon_internal.name_token_stats AS c (token, as_given, as_surname)
    SELECT x.token, -sum(x.g), -sum(x.s)
    FROM (SELECT t.token COLLATE "C" AS token, 1 AS g, 0 AS s FROM old_rows o CROSS JOIN unnest(o.given_names) t (token)
          UNION ALL
          SELECT t.token, 0, 1 FROM old_rows o CROSS JOIN unnest(o.surnames) t (token)) x
    GROUP BY x.token
    ORDER BY x.token
    ON CONFLICT (token) DO UPDATE
      SET as_given = c.as_given + excluded.as_given, as_surname = c.as_surname + excluded.as_surname;
    DELETE FROM canon_internal.name_token_stats c WHERE c.as_given = 0 AND c.as_surname = 0;
  END IF;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION canon.count_name_token_changes() IS
  'Statement trigger on canon_internal.driver_name_roles: adds and subtracts the changed rows'' tokens in canon_internal.name_token_stats (drivers typing each token as a given name / as a surname); a token no driver uses any more is removed.';

-- snapshot of sql/canon/canon.driver_index_drift.sql
-- canon.driver_index_drift: drivers (the newest row of each valid driver_id) not indexed
-- in canon_internal.driver_index, or indexed with other source values (hash); drivers written since
-- the last read are the next run's work. (Index rows of deleted drivers wait for the next
-- full refresh by design: the matcher checks that a candidate still exists.) Read by
-- ops.check_caches, repaired by ops.repair_caches.
CREATE OR REPLACE FUNCTION canon.driver_index_drift()
RETURNS TABLE (driver_id text, example text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
  WITH seen AS (
    SELECT canon.xmin_age_limit(s.seen_xmin) AS age_limit
    FROM canon_internal.source_scan_state s WHERE s.source_table = 'drivers'
  ),
  drivers AS (
    SELECT DISTINCT ON (d.driver_id)
           d.driver_id::text AS driver_id,
           canon.driver_source_hash(d.park_id, d.phone, d.license_normalized_number, d.license_number,
                                d.car_normalized_number, d.car_number, d.full_name, d.first_name,
                                d.middle_name, d.last_name, d.hire_date) AS source_hash
    FROM public.drivers d
    WHERE nullif(btrim(d.driver_id), '') IS NOT NULL AND length(d.driver_id) <= 200
    ORDER BY d.driver_id, coalesce(d.updated_at, d.created_at) DESC NULLS LAST
  )
  SELECT d.driver_id,
         format('driver %s: %s', d.driver_id,
                CASE WHEN i.driver_id IS NULL THEN 'not indexed' ELSE 'indexed with values that are not the driver''s' END)
  FROM drivers d
  LEFT JOIN canon_internal.driver_index i ON i.driver_id = d.driver_id
  CROSS JOIN seen se
  WHERE (i.driver_id IS NULL OR i.source_hash <> d.source_hash)
    AND se.age_limit IS NOT NULL
    AND NOT EXISTS (SELECT 1 FROM public.drivers w WHERE w.driver_id = d.driver_id AND age(w.xmin) <= se.age_limit)
$$;
COMMENT ON FUNCTION canon.driver_index_drift() IS
  'Drivers not indexed, or indexed with other source values than their newest row; drivers written since the last read excepted.';

-- snapshot of sql/canon/canon.driver_index_secondary_indexes.sql
-- canon.driver_index_secondary_indexes: the indexes of canon_internal.driver_index besides its
-- primary key, each with the statement that creates it, as
-- sql/canon_internal/canon_internal.driver_index.sql creates it (a test holds the two equal).
-- The first build of the index fills the empty table without them and creates them after the
-- rows (canon.suspend_driver_index_indexes, canon.restore_driver_index_indexes): a sort per
-- index instead of a million random inserts into each, and the GIN indexes' keys merged once.
CREATE OR REPLACE FUNCTION canon.driver_index_secondary_indexes()
RETURNS TABLE (index_name text, definition text)
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
  VALUES
    ('driver_index_indexed_at_idx',
     'CREATE INDEX driver_index_indexed_at_idx ON canon_internal.driver_index (indexed_at)'),
    ('driver_index_license_idx',
     'CREATE INDEX driver_index_license_idx ON canon_internal.driver_index (license_norm) WHERE license_norm IS NOT NULL'),
    ('driver_index_phone_idx',
     'CREATE INDEX driver_index_phone_idx ON canon_internal.driver_index (phone_norm) WHERE phone_norm IS NOT NULL'),
    ('driver_index_plate_idx',
     'CREATE INDEX driver_index_plate_idx ON canon_internal.driver_index (plate_norm) WHERE plate_norm IS NOT NULL'),
    ('driver_index_plate_edit_keys_idx',
     'CREATE INDEX driver_index_plate_edit_keys_idx ON canon_internal.driver_index USING gin (canon.plate_edit_hashes(plate_norm)) WHERE plate_norm IS NOT NULL'),
    ('driver_index_name_keys_idx',
     'CREATE INDEX driver_index_name_keys_idx ON canon_internal.driver_index USING gin (canon.name_phonetic_hashes(name_norm)) WHERE name_norm IS NOT NULL')
$$;
COMMENT ON FUNCTION canon.driver_index_secondary_indexes() IS
  'The indexes of canon_internal.driver_index besides its primary key, with the statements that create them: dropped for the first build of an empty index and created after its rows.';

-- snapshot of sql/canon/canon.driver_name_roles_live.sql
-- canon.driver_name_roles_live: the live definition of canon_internal.driver_name_roles, for the
-- given indexed drivers (NULL: all): the tokens of the given-name fields and of the
-- last-name field of the public.drivers row the index was built from (the row whose hash
-- is driver_index.source_hash, as canon.refresh_driver_index computes it; else, changed
-- upstream since the last run, the newest row). source_indexed: that row still exists, so
-- the roles must equal it. A function, not a view over public.drivers: a view would pin
-- the upstream table's columns (upstream could no longer drop or alter one); the view
-- canon.v_driver_name_roles reads it whole. Called by ops.check_invariants on a sample
-- and by ops.repair_name_roles on every driver.
CREATE OR REPLACE FUNCTION canon.driver_name_roles_live(p_driver_ids text[] DEFAULT NULL)
RETURNS TABLE (driver_id text, given_names text[], surnames text[], indexed_at timestamptz, source_indexed boolean)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT i.driver_id,
         canon.name_field_tokens(concat_ws(' ', s.first_name, s.middle_name)),
         canon.name_field_tokens(s.last_name),
         i.indexed_at,
         coalesce(s.is_indexed, false)
  -- Every driver, or the given ones probed by key (an = ANY over the whole index would
  -- compare each row with the whole list).
  FROM (SELECT x.driver_id, x.indexed_at, x.source_hash FROM canon_internal.driver_index x WHERE p_driver_ids IS NULL
        UNION ALL
        SELECT x.driver_id, x.indexed_at, x.source_hash
        FROM (SELECT DISTINCT u.id FROM unnest(p_driver_ids) u (id)) u
        JOIN canon_internal.driver_index x ON x.driver_id = u.id) i
  LEFT JOIN LATERAL (
    SELECT d.first_name, d.middle_name, d.last_name, x.is_indexed
    FROM public.drivers d
    -- The same hash as canon.refresh_driver_index (driver_index.source_hash).
    CROSS JOIN LATERAL (
      SELECT canon.driver_source_hash(d.park_id, d.phone, d.license_normalized_number, d.license_number,
                                d.car_normalized_number, d.car_number, d.full_name, d.first_name,
                                d.middle_name, d.last_name, d.hire_date) = i.source_hash AS is_indexed) x
    WHERE d.driver_id = i.driver_id
    ORDER BY x.is_indexed DESC, coalesce(d.updated_at, d.created_at) DESC NULLS LAST
    LIMIT 1
  ) s ON true
$$;
COMMENT ON FUNCTION canon.driver_name_roles_live(text[]) IS
  'Live definition of canon_internal.driver_name_roles for the given indexed drivers (NULL: all): field tokens of the public.drivers row the index holds (same source_hash), else of the newest; source_indexed says that row still exists.';

-- snapshot of sql/canon/canon.driver_odd_counts_drift.sql
-- canon.driver_odd_counts_drift: what the next run would count as odd driver timestamps
-- without reading every row (the versions tracked in canon_internal.driver_index_state.odd_versions
-- that are still there, and the versions written since the last read), against every row
-- counted now, at this moment's threshold. Nothing to check when the next run counts
-- every row anyway (no tracked versions, the table rewritten, the threshold moved back).
-- Read by ops.check_caches, repaired by ops.repair_caches (the next run counts every row).
CREATE OR REPLACE FUNCTION canon.driver_odd_counts_drift()
RETURNS TABLE (example text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
  WITH now_from AS ( -- none while the time zone is invalid (doctor says so: SETTING_INVALID)
    SELECT (now() AT TIME ZONE s.value) + interval '1 day' AS future_from
    FROM canon.settings s
    WHERE s.key = 'business_timezone' AND canon.setting_problem(s.value, s.value_type, s.min_value, s.max_value) IS NULL
  ),
  stored AS (
    SELECT s.odd_versions, s.odd_version_xmins, n.future_from, canon.xmin_age_limit(sc.seen_xmin) AS age_limit
    FROM canon_internal.driver_index_state s
    CROSS JOIN now_from n
    CROSS JOIN canon_internal.source_scan_state sc
    WHERE sc.source_table = 'drivers'
      AND s.odd_versions IS NOT NULL
      AND n.future_from >= s.odd_future_from
      AND s.odd_relfilenode = pg_relation_filenode('public.drivers'::regclass)
      AND canon.xmin_age_limit(sc.seen_xmin) IS NOT NULL
  ),
  counted AS (
    SELECT o.why, age(d.xmin) <= st.age_limit OR t.tid IS NOT NULL AS seen_by_next_run
    FROM stored st
    CROSS JOIN public.drivers d
    CROSS JOIN LATERAL (SELECT canon.driver_timestamp_oddity(d.updated_at, d.created_at, st.future_from) AS why) o
    LEFT JOIN unnest(st.odd_versions, st.odd_version_xmins) t (tid, x) ON t.tid = d.ctid AND t.x = d.xmin
    WHERE o.why IS NOT NULL
  ),
  totals AS (
    SELECT count(*) FILTER (WHERE c.why = 'FUTURE_TIMESTAMP' AND c.seen_by_next_run) AS next_future,
           count(*) FILTER (WHERE c.why = 'NO_TIMESTAMP' AND c.seen_by_next_run) AS next_untimed,
           count(*) FILTER (WHERE c.why = 'FUTURE_TIMESTAMP') AS future,
           count(*) FILTER (WHERE c.why = 'NO_TIMESTAMP') AS untimed
    FROM counted c
  )
  SELECT format('odd driver timestamps: the next run would count %s future and %s without timestamp, counted now %s and %s',
                t.next_future, t.next_untimed, t.future, t.untimed)
  FROM totals t
  WHERE EXISTS (SELECT 1 FROM stored)
    AND (t.next_future, t.next_untimed) IS DISTINCT FROM (t.future, t.untimed)
$$;
COMMENT ON FUNCTION canon.driver_odd_counts_drift() IS
  'The odd driver timestamps the next run would count from the tracked versions and the versions written since the last read, against every row counted now (ops.check_caches).';

-- snapshot of sql/canon/canon.driver_source_hash.sql
-- canon.driver_source_hash: the fingerprint of the source values a driver is indexed from
-- (canon_internal.driver_index.source_hash): a driver is re-normalised when it differs. The one
-- definition, used by canon.refresh_driver_index, the name roles (canon.sync_driver_name_roles,
-- canon.driver_name_roles_live) and the cache check canon.driver_index_drift. STABLE as
-- date::text is (DateStyle), so that it is inlined.
CREATE OR REPLACE FUNCTION canon.driver_source_hash(
  p_park_id text, p_phone text, p_license_normalized_number text, p_license_number text,
  p_car_normalized_number text, p_car_number text, p_full_name text, p_first_name text,
  p_middle_name text, p_last_name text, p_hire_date date)
RETURNS text
LANGUAGE sql
STABLE
PARALLEL SAFE
AS $$
  SELECT md5(concat_ws(E'\x1f', p_park_id, p_phone, p_license_normalized_number, p_license_number,
                       p_car_normalized_number, p_car_number, p_full_name, p_first_name, p_middle_name,
                       p_last_name, p_hire_date::text))
$$;
COMMENT ON FUNCTION canon.driver_source_hash(text, text, text, text, text, text, text, text, text, text, date) IS
  'md5 of the driver values its index row is computed from (canon_internal.driver_index.source_hash).';

-- snapshot of sql/canon/canon.driver_timestamp_oddity.sql
-- canon.driver_timestamp_oddity: what is odd in a driver row's timestamps against a
-- threshold (now in the business time zone plus a day): NO_TIMESTAMP (updated_at and
-- created_at both NULL), FUTURE_TIMESTAMP (either after the threshold), NULL otherwise. The
-- one definition that ops.v_drivers_odd_timestamps lists, canon.refresh_driver_index counts
-- and canon.driver_odd_counts_drift checks. Plain SQL without SET or STRICT: inlined.
CREATE OR REPLACE FUNCTION canon.driver_timestamp_oddity(p_updated_at timestamp, p_created_at timestamp, p_future_from timestamp)
RETURNS text
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
  SELECT CASE WHEN p_updated_at IS NULL AND p_created_at IS NULL THEN 'NO_TIMESTAMP'
              WHEN p_updated_at OPERATOR(pg_catalog.>) p_future_from
                OR p_created_at OPERATOR(pg_catalog.>) p_future_from THEN 'FUTURE_TIMESTAMP' END
$$;
COMMENT ON FUNCTION canon.driver_timestamp_oddity(timestamp, timestamp, timestamp) IS
  'NO_TIMESTAMP (both timestamps NULL), FUTURE_TIMESTAMP (either after p_future_from) or NULL: what ops.v_drivers_odd_timestamps lists and the driver index counts.';

-- snapshot of sql/canon/canon.enforce_claim_rules_consistent.sql
-- canon.enforce_claim_rules_consistent: trigger function (deferred, at commit) that keeps
-- canon.claim_rules unambiguous for every lead date, because the claim views and
-- canon.generate_cabinet_claims read one rule per milestone and one window per lead:
-- milestones are 1, 5 and 25 (the limbo view has a column for each); validity is
-- [valid_from, valid_to); a milestone's periods never overlap; rules valid on the same
-- day share one window_days and one currency.
CREATE OR REPLACE FUNCTION canon.enforce_claim_rules_consistent()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  r canon.claim_rules%ROWTYPE;
  v_other canon.claim_rules%ROWTYPE;
BEGIN
  -- The row as it is at commit (it may have been changed or deleted since).
  SELECT * INTO r FROM canon.claim_rules c WHERE c.milestone = NEW.milestone AND c.valid_from = NEW.valid_from;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  IF r.milestone NOT IN (1, 5, 25) THEN
    RAISE EXCEPTION 'claim rule for milestone % rejected: milestones are 1, 5 and 25 (ops.v_cabinet_leads_limbo has a column for each; a new milestone needs a migration of the claim views)', r.milestone
      USING ERRCODE = '23514';
  END IF;
  SELECT * INTO v_other
  FROM canon.claim_rules o
  WHERE (o.milestone, o.valid_from) <> (r.milestone, r.valid_from)
    AND o.valid_from < coalesce(r.valid_to, 'infinity'::date)
    AND r.valid_from < coalesce(o.valid_to, 'infinity'::date)
    AND (o.milestone = r.milestone OR o.window_days <> r.window_days OR o.currency <> r.currency)
  ORDER BY o.milestone, o.valid_from
  LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'claim rule (milestone %, valid from % to %) conflicts with rule (milestone %, valid from % to %)',
      r.milestone, r.valid_from, coalesce(r.valid_to::text, 'open'),
      v_other.milestone, v_other.valid_from, coalesce(v_other.valid_to::text, 'open')
      USING ERRCODE = '23514',
            DETAIL = CASE WHEN v_other.milestone = r.milestone
                          THEN 'Periods of one milestone must not overlap: close the old one (valid_to) before the new one starts.'
                          ELSE format('Rules valid on the same day must share window_days and currency (%s days %s vs %s days %s).',
                                      r.window_days, r.currency, v_other.window_days, v_other.currency) END;
  END IF;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION canon.enforce_claim_rules_consistent() IS
  'Constraint trigger on canon.claim_rules: milestones 1/5/25, no overlapping periods per milestone, one window_days and currency per day.';

-- snapshot of sql/canon/canon.enforce_lead_not_linked_and_open.sql
-- canon.enforce_lead_not_linked_and_open: deferred constraint trigger function. At
-- commit, a lead is never both linked and OPEN in canon.identity_unmatched.
CREATE OR REPLACE FUNCTION canon.enforce_lead_not_linked_and_open()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF NEW.source_table = 'module_ct_cabinet_leads'
     AND EXISTS (SELECT 1 FROM canon.identity_links l
                 WHERE l.source_table = NEW.source_table AND l.source_pk = NEW.source_pk)
     AND EXISTS (SELECT 1 FROM canon.identity_unmatched u
                 WHERE u.source_table = NEW.source_table AND u.source_pk = NEW.source_pk AND u.status = 'OPEN') THEN
    RAISE EXCEPTION 'lead % is both linked and OPEN in canon.identity_unmatched', NEW.source_pk
      USING ERRCODE = 'CL011';
  END IF;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION canon.enforce_lead_not_linked_and_open() IS 'Constraint trigger: a lead is never both linked and OPEN-unmatched (checked at commit).';

-- snapshot of sql/canon/canon.enforce_person_has_link.sql
-- canon.enforce_person_has_link: deferred constraint trigger function. At commit, a
-- person created or left behind must have at least one identity link: no orphan persons.
CREATE OR REPLACE FUNCTION canon.enforce_person_has_link()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_person uuid := CASE WHEN TG_TABLE_NAME = 'identity_registry' THEN NEW.person_key ELSE OLD.person_key END;
BEGIN
  IF EXISTS (SELECT 1 FROM canon.identity_registry p WHERE p.person_key = v_person)
     AND NOT EXISTS (SELECT 1 FROM canon.identity_links l WHERE l.person_key = v_person) THEN
    RAISE EXCEPTION 'orphan person %: a person must have at least one identity link', v_person
      USING ERRCODE = 'CL010';
  END IF;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION canon.enforce_person_has_link() IS 'Constraint trigger: no person in canon.identity_registry without a link (checked at commit).';

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

-- snapshot of sql/canon/canon.estimate_fs_m.sql
-- canon.estimate_fs_m: the m probabilities of the probabilistic tier estimated without labels,
-- by expectation-maximisation on the pairs the tier can link for the given lead rows
-- (Fellegi-Sunter, as Splink does; docs/matching.md, "Where the m and u come from"). The pairs
-- and their levels are the tier's own (canon.fs_pair_levels); u and the prior stay the start
-- version's. From the start version's m, each iteration is two set-based statements over all
-- pairs at once: E-step, every pair's match probability as the tier computes it with the
-- current m; M-step, a level's m = the matches' expected count at the level, plus half a pair,
-- over their expected count at the comparison (NAME_TOKEN per lead token, NAME_DRIVER_TOKEN
-- per driver token), so a level no match shows gets a small m, not 0. Stops after
-- p_max_iterations or when no m moves by p_epsilon. A comparison no pair shows keeps its
-- start m. Refuses (CL026) fewer than p_min_pairs pairs. Writes nothing (temporary tables
-- only); ops.estimate_fs_version writes a version from it.
CREATE OR REPLACE FUNCTION canon.estimate_fs_m(
  p_lead_ids integer[],
  p_version integer DEFAULT NULL,
  p_max_iterations integer DEFAULT 100,
  p_epsilon numeric DEFAULT 0.00001,
  p_min_pairs integer DEFAULT 1000)
RETURNS TABLE (
  comparison text,
  level text,
  m numeric,
  m_start numeric,
  u numeric,
  u_kind text,
  occurrences bigint,
  in_matches numeric,
  pairs integer,
  leads integer,
  matches numeric,
  iterations integer,
  max_change numeric,
  converged boolean
)
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET client_min_messages = warning
SET jit = off
AS $$
DECLARE
  v_version integer;
  v_prior_share float8;
  v_pairs integer;
  v_leads integer;
  v_prior_bits float8;
  v_matches float8;
  v_change float8;
  v_iter integer := 0;
BEGIN
  -- GUARD ------------------------------------------------------------------------------
  IF p_max_iterations IS NULL OR p_max_iterations < 1 THEN
    RAISE EXCEPTION 'estimate_fs_m: p_max_iterations must be 1 or more, got %', coalesce(p_max_iterations::text, 'NULL') USING ERRCODE = '22023';
  END IF;
  IF p_epsilon IS NULL OR p_epsilon <= 0 THEN
    RAISE EXCEPTION 'estimate_fs_m: p_epsilon must be above 0, got %', coalesce(p_epsilon::text, 'NULL') USING ERRCODE = '22023';
  END IF;
  SELECT fv.version, fv.prior_match_share INTO v_version, v_prior_share
  FROM canon.match_fs_versions fv
  WHERE fv.version = p_version OR (p_version IS NULL AND fv.active);
  IF NOT FOUND THEN
    RAISE EXCEPTION 'estimate_fs_m: no parameter version %', coalesce(p_version::text, '(no active version)') USING ERRCODE = 'P0002';
  END IF;

  -- THE PAIRS: one row per pair and level ------------------------------------------------
  DROP TABLE IF EXISTS pg_temp.fs_em_levels;
  CREATE TEMP TABLE fs_em_levels ON COMMIT DROP AS
  SELECT dense_rank() OVER (ORDER BY x.lead_id, x.driver_id)::integer AS pair_id, x.*
  FROM canon.fs_pair_levels(p_lead_ids, v_version) x;
  SELECT count(DISTINCT l.pair_id), count(DISTINCT l.lead_id) INTO v_pairs, v_leads FROM pg_temp.fs_em_levels l;
  IF v_pairs < coalesce(p_min_pairs, 0) THEN
    RAISE EXCEPTION 'estimate_fs_m: too few candidate pairs to estimate m: % pairs from % of the % lead rows given, at least % needed (p_min_pairs)',
      v_pairs, v_leads, coalesce(cardinality(p_lead_ids), 0), p_min_pairs
      USING ERRCODE = 'CL026', HINT = 'estimate on more leads (the tier''s leads of a longer period) or keep the m set by hand';
  END IF;
  CREATE INDEX ON pg_temp.fs_em_levels (pair_id);
  ANALYZE pg_temp.fs_em_levels;

  -- per pair: the prior (the version's, as the tier) plus the fixed -log2 u of its levels
  DROP TABLE IF EXISTS pg_temp.fs_em_pairs;
  CREATE TEMP TABLE fs_em_pairs ON COMMIT DROP AS
  SELECT l.pair_id,
         ln(v_prior_share / greatest(max(l.indexed_drivers), 1) / (1 - v_prior_share / greatest(max(l.indexed_drivers), 1))) / ln(2::float8)
           + sum(l.u_bits) AS fixed_bits
  FROM pg_temp.fs_em_levels l
  GROUP BY l.pair_id;

  -- the m being estimated, from the start version's; PARTNERED is counted, not weighed
  DROP TABLE IF EXISTS pg_temp.fs_em_m;
  CREATE TEMP TABLE fs_em_m ON COMMIT DROP AS
  SELECT l.comparison, l.level, l.m::float8 AS m, l.m AS m_start, l.u, l.u_kind, true AS weighed, NULL::float8 AS in_matches
  FROM canon.match_fs_levels l WHERE l.version = v_version
  UNION ALL
  SELECT 'NAME_DRIVER_TOKEN', 'PARTNERED', NULL, NULL, NULL, NULL, false, NULL;

  -- ITERATIONS: the E-step and the M-step in one statement --------------------------------
  LOOP
    v_iter := v_iter + 1;
    WITH posterior AS MATERIALIZED (
      SELECT p.pair_id,
             1 / (1 + power(2::float8, -greatest(least(p.fixed_bits + coalesce(s.m_bits, 0), 60), -60))) AS w
      FROM pg_temp.fs_em_pairs p
      LEFT JOIN (SELECT l.pair_id, sum(l.n * ln(cm.m)) / ln(2::float8) AS m_bits
                 FROM pg_temp.fs_em_levels l
                 JOIN pg_temp.fs_em_m cm ON cm.comparison = l.comparison AND cm.level = l.level AND cm.weighed
                 GROUP BY l.pair_id) s ON s.pair_id = p.pair_id
    ),
    expected AS (
      SELECT cm.comparison, cm.level, cm.m AS m_old, coalesce(x.in_matches, 0) AS in_matches,
             sum(coalesce(x.in_matches, 0)) OVER (PARTITION BY cm.comparison) AS comparison_total,
             count(*) OVER (PARTITION BY cm.comparison) AS comparison_levels,
             bool_or(x.in_matches IS NOT NULL) OVER (PARTITION BY cm.comparison) AS comparison_seen
      FROM pg_temp.fs_em_m cm
      LEFT JOIN (SELECT l.comparison, l.level, sum(po.w * l.n) AS in_matches
                 FROM pg_temp.fs_em_levels l
                 JOIN posterior po ON po.pair_id = l.pair_id
                 GROUP BY l.comparison, l.level) x ON x.comparison = cm.comparison AND x.level = cm.level
    ),
    moved AS (
      UPDATE pg_temp.fs_em_m cm
      SET m = CASE WHEN e.comparison_seen THEN (e.in_matches + 0.5) / (e.comparison_total + 0.5 * e.comparison_levels) ELSE e.m_old END,
          in_matches = e.in_matches
      FROM expected e
      WHERE e.comparison = cm.comparison AND e.level = cm.level
      RETURNING abs(cm.m - e.m_old) AS change
    )
    SELECT (SELECT max(mv.change) FROM moved mv), (SELECT sum(po.w) FROM posterior po)
    INTO v_change, v_matches;
    EXIT WHEN coalesce(v_change, 0) < p_epsilon OR v_iter >= p_max_iterations;
  END LOOP;

  RETURN QUERY
  SELECT cm.comparison, cm.level, round(cm.m::numeric, 7), cm.m_start, cm.u, cm.u_kind,
         coalesce((SELECT sum(l.n) FROM pg_temp.fs_em_levels l WHERE l.comparison = cm.comparison AND l.level = cm.level), 0)::bigint,
         round(cm.in_matches::numeric, 1), v_pairs, v_leads, round(v_matches::numeric, 1), v_iter,
         round(coalesce(v_change, 0)::numeric, 7), coalesce(v_change, 0) < p_epsilon
  FROM pg_temp.fs_em_m cm
  WHERE cm.weighed
  ORDER BY cm.comparison, cm.m_start DESC, cm.level;
END
$$;
COMMENT ON FUNCTION canon.estimate_fs_m(integer[], integer, integer, numeric, integer) IS
  'm of the probabilistic tier by expectation-maximisation (no labels) on the pairs the tier can link for the given lead rows (canon.fs_pair_levels): per level m, start m, u (fixed), occurrences, expected count among matches; pairs, leads, expected matches, iterations, last change, converged. Start, u and prior: p_version (NULL: the active one). Refuses fewer than p_min_pairs pairs (CL026). Writes nothing.';

-- snapshot of sql/canon/canon.estimate_fs_u.sql
-- canon.estimate_fs_u: the u probabilities of the probabilistic tier estimated from the live
-- bases, for a person writing a new parameter version (docs/matching.md, "Where the m and u
-- come from"): for p_sample random drivers, how many other drivers share their plate
-- exactly, by one confusion, by one other edit (PER_DRIVER, found through the deletion-key
-- index as the tier finds them); for p_sample random (lead, driver) pairs, the share in each
-- hire-date window; the share of drivers in and out of the target park. Reads only; the
-- name tokens need no estimate (their u is each token's share, read live).
CREATE OR REPLACE FUNCTION canon.estimate_fs_u(p_sample integer DEFAULT 2000)
RETURNS TABLE (comparison text, level text, u numeric, u_kind text, sample integer)
LANGUAGE sql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
  WITH drivers AS MATERIALIZED (
    SELECT d.driver_id, d.plate_norm, d.hire_date, d.park_id
    FROM canon_internal.driver_index d
    ORDER BY random()
    LIMIT p_sample
  ),
  near AS (
    SELECT s.driver_id, (canon.plate_comparison(s.plate_norm, o.plate_norm)).level AS level
    FROM drivers s
    JOIN LATERAL (
      SELECT o.plate_norm FROM canon_internal.driver_index o
      WHERE canon.plate_edit_keys(o.plate_norm) && canon.plate_edit_keys(s.plate_norm)
        AND o.plate_norm IS NOT NULL AND o.driver_id <> s.driver_id
    ) o ON true
    WHERE s.plate_norm IS NOT NULL
  ),
  plated AS (SELECT count(*) AS n FROM drivers WHERE plate_norm IS NOT NULL),
  leads AS MATERIALIZED (
    SELECT k.lead_date FROM canon_internal.lead_keys k WHERE k.lead_date IS NOT NULL ORDER BY random() LIMIT p_sample
  ),
  pairs AS (
    SELECT CASE WHEN isfinite(d.hire_date) AND isfinite(l.lead_date) THEN d.hire_date - l.lead_date END AS days
    FROM (SELECT lead_date, row_number() OVER () AS i FROM leads) l
    JOIN (SELECT hire_date, row_number() OVER () AS i FROM drivers WHERE hire_date IS NOT NULL) d ON d.i = l.i
  )
  SELECT 'PLATE', lv.level, round(coalesce(x.n, 0)::numeric / greatest(p.n, 1), 6), 'PER_DRIVER', p.n::integer
  FROM (VALUES ('EXACT'), ('CONFUSION'), ('ONE_EDIT')) lv (level)
  CROSS JOIN plated p
  LEFT JOIN (SELECT n.level, count(*) AS n FROM near n GROUP BY n.level) x ON x.level = lv.level
  UNION ALL
  SELECT 'HIRE_DATE', h.level, round(avg(CASE WHEN h.hit THEN 1 ELSE 0 END)::numeric, 6), 'PAIR', count(*)::integer
  FROM pairs pr
  CROSS JOIN LATERAL (VALUES
    ('NEAR', pr.days BETWEEN 0 AND 30),
    ('CLOSE', pr.days BETWEEN -30 AND 90 AND NOT pr.days BETWEEN 0 AND 30),
    ('YEAR', pr.days BETWEEN -365 AND 365 AND NOT pr.days BETWEEN -30 AND 90),
    ('FAR', NOT pr.days BETWEEN -365 AND 365)) h (level, hit)
  WHERE pr.days IS NOT NULL
  GROUP BY h.level
  UNION ALL
  SELECT 'PARK', pk.level, round(avg(CASE WHEN pk.hit THEN 1 ELSE 0 END)::numeric, 6), 'PAIR', count(*)::integer
  FROM drivers d
  CROSS JOIN LATERAL (VALUES
    ('TARGET', d.park_id IS NOT DISTINCT FROM canon.setting('target_park_id')),
    ('OTHER', d.park_id IS DISTINCT FROM canon.setting('target_park_id'))) pk (level, hit)
  GROUP BY pk.level
$$;
COMMENT ON FUNCTION canon.estimate_fs_u(integer) IS
  'u of the probabilistic tier estimated from the live bases (p_sample random drivers and lead-driver pairs): plate EXACT / CONFUSION / ONE_EDIT as other drivers per driver (PER_DRIVER), hire-date windows and park as shares (PAIR). Reads only; a person writes them into a new canon.match_fs_levels version.';

-- snapshot of sql/canon/canon.failpoint.sql
-- canon.failpoint: fault injection for tests and drills, a no-op in normal operation.
-- With the session setting cabinet.failpoint = '<point>' the run raises at that point;
-- with 'wait:<point>' it waits there until the advisory lock
-- (hashtext('cabinet_leads'), hashtext('failpoint')) is free, so that a test can hold
-- a run in the middle, observe it, kill it, or let it go.
CREATE OR REPLACE FUNCTION canon.failpoint(p_point text)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_setting text := current_setting('cabinet.failpoint', true);
BEGIN
  IF v_setting = p_point THEN
    RAISE EXCEPTION 'failpoint "%" triggered (session setting cabinet.failpoint)', p_point
      USING ERRCODE = 'CL099';
  ELSIF v_setting = 'wait:' || p_point THEN
    PERFORM pg_advisory_xact_lock_shared(hashtext('cabinet_leads'), hashtext('failpoint'));
  END IF;
END
$$;
COMMENT ON FUNCTION canon.failpoint(text) IS 'Test hook: SET cabinet.failpoint = ''<point>'' raises there, ''wait:<point>'' waits there on an advisory lock.';

-- snapshot of sql/canon/canon.flush_driver_index_keys.sql
-- canon.flush_driver_index_keys: merges the pending lists of the probabilistic tier's GIN
-- indexes on canon_internal.driver_index (plate deletion keys, name phonetic keys) into the
-- indexes. The indexes keep fast update on, so the drivers a run indexes cost an append
-- (2,000 drivers: 58 ms, 214 ms without), and the tier merges them once before it probes
-- (56 ms): a probe would otherwise scan the whole pending list (0.75 ms a lead with 7
-- pending pages, 32 ms with 4 MB). Called by canon.link_probabilistic. SECURITY DEFINER:
-- gin_clean_pending_list needs the index owner, and the job role does not own it.
CREATE OR REPLACE FUNCTION canon.flush_driver_index_keys()
RETURNS bigint
LANGUAGE sql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT gin_clean_pending_list('canon_internal.driver_index_plate_edit_keys_idx'::regclass)
       + gin_clean_pending_list('canon_internal.driver_index_name_keys_idx'::regclass)
$$;
COMMENT ON FUNCTION canon.flush_driver_index_keys() IS
  'Merges the pending lists of the driver index''s GIN indexes (plate deletion keys, name phonetic keys) before the probabilistic tier probes them; returns the pending pages merged. SECURITY DEFINER (the index owner''s right).';

-- snapshot of sql/canon/canon.flush_unmatched_key_indexes.sql
-- canon.flush_unmatched_key_indexes: merges the pending lists of the GIN indexes on the OPEN
-- unmatched leads the probabilistic tier sees (canon.identity_unmatched: plate deletion keys;
-- name phonetic keys when p_names) into the indexes. The indexes keep fast update on, so
-- the rows a run writes cost an append, and canon.mark_tier_retries_due merges them once
-- before it probes: each probe would otherwise read the whole pending list. The name index
-- is merged only when it is probed (its list waits otherwise). SECURITY DEFINER:
-- gin_clean_pending_list needs the index owner, and the job role does not own it.
CREATE OR REPLACE FUNCTION canon.flush_unmatched_key_indexes(p_names boolean)
RETURNS bigint
LANGUAGE sql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT gin_clean_pending_list('canon.identity_unmatched_plate_edit_keys_idx'::regclass)
       + CASE WHEN p_names THEN gin_clean_pending_list('canon.identity_unmatched_name_keys_idx'::regclass) ELSE 0 END
$$;
COMMENT ON FUNCTION canon.flush_unmatched_key_indexes(boolean) IS
  'Merges the pending lists of the GIN indexes on the OPEN unmatched leads the tier sees (plate deletion keys; name phonetic keys when p_names) before canon.mark_tier_retries_due probes them; returns the pending pages merged. SECURITY DEFINER (the index owner''s right).';

-- snapshot of sql/canon/canon.foreign_xids.sql
-- canon.foreign_xids: the transactions in progress now in other databases of the cluster
-- (their 32-bit xids, from pg_stat_activity, as of now: the statistics snapshot is cleared
-- first). Read just before a source table is read, so that canon.local_snapshot_xmin can
-- leave them out of what the next read must go back to: a transaction writes one database
-- only. One started between this call and the read's snapshot is not in the list (counted
-- as local: read again, never skipped).
CREATE OR REPLACE FUNCTION canon.foreign_xids()
RETURNS bigint[]
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM pg_stat_clear_snapshot();
  RETURN ARRAY(
    SELECT a.backend_xid::text::bigint
    FROM pg_stat_activity a
    WHERE a.backend_xid IS NOT NULL
      AND a.datid IS DISTINCT FROM (SELECT d.oid FROM pg_database d WHERE d.datname = current_database()));
END
$$;
COMMENT ON FUNCTION canon.foreign_xids() IS
  'xids (32-bit, as bigint) of the transactions in progress in other databases, as of now: for canon.local_snapshot_xmin.';

-- snapshot of sql/canon/canon.fs_blocked_pairs.sql
-- canon.fs_blocked_pairs: the probabilistic tier's blocking, the candidate drivers of the
-- given lead rows, each read by index: the plate block (a driver's plate equal or one edit
-- away, incl. swaps and O/0-like confusions: a shared canon.plate_edit_keys key, GIN
-- driver_index_plate_edit_keys_idx; kept when canon.fs_plate_block_pair) and the name block
-- (the lead's rare keys, canon.fs_rare_name_keys, each the drivers of canon.fs_name_block).
-- The one definition of which drivers the tier compares with a lead: read by
-- canon.probabilistic_candidates and, for the leads a driver change should have made due,
-- by canon.retry_due_drift (canon.mark_retries_due finds the same pairs from the drivers'
-- side).
CREATE OR REPLACE FUNCTION canon.fs_blocked_pairs(p_lead_ids integer[])
RETURNS TABLE (lead_id integer, driver_id text, blocks text[])
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
-- a probe per lead: the planner would rather hash the whole index
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
  WITH v AS MATERIALIZED (
    SELECT canon.fs_rare_token_max() AS rare_max, fv.name_block_max_drivers
    FROM canon.match_fs_versions fv
    WHERE fv.active
  ),
  batch AS (
    SELECT k.lead_id, k.plate_norm, k.name_norm
    FROM canon_internal.lead_keys k
    WHERE k.lead_id = ANY (p_lead_ids)
  ),
  -- Plate block: any shared deletion key (GIN, by hash), kept when one edit away at most and the
  -- names share a token.
  plate_block AS (
    SELECT b.lead_id, x.driver_id, 'PLATE' AS block
    FROM batch b
    CROSS JOIN LATERAL (
      SELECT d.driver_id
      FROM canon_internal.driver_index d
      WHERE canon.plate_edit_hashes(d.plate_norm) && canon.plate_edit_hashes(b.plate_norm)
        AND d.plate_norm IS NOT NULL
        AND canon.fs_plate_block_pair(b.plate_norm, b.name_norm, d.plate_norm, d.name_norm)
    ) x
    WHERE b.plate_norm IS NOT NULL
  ),
  -- Name block: the drivers of each of the leads' rare keys, looked up once per key.
  key_leads AS (
    SELECT r.key, array_agg(b.lead_id) AS lead_ids
    FROM batch b
    CROSS JOIN v
    CROSS JOIN LATERAL canon.fs_rare_name_keys(b.name_norm, v.rare_max) AS r (key)
    GROUP BY r.key
  ),
  name_block AS (
    SELECT l.lead_id, d.driver_id, 'NAME' AS block
    FROM key_leads kl
    CROSS JOIN v
    CROSS JOIN LATERAL unnest(canon.fs_name_block(kl.key, v.name_block_max_drivers)) AS d (driver_id)
    CROSS JOIN LATERAL unnest(kl.lead_ids) AS l (lead_id)
  )
  SELECT p.lead_id, p.driver_id, array_agg(DISTINCT p.block ORDER BY p.block)
  FROM (SELECT * FROM plate_block UNION ALL SELECT * FROM name_block) p
  GROUP BY p.lead_id, p.driver_id
$$;
COMMENT ON FUNCTION canon.fs_blocked_pairs(integer[]) IS
  'Probabilistic tier, blocking: candidate drivers of the given lead rows (plate equal or one edit away with a shared name token; rare name keys), with the blocks that found each.';

-- snapshot of sql/canon/canon.fs_indexed_drivers.sql
-- canon.fs_indexed_drivers: N, the number of indexed drivers the probabilistic tier weighs
-- against (the prior, the token shares, the rarity threshold): the planner's count of
-- canon_internal.driver_index from 100,000 rows up (close enough, and no pass), else counted.
-- Read by canon.probabilistic_candidates and canon.fs_rare_token_max.
CREATE OR REPLACE FUNCTION canon.fs_indexed_drivers()
RETURNS bigint
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT CASE WHEN c.reltuples >= 100000 THEN c.reltuples::bigint
              ELSE (SELECT count(*) FROM canon_internal.driver_index) END
  FROM pg_class c
  WHERE c.oid = 'canon_internal.driver_index'::regclass
$$;
COMMENT ON FUNCTION canon.fs_indexed_drivers() IS
  'Probabilistic tier: the number of indexed drivers N (planner''s count from 100,000 rows up, else counted).';

-- snapshot of sql/canon/canon.fs_name_block.sql
-- canon.fs_name_block: the drivers of one name key in the probabilistic tier's name block:
-- every indexed driver whose name has the phonetic key (GIN driver_index_name_keys_idx, on
-- canon.name_phonetic_hashes), or
-- NULL when more than p_max do (name_block_max_drivers: the key is not rare after all and
-- blocks nothing). Read by canon.fs_blocked_pairs and canon.mark_retries_due.
CREATE OR REPLACE FUNCTION canon.fs_name_block(p_key text, p_max integer)
RETURNS text[]
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT CASE WHEN count(*) <= p_max THEN coalesce(array_agg(y.driver_id), '{}') END
  FROM (SELECT d.driver_id
        FROM canon_internal.driver_index d
        WHERE canon.name_phonetic_hashes(d.name_norm) @> ARRAY[hashtextextended(p_key, 0)] AND d.name_norm IS NOT NULL
          AND p_key = ANY (canon.name_phonetic_keys(d.name_norm)) -- the key itself, not a hash shared by chance
        LIMIT p_max + 1) y
$$;
COMMENT ON FUNCTION canon.fs_name_block(text, integer) IS
  'Probabilistic tier: the indexed drivers whose name has this phonetic key, NULL when more than p_max (the key blocks nothing).';

-- snapshot of sql/canon/canon.fs_name_tokens.sql
-- canon.fs_name_tokens: the name comparison of the probabilistic tier for one pair: each
-- token's level (canon.name_token_levels) with its weight in bits, log2(m / u) of the
-- version's canon.match_fs_levels, where u of an agreeing token is its partner's share of
-- the drivers (canon_internal.name_token_stats: rarity weights, floor p_token_share_min).
-- Called per candidate pair by canon.probabilistic_candidates. Plain SQL without SET: inlined.
CREATE OR REPLACE FUNCTION canon.fs_name_tokens(p_lead text[], p_driver_name text, p_version integer, p_drivers bigint, p_token_share_min numeric)
RETURNS TABLE (side text, token text, partner text, level text, share double precision, count bigint, w double precision)
LANGUAGE sql
STABLE
AS $$
  SELECT nl.side, nl.token, nl.partner, nl.level, sh.share, coalesce(s.as_given + s.as_surname, 0),
         -- in double precision: a numeric logarithm costs more than the rest of the pair
         pg_catalog.ln(l.m::float8 / CASE l.u_kind WHEN 'TOKEN_SHARE' THEN LEAST(1, l.u::float8 * GREATEST(sh.share, p_token_share_min::float8))
                                          ELSE l.u::float8 END) / pg_catalog.ln(2::float8)
  FROM canon.name_token_levels(p_lead, pg_catalog.string_to_array(p_driver_name, ' ')) nl
  LEFT JOIN canon_internal.name_token_stats s ON s.token = nl.partner
  CROSS JOIN LATERAL (SELECT LEAST(1::float8, coalesce(s.as_given + s.as_surname, 0)::float8 / GREATEST(p_drivers, 1)) AS share) sh
  JOIN canon.match_fs_levels l
    ON l.version = p_version AND l.level = nl.level
   AND l.comparison = CASE nl.side WHEN 'LEAD' THEN 'NAME_TOKEN' ELSE 'NAME_DRIVER_TOKEN' END
$$;
COMMENT ON FUNCTION canon.fs_name_tokens(text[], text, integer, bigint, numeric) IS
  'Probabilistic tier, one pair''s names: per token side, token, partner, level, partner''s share of drivers and count, weight in bits (log2 m/u of the version''s canon.match_fs_levels; u of an agreeing token = its share).';

-- snapshot of sql/canon/canon.fs_pair_levels.sql
-- canon.fs_pair_levels: the comparison vectors of the pairs the probabilistic tier can link,
-- for the given lead rows, as canon.estimate_fs_m reads them: the tier's blocked candidate
-- pairs (canon.probabilistic_candidates) less those it never links (a deleted driver, a
-- "not this driver" label, relatives by the veto: they agree on surnames and car, a pattern
-- no m/u model tells from a match), one row per pair and level with how often the pair shows
-- it (name tokens: once per token) and the fixed part of its weight, -log2 u, as the tier
-- reads u for p_version (PER_DRIVER over the indexed drivers; an agreeing token's u from its
-- share: the token's weight minus log2 m). PARTNERED: the driver tokens the lead gives (no
-- weight; with MISSING, the count MISSING's m is a share of).
CREATE OR REPLACE FUNCTION canon.fs_pair_levels(p_lead_ids integer[], p_version integer)
RETURNS TABLE (lead_id integer, driver_id text, indexed_drivers bigint, comparison text, level text, n integer, u_bits double precision)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
  WITH v AS (
    SELECT fv.version, fv.token_share_min FROM canon.match_fs_versions fv WHERE fv.version = p_version
  ),
  pairs AS MATERIALIZED (
    SELECT c.lead_id, c.driver_id, c.plate_level, c.hire_level, c.park_level, c.indexed_drivers,
           string_to_array(k.name_norm, ' ') AS lt, d.name_norm AS driver_name
    FROM canon.probabilistic_candidates(p_lead_ids) c
    JOIN canon_internal.lead_keys k ON k.lead_id = c.lead_id
    JOIN canon_internal.driver_index d ON d.driver_id = c.driver_id
    WHERE NOT c.driver_deleted
      AND NOT EXISTS (SELECT 1 FROM canon.lead_driver_labels lb WHERE lb.lead_source_pk = c.lead_source_pk AND lb.driver_id = c.driver_id)
      AND canon.name_veto_of(c.lead_tokens_aligned, c.lead_id, NULL, string_to_array(d.name_norm, ' '), NULL, c.driver_id) IS NULL
  ),
  fields AS (
    SELECT p.lead_id, p.driver_id, p.indexed_drivers, l.comparison, l.level,
           -ln(CASE WHEN l.u_kind = 'PER_DRIVER' THEN least(1, l.u::float8 / greatest(p.indexed_drivers, 1))
                    ELSE l.u::float8 END) / ln(2::float8) AS u_bits
    FROM pairs p
    CROSS JOIN v
    CROSS JOIN LATERAL (VALUES ('PLATE', p.plate_level), ('HIRE_DATE', p.hire_level), ('PARK', p.park_level)) f (comparison, level)
    JOIN canon.match_fs_levels l ON l.version = v.version AND l.comparison = f.comparison AND l.level = f.level
  ),
  tokens AS (
    SELECT p.lead_id, p.driver_id, p.indexed_drivers, l.comparison, t.level,
           t.w - ln(l.m::float8) / ln(2::float8) AS u_bits
    FROM pairs p
    CROSS JOIN v
    CROSS JOIN LATERAL canon.fs_name_tokens(p.lt, p.driver_name, v.version, p.indexed_drivers, v.token_share_min) t
    JOIN canon.match_fs_levels l ON l.version = v.version AND l.level = t.level
     AND l.comparison = CASE t.side WHEN 'LEAD' THEN 'NAME_TOKEN' ELSE 'NAME_DRIVER_TOKEN' END
  ),
  -- two-letter fragments left out, as canon.name_token_levels does
  partnered AS (
    SELECT p.lead_id, p.driver_id, p.indexed_drivers, 'NAME_DRIVER_TOKEN' AS comparison, 'PARTNERED' AS level,
           dt.n - coalesce(mi.n, 0) AS n
    FROM pairs p
    CROSS JOIN LATERAL (SELECT count(*) AS n FROM unnest(string_to_array(p.driver_name, ' ')) AS x (token) WHERE length(x.token) <> 2) dt
    LEFT JOIN (SELECT t.lead_id, t.driver_id, count(*) AS n FROM tokens t WHERE t.level = 'MISSING' GROUP BY t.lead_id, t.driver_id) mi
      ON mi.lead_id = p.lead_id AND mi.driver_id = p.driver_id
  )
  SELECT x.lead_id, x.driver_id, x.indexed_drivers, x.comparison, x.level, count(*)::integer, sum(x.u_bits)
  FROM (SELECT * FROM fields UNION ALL SELECT * FROM tokens) x
  GROUP BY x.lead_id, x.driver_id, x.indexed_drivers, x.comparison, x.level
  UNION ALL
  SELECT pt.lead_id, pt.driver_id, pt.indexed_drivers, pt.comparison, pt.level, pt.n::integer, 0
  FROM partnered pt
  WHERE pt.n > 0
$$;
COMMENT ON FUNCTION canon.fs_pair_levels(integer[], integer) IS
  'Probabilistic tier, for canon.estimate_fs_m: per pair the tier can link (blocked, not vetoed, not labelled, driver present) of the given lead rows and per level, its count and -log2 u as the tier reads it for p_version; PARTNERED counts the driver tokens the lead gives.';

-- snapshot of sql/canon/canon.fs_plate_block_pair.sql
-- canon.fs_plate_block_pair: whether a lead and a driver found by the probabilistic tier's
-- plate block are a pair it compares: plates equal or one edit apart
-- (canon.plate_comparison), and the names share a token (a random plate one edit away is
-- another person's car: several per plate at 1M drivers). Read by canon.fs_blocked_pairs and
-- canon.mark_retries_due. Plain SQL without SET or STRICT: inlined (the token test first,
-- it is the cheap one).
CREATE OR REPLACE FUNCTION canon.fs_plate_block_pair(p_lead_plate text, p_lead_name text, p_driver_plate text, p_driver_name text)
RETURNS boolean
LANGUAGE sql
IMMUTABLE
AS $$
  SELECT pg_catalog.string_to_array(p_lead_name, ' ') OPERATOR(pg_catalog.&&) pg_catalog.string_to_array(p_driver_name, ' ')
         AND (canon.plate_comparison(p_lead_plate, p_driver_plate)).level OPERATOR(pg_catalog.<>) 'DIFFERENT'
$$;
COMMENT ON FUNCTION canon.fs_plate_block_pair(text, text, text, text) IS
  'Probabilistic tier: a plate-block pair is compared when the plates are equal or one edit apart and the names share a token (NULL: a plate or name unknown).';

-- snapshot of sql/canon/canon.fs_rare_name_keys.sql
-- canon.fs_rare_name_keys: the blocking keys of a lead's name in the probabilistic tier's
-- name block: the phonetic keys (canon.name_phonetic) of its tokens of 3 letters or more
-- typed by at most p_rare_max drivers (canon.fs_rare_token_max), or by none (a typo of a rare
-- name); none when p_rare_max is below 1. The one rarity rule of canon.fs_blocked_pairs and
-- canon.mark_retries_due. Plain SQL without SET or STRICT: inlined.
CREATE OR REPLACE FUNCTION canon.fs_rare_name_keys(p_name_norm text, p_rare_max numeric)
RETURNS SETOF text
LANGUAGE sql
STABLE
AS $$
  SELECT DISTINCT canon.name_phonetic(t.token)
  FROM pg_catalog.unnest(pg_catalog.string_to_array(p_name_norm, ' ')) AS t (token)
  LEFT JOIN canon_internal.name_token_stats s ON s.token = t.token
  WHERE pg_catalog.length(t.token) >= 3
    AND p_rare_max >= 1
    AND coalesce(s.as_given + s.as_surname, 0) <= p_rare_max
$$;
COMMENT ON FUNCTION canon.fs_rare_name_keys(text, numeric) IS
  'Probabilistic tier: phonetic keys of the rare tokens (3+ letters, typed by at most p_rare_max drivers or by none) of a normalised name; none when p_rare_max < 1.';

-- snapshot of sql/canon/canon.fs_rare_token_max.sql
-- canon.fs_rare_token_max: the most drivers a name token may be typed by and still be rare
-- in the probabilistic tier: the active version's rare_token_max_share of the indexed
-- drivers (canon.fs_indexed_drivers). Below 1 the base is too small to tell a rare name
-- (canon.fs_rare_name_keys then gives none). Read by canon.fs_blocked_pairs (the tier's name
-- block) and canon.mark_retries_due (which leads a changed driver makes due).
CREATE OR REPLACE FUNCTION canon.fs_rare_token_max()
RETURNS numeric
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT fv.rare_token_max_share * canon.fs_indexed_drivers()
  FROM canon.match_fs_versions fv
  WHERE fv.active
$$;
COMMENT ON FUNCTION canon.fs_rare_token_max() IS
  'Probabilistic tier: a name token typed by at most this many drivers is rare (active version''s rare_token_max_share x indexed drivers; below 1: none is).';

-- snapshot of sql/canon/canon.funnel_week_counts_of.sql
-- canon.funnel_week_counts_of: the weekly funnel's counts (ops.v_cabinet_14d_funnel_weekly)
-- without a pass over every lead, when p_lead_ids holds every lead row whose stored state
-- may not be current (canon.lead_ids_maybe_not_current): the counters of the stored state
-- (canon_internal.cabinet_lead_state_counts) with the rows set apart taken off and counted
-- as the views show them. Set apart: the given rows whose stored state is not current
-- (canon.lead_ids_not_current; shown live, one canon.lead_status_live each), the stored
-- rows sharing a lead key (key_rows > 1: a shared key's claims count once, from the row
-- ops.v_cabinet_claims_expected_14d chooses). Every other row is a current stored row
-- alone on its key: its claims are its milestones with a threshold, present when
-- has_claim_m* says so (a claim written or deleted marks its key dirty), paid as
-- paid_claims and paid_amount say, unless a claim of its key was paid, unpaid or
-- re-amounted since (canon_internal.cabinet_lead_state_paid_dirty): then its paid claims
-- are read now (the definition of canon.v_cabinet_lead_status's paid_claims). Called by
-- ops.funnel_week_counts; test/sql/ops.funnel_week_counts.test.ts compares it with the views.
CREATE OR REPLACE FUNCTION canon.funnel_week_counts_of(p_lead_ids integer[])
RETURNS TABLE (
  week_start             date,
  leads                  bigint,
  leads_with_identity    bigint,
  leads_with_driver      bigint,
  leads_with_trips_14d   bigint,
  leads_window_open      bigint,
  reached_m1_14d         bigint,
  reached_m5_14d         bigint,
  reached_m25_14d        bigint,
  trips_14d              numeric,
  claims_expected        bigint,
  claims_expected_amount numeric,
  claims_present         bigint,
  claims_present_amount  numeric,
  claims_paid            bigint,
  claims_paid_amount     numeric,
  limbo_no_identity      bigint,
  limbo_no_driver        bigint,
  limbo_no_trips_14d     bigint,
  limbo_trips_no_claim   bigint,
  limbo_ok               bigint
)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
  WITH not_current AS MATERIALIZED (
    SELECT n.lead_id FROM canon.lead_ids_not_current(p_lead_ids) n
  ),
  apart AS MATERIALIZED (
    SELECT n.lead_id FROM not_current n
    UNION
    SELECT s.lead_id FROM canon_internal.cabinet_lead_state s WHERE s.key_rows > 1
  ),
  -- The stored rows counted from the counters whose paid claims changed since: their
  -- stored paid figures off, their paid claims now on.
  paid_marked AS MATERIALIZED (
    SELECT s.lead_source_pk, s.lead_date, s.paid_claims, s.paid_amount,
           s.m1_trips_threshold, s.m5_trips_threshold, s.m25_trips_threshold
    FROM canon_internal.cabinet_lead_state_paid_dirty d
    JOIN canon_internal.cabinet_lead_state s ON s.lead_source_pk = d.lead_source_pk
    WHERE NOT EXISTS (SELECT 1 FROM apart a WHERE a.lead_id = s.lead_id)
  ),
  paid_now AS (
    SELECT p.lead_date, -p.paid_claims::bigint AS paid_claims, -p.paid_amount AS paid_amount
    FROM paid_marked p
    UNION ALL
    SELECT p.lead_date, 1, c.amount_expected
    FROM paid_marked p
    JOIN canon.claims_yango_cabinet_14d c ON c.lead_source_pk = p.lead_source_pk
    WHERE c.status = 'paid'
      AND CASE c.milestone WHEN 1 THEN p.m1_trips_threshold WHEN 5 THEN p.m5_trips_threshold
                           WHEN 25 THEN p.m25_trips_threshold END IS NOT NULL
  ),
  -- The rows set apart as the views show them: live when not current, else stored.
  shown AS MATERIALIZED (
    SELECT v.lead_id, v.lead_source_pk, v.lead_date, v.person_key, v.driver_id, v.window_days, v.trips_in_window,
           v.m1_trips_threshold, v.m1_amount, v.reached_m1, v.m5_trips_threshold, v.m5_amount, v.reached_m5,
           v.m25_trips_threshold, v.m25_amount, v.reached_m25, v.has_claim_m1, v.has_claim_m5, v.has_claim_m25,
           v.limbo_stage, v.key_rows
    FROM not_current n
    CROSS JOIN LATERAL canon.lead_status_live(n.lead_id) v
    UNION ALL
    SELECT s.lead_id, s.lead_source_pk, s.lead_date, s.person_key, s.driver_id, s.window_days, s.trips_in_window,
           s.m1_trips_threshold, s.m1_amount, s.reached_m1, s.m5_trips_threshold, s.m5_amount, s.reached_m5,
           s.m25_trips_threshold, s.m25_amount, s.reached_m25, s.has_claim_m1, s.has_claim_m5, s.has_claim_m25,
           s.limbo_stage, s.key_rows
    FROM apart a
    JOIN canon_internal.cabinet_lead_state s ON s.lead_id = a.lead_id
    WHERE a.lead_id NOT IN (SELECT n.lead_id FROM not_current n)
  ),
  -- Lead rows in the counters' shape, signed: the counters, less the stored rows set
  -- apart, plus the rows shown (whose claims are counted per key below, not by flags).
  counted AS (
    SELECT c.lead_date, c.limbo_stage, c.with_identity, c.with_driver, c.with_trips, c.window_days,
           c.reached_m1, c.reached_m5, c.reached_m25, c.has_claim_m1, c.has_claim_m5, c.has_claim_m25,
           c.leads, c.trips, c.m1_amount, c.m5_amount, c.m25_amount, c.paid_claims, c.paid_amount, false AS shown
    FROM canon_internal.cabinet_lead_state_counts c
    UNION ALL
    SELECT s.lead_date, s.limbo_stage, s.person_key IS NOT NULL, s.driver_id IS NOT NULL, s.trips_in_window > 0,
           coalesce(s.window_days, 0), s.reached_m1, s.reached_m5, s.reached_m25,
           s.has_claim_m1, s.has_claim_m5, s.has_claim_m25,
           -1, -s.trips_in_window, -coalesce(s.m1_amount, 0), -coalesce(s.m5_amount, 0), -coalesce(s.m25_amount, 0),
           -s.paid_claims, -s.paid_amount, false
    FROM apart a
    JOIN canon_internal.cabinet_lead_state s ON s.lead_id = a.lead_id
    UNION ALL
    SELECT h.lead_date, h.limbo_stage, h.person_key IS NOT NULL, h.driver_id IS NOT NULL, h.trips_in_window > 0,
           coalesce(h.window_days, 0), h.reached_m1, h.reached_m5, h.reached_m25,
           h.has_claim_m1, h.has_claim_m5, h.has_claim_m25,
           1, h.trips_in_window, coalesce(h.m1_amount, 0), coalesce(h.m5_amount, 0), coalesce(h.m25_amount, 0),
           0, 0, true
    FROM shown h
  ),
  -- The claims of the rows shown: one row per key and milestone with a threshold, a
  -- shared key's from its earliest row that reached it (else its earliest row), as
  -- ops.v_cabinet_claims_expected_14d chooses; with the claim present now.
  expected AS (
    SELECT h.lead_date, h.amount, h.reached, cl.status AS claim_status, cl.amount_expected AS claim_amount
    FROM (
      SELECT h.lead_source_pk, h.lead_date, m.milestone, m.amount, m.reached
      FROM shown h
      CROSS JOIN LATERAL canon.milestone_rows(h.m1_trips_threshold, h.m1_amount, h.reached_m1,
                                              h.m5_trips_threshold, h.m5_amount, h.reached_m5,
                                              h.m25_trips_threshold, h.m25_amount, h.reached_m25) m
      WHERE m.trips_threshold IS NOT NULL
        AND h.key_rows = 1
      UNION ALL
      (SELECT DISTINCT ON (h.lead_source_pk, m.milestone) h.lead_source_pk, h.lead_date, m.milestone, m.amount, m.reached
       FROM shown h
       CROSS JOIN LATERAL canon.milestone_rows(h.m1_trips_threshold, h.m1_amount, h.reached_m1,
                                               h.m5_trips_threshold, h.m5_amount, h.reached_m5,
                                               h.m25_trips_threshold, h.m25_amount, h.reached_m25) m
       WHERE m.trips_threshold IS NOT NULL
         AND h.key_rows > 1
       ORDER BY h.lead_source_pk, m.milestone, m.reached DESC, h.lead_date, h.lead_id)
    ) h
    LEFT JOIN canon.claims_yango_cabinet_14d cl
      ON cl.lead_source_pk = h.lead_source_pk
     AND cl.milestone = h.milestone
  ),
  parts AS (
    -- As canon.v_cabinet_lead_chain defines them: a window ends at lead_date + window_days
    -- (window_days 0: no rule, no window), and a milestone reached has a threshold (an
    -- expected claim).
    SELECT date_trunc('week', x.lead_date::timestamp)::date AS week_start,
           sum(x.leads) AS leads,
           coalesce(sum(x.leads) FILTER (WHERE x.with_identity), 0) AS leads_with_identity,
           coalesce(sum(x.leads) FILTER (WHERE x.with_driver), 0) AS leads_with_driver,
           coalesce(sum(x.leads) FILTER (WHERE x.with_trips), 0) AS leads_with_trips_14d,
           coalesce(sum(x.leads) FILTER (WHERE x.window_days > 0 AND x.lead_date + x.window_days > (SELECT canon.business_today())), 0) AS leads_window_open,
           coalesce(sum(x.leads) FILTER (WHERE x.reached_m1), 0) AS reached_m1_14d,
           coalesce(sum(x.leads) FILTER (WHERE x.reached_m5), 0) AS reached_m5_14d,
           coalesce(sum(x.leads) FILTER (WHERE x.reached_m25), 0) AS reached_m25_14d,
           sum(x.trips) AS trips_14d,
           coalesce(sum(x.leads * (x.reached_m1::int + x.reached_m5::int + x.reached_m25::int)) FILTER (WHERE NOT x.shown), 0) AS claims_expected,
           coalesce(sum(CASE WHEN x.reached_m1 THEN x.m1_amount ELSE 0 END + CASE WHEN x.reached_m5 THEN x.m5_amount ELSE 0 END
                        + CASE WHEN x.reached_m25 THEN x.m25_amount ELSE 0 END) FILTER (WHERE NOT x.shown), 0) AS claims_expected_amount,
           coalesce(sum(x.leads * ((x.reached_m1 AND x.has_claim_m1)::int + (x.reached_m5 AND x.has_claim_m5)::int
                                   + (x.reached_m25 AND x.has_claim_m25)::int)) FILTER (WHERE NOT x.shown), 0) AS claims_present,
           coalesce(sum(CASE WHEN x.reached_m1 AND x.has_claim_m1 THEN x.m1_amount ELSE 0 END
                        + CASE WHEN x.reached_m5 AND x.has_claim_m5 THEN x.m5_amount ELSE 0 END
                        + CASE WHEN x.reached_m25 AND x.has_claim_m25 THEN x.m25_amount ELSE 0 END) FILTER (WHERE NOT x.shown), 0) AS claims_present_amount,
           coalesce(sum(x.paid_claims) FILTER (WHERE NOT x.shown), 0) AS claims_paid,
           coalesce(sum(x.paid_amount) FILTER (WHERE NOT x.shown), 0) AS claims_paid_amount,
           coalesce(sum(x.leads) FILTER (WHERE x.limbo_stage = 'NO_IDENTITY'), 0) AS limbo_no_identity,
           coalesce(sum(x.leads) FILTER (WHERE x.limbo_stage = 'NO_DRIVER'), 0) AS limbo_no_driver,
           coalesce(sum(x.leads) FILTER (WHERE x.limbo_stage = 'NO_TRIPS_14D'), 0) AS limbo_no_trips_14d,
           coalesce(sum(x.leads) FILTER (WHERE x.limbo_stage = 'TRIPS_NO_CLAIM'), 0) AS limbo_trips_no_claim,
           coalesce(sum(x.leads) FILTER (WHERE x.limbo_stage = 'OK'), 0) AS limbo_ok
    FROM counted x
    GROUP BY 1
    UNION ALL
    SELECT date_trunc('week', e.lead_date::timestamp)::date,
           0, 0, 0, 0, 0, 0, 0, 0, 0,
           count(*) FILTER (WHERE e.reached),
           coalesce(sum(e.amount) FILTER (WHERE e.reached), 0),
           count(*) FILTER (WHERE e.reached AND e.claim_status IS NOT NULL),
           coalesce(sum(e.amount) FILTER (WHERE e.reached AND e.claim_status IS NOT NULL), 0),
           count(*) FILTER (WHERE e.claim_status = 'paid'),
           coalesce(sum(e.claim_amount) FILTER (WHERE e.claim_status = 'paid'), 0),
           0, 0, 0, 0, 0
    FROM expected e
    GROUP BY 1
    UNION ALL
    SELECT date_trunc('week', p.lead_date::timestamp)::date,
           0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
           sum(p.paid_claims), sum(p.paid_amount),
           0, 0, 0, 0, 0
    FROM paid_now p
    GROUP BY 1
  )
  SELECT p.week_start,
         sum(p.leads)::bigint, sum(p.leads_with_identity)::bigint, sum(p.leads_with_driver)::bigint,
         sum(p.leads_with_trips_14d)::bigint, sum(p.leads_window_open)::bigint, sum(p.reached_m1_14d)::bigint,
         sum(p.reached_m5_14d)::bigint, sum(p.reached_m25_14d)::bigint, sum(p.trips_14d),
         sum(p.claims_expected)::bigint, sum(p.claims_expected_amount), sum(p.claims_present)::bigint,
         sum(p.claims_present_amount), sum(p.claims_paid)::bigint, sum(p.claims_paid_amount),
         sum(p.limbo_no_identity)::bigint, sum(p.limbo_no_driver)::bigint, sum(p.limbo_no_trips_14d)::bigint,
         sum(p.limbo_trips_no_claim)::bigint, sum(p.limbo_ok)::bigint
  FROM parts p
  GROUP BY p.week_start
  HAVING sum(p.leads) <> 0
  ORDER BY p.week_start
$$;
COMMENT ON FUNCTION canon.funnel_week_counts_of(integer[]) IS
  'The weekly funnel''s counts per lead week from the stored state''s counters, with the given rows whose state is not current and the rows sharing a key counted as the views show them, and the paid claims of keys marked paid read now; exact when the given rows include every row whose stored state may not be current.';

-- snapshot of sql/canon/canon.generate_cabinet_claims.sql
-- canon.generate_cabinet_claims: pipeline step 7 (SPEC 7). Brings the lead state
-- (canon_internal.cabinet_lead_state) up to date, then inserts, as 'generated', every missing
-- claim (lead_source_pk, milestone) whose milestone a lead of the scope
-- (lead_date >= p_scope_from, not only this run's batch) reached in
-- [lead_date, lead_date + window_days), with the rule's amount; existing claims (paid,
-- rejected, any status) are never touched. Its steps:
--   7a canon.schedule_lead_state   which lead rows to evaluate again, and why
--   7b canon.refresh_lead_state    evaluate them
--   7c canon.insert_missing_claims the missing claims, decided on the live chain
--   7d canon.move_claimed_leads_on the claimed rows' state follows their claims
--   7e marks committed meanwhile evaluated, the marks taken cleared, the figures
-- A sweep (every lead of the scope) runs on the first run of each business day, when
-- called by hand (p_run_id NULL: the lead rows written since the last read are keyed
-- first, as step 5 does) and after the claim rules changed. Returns step stats, including
-- lead_state {mode, trips, reasons, evaluated, written, removed}.
CREATE OR REPLACE FUNCTION canon.generate_cabinet_claims(p_run_id bigint, p_scope_from date, p_only_limbo boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET client_min_messages = warning
SET jit = off
AS $$
DECLARE
  v_today date := canon.business_today();
  v_meta canon_internal.cabinet_lead_state_meta%ROWTYPE;
  v_sweep boolean;
  v_keys jsonb;
  v_schedule jsonb;
  v_ids integer[];
  v_again_ids integer[];
  v_state jsonb;
  v_state2 jsonb;
  v_claimed_written integer;
  v_generated jsonb;
  v_existing jsonb;
  v_scope jsonb;
  v_stats jsonb;
BEGIN
  IF p_scope_from IS NULL THEN
    RAISE EXCEPTION 'canon.generate_cabinet_claims: p_scope_from is NULL: expected the first lead date of the scope'
      USING ERRCODE = '22023';
  END IF;
  SELECT * INTO v_meta FROM canon_internal.cabinet_lead_state_meta FOR UPDATE;
  v_sweep := p_run_id IS NULL OR v_meta.full_refresh_needed OR v_meta.last_sweep_date IS DISTINCT FROM v_today;
  IF p_run_id IS NULL THEN
    v_keys := canon.key_changed_leads(NULL);
  END IF;

  -- 7a, 7b: THE LEAD STATE ---------------------------------------------------------------
  v_schedule := canon.schedule_lead_state(p_run_id, p_scope_from, p_only_limbo, v_sweep);
  v_ids := ARRAY(SELECT t.lead_id FROM pg_temp.lead_state_todo t ORDER BY t.lead_id);
  v_state := canon.refresh_lead_state(p_run_id, v_ids);
  IF (v_state->>'written')::integer >= 10000 THEN
    ANALYZE canon_internal.cabinet_lead_state;
  END IF;

  -- 7c, 7d: THE CLAIMS -------------------------------------------------------------------
  -- Claims of the scope present before (never touched), by status.
  SELECT coalesce(jsonb_object_agg(e.status, e.n), '{}'::jsonb) INTO v_existing
  FROM (SELECT cl.status, count(*) AS n
        FROM canon.claims_yango_cabinet_14d cl
        WHERE cl.lead_date >= p_scope_from
        GROUP BY cl.status) e;
  -- Stored rows with a claim missing that 7b did not evaluate (a claim out of scope then,
  -- one that failed): evaluated again after the claims.
  v_again_ids := ARRAY(
    SELECT s.lead_id FROM canon_internal.cabinet_lead_state s
    WHERE s.limbo_stage = 'TRIPS_NO_CLAIM' AND s.lead_date >= p_scope_from
      AND NOT EXISTS (SELECT 1 FROM pg_temp.lead_state_todo t WHERE t.lead_id = s.lead_id));
  v_generated := canon.insert_missing_claims(p_run_id, p_scope_from);
  v_claimed_written := canon.move_claimed_leads_on(p_run_id,
    ARRAY(SELECT jsonb_array_elements_text(v_generated->'claimed_keys')));

  -- 7e: MARKS AND BOOKKEEPING -------------------------------------------------------------
  -- Marks committed by others while this step ran (visible now) are evaluated too; then
  -- the marks taken are removed.
  v_state2 := canon.refresh_lead_state(p_run_id, v_again_ids || canon.take_lead_state_marks());
  PERFORM canon.clear_lead_state_marks();
  UPDATE canon_internal.cabinet_lead_state_meta
  SET last_sweep_date = CASE WHEN v_sweep THEN v_today ELSE last_sweep_date END,
      last_sweep_at = CASE WHEN v_sweep THEN now() ELSE last_sweep_at END,
      full_refresh_needed = false,
      updated_at = now();

  -- FIGURES OF THE SCOPE -------------------------------------------------------------------
  -- From the stored rows' counters (canon_internal.cabinet_lead_state_counts,
  -- kept by a trigger as the state changes): a few hundred rows, whatever the scope holds.
  SELECT jsonb_build_object(
           'leads', coalesce(sum(c.leads), 0),
           'with_identity', coalesce(sum(c.leads) FILTER (WHERE c.with_identity), 0),
           'with_driver', coalesce(sum(c.leads) FILTER (WHERE c.with_driver), 0),
           'with_trips', coalesce(sum(c.leads) FILTER (WHERE c.with_trips), 0),
           'without_rule', coalesce(sum(c.leads) FILTER (WHERE NOT c.with_rule), 0),
           'trips_no_claim', coalesce(sum(c.leads) FILTER (WHERE c.limbo_stage = 'TRIPS_NO_CLAIM'), 0))
  INTO v_scope
  FROM canon_internal.cabinet_lead_state_counts c
  WHERE c.lead_date >= p_scope_from;

  WITH
  -- Per key (sorts the scope): on sweeps only; NULL in incremental runs.
  scope_keys AS (
    SELECT count(DISTINCT s.lead_source_pk) AS lead_keys,
           count(DISTINCT s.lead_source_pk) FILTER (WHERE s.reached_m1)
             + count(DISTINCT s.lead_source_pk) FILTER (WHERE s.reached_m5)
             + count(DISTINCT s.lead_source_pk) FILTER (WHERE s.reached_m25) AS milestones_reached
    FROM canon_internal.cabinet_lead_state s
    WHERE v_sweep AND s.lead_date >= p_scope_from
  ),
  -- (the evaluated ids joined, each probed by key: "lead_id = ANY (v_ids)" was planned as
  -- a scan of every stored row with a driver, each compared with the whole array)
  evaluated_drivers AS (
    SELECT DISTINCT s.driver_id
    FROM unnest(v_ids) x (lead_id)
    JOIN canon_internal.cabinet_lead_state s ON s.lead_id = x.lead_id
    WHERE s.driver_id IS NOT NULL AND s.lead_date >= p_scope_from
  ),
  unparseable AS (
    SELECT count(*) AS n
    FROM evaluated_drivers sd
    JOIN public.summary_daily t
      ON t.driver_id = sd.driver_id
     AND canon.parse_date_file(t.date_file) IS NULL
  )
  SELECT jsonb_build_object(
    'scope_from', p_scope_from,
    'leads_in_scope', (v_scope->>'leads')::bigint,
    'lead_keys_in_scope', CASE WHEN v_sweep THEN (SELECT k.lead_keys FROM scope_keys k) END,
    'leads_with_identity', (v_scope->>'with_identity')::bigint,
    'leads_with_driver', (v_scope->>'with_driver')::bigint,
    'leads_with_trips', (v_scope->>'with_trips')::bigint,
    'leads_without_claim_rule', (v_scope->>'without_rule')::bigint,
    'leads_in_trips_no_claim', (v_scope->>'trips_no_claim')::bigint,
    'trip_rows_read', (v_state->>'trip_rows_read')::bigint,
    'trip_rows_unparseable_scope_drivers', (SELECT n FROM unparseable),
    'milestones_reached', CASE WHEN v_sweep THEN (SELECT k.milestones_reached FROM scope_keys k) END,
    'claims_generated', v_generated->'claims_generated',
    'claims_generated_amount', v_generated->'claims_generated_amount',
    'claims_generated_by_milestone', v_generated->'claims_generated_by_milestone',
    'claims_already_present', (SELECT coalesce(sum(e.value::bigint), 0) FROM jsonb_each_text(v_existing) e),
    'claims_skipped_paid_or_rejected', (SELECT coalesce(sum(e.value::bigint), 0) FROM jsonb_each_text(v_existing) e
                                        WHERE e.key IN ('paid', 'rejected')),
    'claims_already_present_by_status', v_existing,
    'lead_state', jsonb_build_object(
      'mode', CASE WHEN v_sweep THEN 'sweep' ELSE 'incremental' END,
      'trips', v_schedule->'trips',
      'keys', v_keys,
      'reasons', v_schedule->'reasons',
      'evaluated', (v_state->>'evaluated')::integer + (v_state2->>'evaluated')::integer,
      'written', (v_state->>'written')::integer + (v_state2->>'written')::integer + v_claimed_written,
      'claimed_rows_moved_on', v_claimed_written,
      'removed', (v_state->>'removed')::integer + (v_state2->>'removed')::integer)
  ) INTO v_stats;
  RETURN v_stats;
END
$$;
COMMENT ON FUNCTION canon.generate_cabinet_claims(bigint, date, boolean) IS
  'Pipeline step 7: re-evaluates the lead state that may have changed (canon_internal.cabinet_lead_state), then inserts, as generated, every missing claim (lead_source_pk, milestone) reached in the window by leads with lead_date >= p_scope_from. Never touches existing claims. p_run_id NULL (by hand) sweeps the whole scope. Returns step stats.';

-- snapshot of sql/canon/canon.grant_product_roles.sql
-- canon.grant_product_roles: the two group roles of the product and what each may do
-- (docs/security.md). Called by every `cabinet-leads migrate`
-- (src/migrate.ts, after graphile-worker's schema is installed), as the migrating role:
--   cabinet_leads_job     runs the pipeline, the worker, import-leads, the manual fixes,
--                         alerts, status, report, doctor (--repair): reads and writes rows,
--                         executes every function; creates, alters and drops nothing.
--   cabinet_leads_reader  SELECT on the ops views and tables, canon.ingestion_runs,
--                         canon.settings and canon.identity_unmatched; ops.explain_lead, ops.preview_links,
--                         ops.check_limbo_alerts (its read-only form) and the other read functions;
--                         writes nothing.
-- Both NOLOGIN: a DBA grants them to login roles. Creates a missing role when the
-- migrating role may (superuser or CREATEROLE). Idempotent: every grant is given again,
-- so objects added by later migrations are covered (also by the default privileges).
-- Returns the SQL a DBA must run for what the migrating role could not do (no row: all
-- done): roles it may not create, grants on upstream tables or on graphile-worker's
-- schema it does not own. Functions of canon and ops are not executable by PUBLIC: only
-- the roles above (and their owner) reach them, as only they have USAGE on the schemas.
CREATE OR REPLACE FUNCTION canon.grant_product_roles()
RETURNS SETOF text
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  c_job constant text := 'cabinet_leads_job';
  c_reader constant text := 'cabinet_leads_reader';
  -- The read functions of ops a reader may call (the rest of ops writes or repairs).
  c_reader_ops constant text[] := ARRAY[
    'ops.explain_lead', 'ops.check_limbo_alerts', 'ops.firing_limbo_alerts', 'ops.limbo_alert_metrics',
    'ops.limbo_week_counts', 'ops.limbo_stage_counts', 'ops.funnel_week_counts',
    'ops.limbo_stage_actions', 'ops.oldest_actionable_leads', 'ops.last_complete_lead_week', 'ops.job_lock_holders',
    'ops.preview_links'];
  v_role text;
  v_missing text[] := '{}';
  v_may_create boolean;
  v_fn regprocedure;
  v_table text;
  v_seq text;
  v_priv text;
BEGIN
  -- ROLES: created when missing (NOLOGIN), else the DBA's SQL.
  SELECT r.rolsuper OR r.rolcreaterole INTO v_may_create FROM pg_roles r WHERE r.rolname = current_user;
  FOREACH v_role IN ARRAY ARRAY[c_job, c_reader] LOOP
    CONTINUE WHEN EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = v_role);
    IF v_may_create THEN
      BEGIN
        EXECUTE format('CREATE ROLE %I NOLOGIN', v_role);
        EXECUTE format('COMMENT ON ROLE %I IS %L', v_role, CASE v_role
          WHEN c_job THEN 'cabinet-leads: runs the pipeline, the worker and the operator commands; writes rows, changes no schema (docs/security.md).'
          ELSE 'cabinet-leads: reads the ops views, the runs and the alerts; writes nothing (docs/security.md).' END);
      EXCEPTION WHEN duplicate_object OR unique_violation THEN
        NULL; -- created meanwhile by a migrate of another database of the cluster
      END;
    ELSE
      v_missing := v_missing || v_role;
    END IF;
  END LOOP;
  IF cardinality(v_missing) > 0 THEN
    RETURN QUERY SELECT format('CREATE ROLE %I NOLOGIN;', m) FROM unnest(v_missing) m;
    RETURN QUERY SELECT '-- then run cabinet-leads migrate again: it grants the roles their rights'::text;
    RETURN;
  END IF;

  -- SCHEMAS: USAGE only; CREATE stays with the owner.
  GRANT USAGE ON SCHEMA canon, ops, cabinet_migrations TO cabinet_leads_job, cabinet_leads_reader;
  -- The caches and bookkeeping: the job's; a reader sees them through the views only.
  GRANT USAGE ON SCHEMA canon_internal TO cabinet_leads_job;
  -- Which migrations are applied: every command checks it before it starts.
  GRANT SELECT ON cabinet_migrations.pgmigrations TO cabinet_leads_job, cabinet_leads_reader;

  -- JOB: rows of every table, every sequence, every function; no TRUNCATE, no DDL.
  GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA canon, canon_internal, ops TO cabinet_leads_job;
  FOR v_table IN
    SELECT c.oid::regclass::text FROM pg_class c
    WHERE c.relnamespace IN ('canon'::regnamespace, 'ops'::regnamespace) AND c.relkind IN ('v', 'm')
  LOOP
    EXECUTE format('REVOKE INSERT, UPDATE, DELETE ON %s FROM cabinet_leads_job', v_table); -- views are read
  END LOOP;
  GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA canon, canon_internal, ops TO cabinet_leads_job;
  REVOKE EXECUTE ON ALL ROUTINES IN SCHEMA canon, ops FROM PUBLIC;
  GRANT EXECUTE ON ALL ROUTINES IN SCHEMA canon, ops TO cabinet_leads_job;
  ALTER DEFAULT PRIVILEGES IN SCHEMA canon, canon_internal, ops GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO cabinet_leads_job;
  ALTER DEFAULT PRIVILEGES IN SCHEMA canon, canon_internal, ops GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO cabinet_leads_job;
  ALTER DEFAULT PRIVILEGES IN SCHEMA canon, ops GRANT EXECUTE ON ROUTINES TO cabinet_leads_job;
  -- PostgreSQL 17+: the ANALYZE steps of a run (else skipped with a warning, as for any
  -- role that does not own the table; autovacuum analyzes them).
  IF current_setting('server_version_num')::integer >= 170000 THEN
    EXECUTE 'GRANT MAINTAIN ON ALL TABLES IN SCHEMA canon, canon_internal TO cabinet_leads_job';
    EXECUTE 'ALTER DEFAULT PRIVILEGES IN SCHEMA canon, canon_internal GRANT MAINTAIN ON TABLES TO cabinet_leads_job';
  END IF;

  -- READER: the ops views and tables (the views run with their owner's rights on canon),
  -- the run log, the settings (canon.setting, called by the views, runs with the
  -- caller's rights), the canon helper functions the views call (they run with the
  -- reader's rights, so they can write nothing) and the read functions of ops; why a lead
  -- has no person (the report's actionable leads: the limbo view shows its keys already).
  GRANT SELECT ON ALL TABLES IN SCHEMA ops TO cabinet_leads_reader;
  GRANT SELECT ON canon.ingestion_runs, canon.settings, canon.identity_unmatched TO cabinet_leads_reader;
  ALTER DEFAULT PRIVILEGES IN SCHEMA ops GRANT SELECT ON TABLES TO cabinet_leads_reader;
  FOR v_fn IN
    SELECT p.oid::regprocedure
    FROM pg_proc p
    WHERE (p.pronamespace = 'canon'::regnamespace AND NOT p.prosecdef)
       OR (p.pronamespace = 'ops'::regnamespace AND p.oid::regproc::text = ANY (c_reader_ops))
  LOOP
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO cabinet_leads_reader', v_fn);
  END LOOP;
  ALTER DEFAULT PRIVILEGES IN SCHEMA canon GRANT EXECUTE ON ROUTINES TO cabinet_leads_reader;
  -- canon's SECURITY DEFINER functions act with the owner's rights (the driver index's
  -- indexes, its GIN pending lists): the job's only, also when a later migration adds one
  -- (the default privileges above would give it to the reader).
  FOR v_fn IN
    SELECT p.oid::regprocedure FROM pg_proc p WHERE p.pronamespace = 'canon'::regnamespace AND p.prosecdef
  LOOP
    EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM cabinet_leads_reader', v_fn);
  END LOOP;

  -- UPSTREAM: the source tables (owned upstream in production) and the lead id sequence
  -- (import-leads inserts leads). Given when the migrating role may, else the DBA's SQL.
  FOREACH v_table IN ARRAY ARRAY['public.module_ct_cabinet_leads', 'public.drivers', 'public.summary_daily'] LOOP
    CONTINUE WHEN to_regclass(v_table) IS NULL;
    IF has_table_privilege(current_user, v_table, 'SELECT WITH GRANT OPTION')
       AND (v_table <> 'public.module_ct_cabinet_leads' OR has_table_privilege(current_user, v_table, 'INSERT WITH GRANT OPTION')) THEN
      EXECUTE format('GRANT %s ON %s TO cabinet_leads_job',
                     CASE WHEN v_table = 'public.module_ct_cabinet_leads' THEN 'SELECT, INSERT' ELSE 'SELECT' END, v_table);
    ELSIF NOT has_table_privilege(c_job, v_table, 'SELECT')
          OR (v_table = 'public.module_ct_cabinet_leads' AND NOT has_table_privilege(c_job, v_table, 'INSERT')) THEN
      RETURN NEXT format('GRANT %s ON %s TO cabinet_leads_job;',
                         CASE WHEN v_table = 'public.module_ct_cabinet_leads' THEN 'SELECT, INSERT' ELSE 'SELECT' END, v_table);
    END IF;
  END LOOP;
  v_seq := pg_get_serial_sequence('public.module_ct_cabinet_leads', 'id');
  IF v_seq IS NOT NULL THEN
    IF has_sequence_privilege(current_user, v_seq, 'USAGE WITH GRANT OPTION') THEN
      EXECUTE format('GRANT USAGE ON SEQUENCE %s TO cabinet_leads_job', v_seq);
    ELSIF NOT has_sequence_privilege(c_job, v_seq, 'USAGE') THEN
      RETURN NEXT format('GRANT USAGE ON SEQUENCE %s TO cabinet_leads_job;', v_seq);
    END IF;
  END IF;

  -- GRAPHILE-WORKER: its schema is installed by migrate (src/migrate.ts) as this role;
  -- the job role runs jobs: rows, sequences and functions, no DDL. graphile-worker turns
  -- row level security on for its tables with no policy (only their owner sees a row):
  -- one policy per table lets the job role see and write every row, as the owner does.
  IF to_regnamespace('graphile_worker') IS NOT NULL THEN
    IF pg_has_role(current_user, (SELECT n.nspowner FROM pg_namespace n WHERE n.nspname = 'graphile_worker'), 'USAGE') THEN
      FOR v_table IN
        SELECT c.oid::regclass::text FROM pg_class c
        WHERE c.relnamespace = 'graphile_worker'::regnamespace AND c.relkind IN ('r', 'p') AND c.relrowsecurity
          AND NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = c_job)
      LOOP
        EXECUTE format('CREATE POLICY %I ON %s FOR ALL TO %I USING (true) WITH CHECK (true)', c_job, v_table, c_job);
      END LOOP;
      GRANT USAGE ON SCHEMA graphile_worker TO cabinet_leads_job;
      GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA graphile_worker TO cabinet_leads_job;
      GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA graphile_worker TO cabinet_leads_job;
      GRANT EXECUTE ON ALL ROUTINES IN SCHEMA graphile_worker TO cabinet_leads_job;
      ALTER DEFAULT PRIVILEGES IN SCHEMA graphile_worker GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO cabinet_leads_job;
      ALTER DEFAULT PRIVILEGES IN SCHEMA graphile_worker GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO cabinet_leads_job;
      ALTER DEFAULT PRIVILEGES IN SCHEMA graphile_worker GRANT EXECUTE ON ROUTINES TO cabinet_leads_job;
    ELSIF NOT has_schema_privilege(c_job, 'graphile_worker', 'USAGE') THEN
      RETURN QUERY
        SELECT format('CREATE POLICY %I ON %s FOR ALL TO %I USING (true) WITH CHECK (true);', c_job, c.oid::regclass, c_job)
        FROM pg_class c
        WHERE c.relnamespace = 'graphile_worker'::regnamespace AND c.relkind IN ('r', 'p') AND c.relrowsecurity
          AND NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = c_job)
        ORDER BY 1;
      RETURN NEXT 'GRANT USAGE ON SCHEMA graphile_worker TO cabinet_leads_job;';
      RETURN NEXT 'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA graphile_worker TO cabinet_leads_job;';
      RETURN NEXT 'GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA graphile_worker TO cabinet_leads_job;';
      RETURN NEXT 'GRANT EXECUTE ON ALL ROUTINES IN SCHEMA graphile_worker TO cabinet_leads_job;';
    END IF;
  END IF;

  -- DATABASE: CONNECT and TEMPORARY (a run builds temporary tables) are PUBLIC's by
  -- default; where a DBA revoked them, the roles get them back (or the DBA's SQL).
  FOREACH v_role IN ARRAY ARRAY[c_job, c_reader] LOOP
    FOREACH v_priv IN ARRAY CASE v_role WHEN c_job THEN ARRAY['CONNECT', 'TEMPORARY'] ELSE ARRAY['CONNECT'] END LOOP
      CONTINUE WHEN has_database_privilege(v_role, current_database(), v_priv);
      IF has_database_privilege(current_user, current_database(), v_priv || ' WITH GRANT OPTION') THEN
        EXECUTE format('GRANT %s ON DATABASE %I TO %I', v_priv, current_database(), v_role);
      ELSE
        RETURN NEXT format('GRANT %s ON DATABASE %I TO %I;', v_priv, current_database(), v_role);
      END IF;
    END LOOP;
  END LOOP;
END
$$;
COMMENT ON FUNCTION canon.grant_product_roles() IS
  'Creates the roles cabinet_leads_job and cabinet_leads_reader (NOLOGIN) when missing and allowed, and grants each its rights (docs/security.md); returns the SQL a DBA must run for what the migrating role could not do. Run by every cabinet-leads migrate.';

-- snapshot of sql/canon/canon.insert_missing_claims.sql
-- canon.insert_missing_claims: step 7c. Inserts, as 'generated', every claim
-- (lead_source_pk, milestone) a lead of the scope (lead_date >= p_scope_from) reached in
-- its window without having it, with the rule's amount: the leads the stored state shows in
-- TRIPS_NO_CLAIM, decided on their live chain (canon.v_cabinet_lead_status: a trip row
-- deleted since the state was stored earns nothing). One INSERT ... ON CONFLICT DO NOTHING:
-- an existing claim of any status is never changed; two lead rows of one key get one set of
-- claims (from the earliest row that reached the milestone). Its own claims do not mark
-- their keys dirty: canon.move_claimed_leads_on moves their state on. Returns
-- {claims_generated, claims_generated_amount, claims_generated_by_milestone, claimed_keys}.
CREATE OR REPLACE FUNCTION canon.insert_missing_claims(p_run_id bigint, p_scope_from date)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET client_min_messages = warning
SET jit = off
AS $$
DECLARE
  v_generated jsonb;
BEGIN
  PERFORM set_config('cabinet.lead_state_marking', 'off', true);
  WITH
  -- Decided on the live chain of the leads the stored state shows with a claim missing:
  -- a trip row deleted since the state was stored cannot earn a claim. The ids as an
  -- array, so the view is evaluated for them only (a semi-join evaluated it for every lead).
  live AS MATERIALIZED (
    SELECT v.*
    FROM canon.v_cabinet_lead_status v
    WHERE v.lead_id = ANY (ARRAY(SELECT s.lead_id FROM canon_internal.cabinet_lead_state s
                                 WHERE s.limbo_stage = 'TRIPS_NO_CLAIM' AND s.lead_date >= p_scope_from))
  ),
  due AS (
    SELECT DISTINCT ON (s.lead_source_pk, m.milestone)
           s.lead_id, s.lead_source_pk, s.lead_date, s.person_key, s.driver_id, s.currency, m.milestone, m.amount
    FROM live s
    -- per milestone: reached in the window and not claimed yet
    CROSS JOIN LATERAL canon.milestone_rows(s.m1_trips_threshold, s.m1_amount, s.reached_m1 AND NOT s.has_claim_m1,
                                            s.m5_trips_threshold, s.m5_amount, s.reached_m5 AND NOT s.has_claim_m5,
                                            s.m25_trips_threshold, s.m25_amount, s.reached_m25 AND NOT s.has_claim_m25)
      AS m (milestone, trips_threshold, amount, missing)
    WHERE s.lead_date >= p_scope_from
      AND m.missing
    ORDER BY s.lead_source_pk, m.milestone, s.lead_date, s.lead_id
  ),
  inserted AS (
    INSERT INTO canon.claims_yango_cabinet_14d AS cl (
      lead_source_pk, milestone, person_key, driver_id, lead_date, amount_expected, currency,
      status, generated_at, run_id
    )
    SELECT d.lead_source_pk, d.milestone, d.person_key, d.driver_id, d.lead_date, d.amount, d.currency,
           'generated', now(), p_run_id
    FROM due d
    ORDER BY d.lead_source_pk, d.milestone
    ON CONFLICT (lead_source_pk, milestone) DO NOTHING
    RETURNING cl.lead_source_pk, cl.milestone, cl.amount_expected
  ),
  per_milestone AS (
    SELECT m.milestone, count(i.milestone) AS n, coalesce(sum(i.amount_expected), 0) AS amount
    FROM (VALUES (1), (5), (25)) m (milestone)
    LEFT JOIN inserted i ON i.milestone = m.milestone
    GROUP BY m.milestone
  )
  SELECT jsonb_build_object(
           'claims_generated', (SELECT count(*) FROM inserted),
           'claims_generated_amount', (SELECT coalesce(sum(i.amount_expected), 0) FROM inserted i),
           'claims_generated_by_milestone', (SELECT jsonb_object_agg('M' || p.milestone, jsonb_build_object('count', p.n, 'amount', p.amount))
                                             FROM per_milestone p),
           'claimed_keys', (SELECT coalesce(jsonb_agg(DISTINCT i.lead_source_pk), '[]'::jsonb) FROM inserted i))
  INTO v_generated;
  PERFORM set_config('cabinet.lead_state_marking', 'on', true);
  RETURN v_generated;

END
$$;
COMMENT ON FUNCTION canon.insert_missing_claims(bigint, date) IS
  'Step 7c: inserts the missing claims of the scope''s leads in TRIPS_NO_CLAIM, decided on their live chain; never changes an existing claim. Returns counts, amounts and the keys claimed.';

-- snapshot of sql/canon/canon.job_lock.sql
-- canon.job_lock: the key of the job lock, the transaction-level advisory lock that keeps
-- one pipeline run at a time (across every host) and the operator tools and repairs out
-- of a run: (hashtext('cabinet_leads'), hashtext('reconcile_cabinet_leads_pipeline')).
-- Written once here; canon.try_job_lock and canon.take_job_lock take it, status and doctor
-- look for it in pg_locks.
CREATE OR REPLACE FUNCTION canon.job_lock(OUT classid integer, OUT objid integer)
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
  SELECT hashtext('cabinet_leads'), hashtext('reconcile_cabinet_leads_pipeline')
$$;
COMMENT ON FUNCTION canon.job_lock() IS
  'The job lock''s advisory key (classid, objid): one pipeline run at a time, operator tools and repairs outside runs.';

-- snapshot of sql/canon/canon.key_changed_leads.sql
-- canon.key_changed_leads: pipeline step 5a. Keys every lead row written since the last
-- read of public.module_ct_cabinet_leads, whatever its id, page or timestamp: one pass
-- over the lead rows takes the row versions written by transactions not older than the
-- oldest one in progress at the last read (canon_internal.source_scan_state.seen_xmin, compared by
-- canon.xmin_age_limit), so a row committed late under a low id, a row updated in place
-- and a row of a subtransaction are all read; canon.refresh_lead_keys keys those whose
-- values changed. The same pass counts the rows: when the keyed and unkeyed rows do not
-- add up to them, rows were deleted (or a cache drifted) and the difference is found by id
-- and repaired. Also called by ops.refresh_cabinet_lead_state. Returns step stats.
CREATE OR REPLACE FUNCTION canon.key_changed_leads(p_run_id bigint)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET jit = off
SET client_min_messages = warning
AS $$
DECLARE
  v_foreign bigint[];
  v_seen xid8;
  v_limit integer;
  v_rows bigint;
  v_dated bigint;
  v_changed integer[];
  v_snapshot_xmin xid8;
  v_written integer;
  v_cached bigint;
  v_membership integer[] := '{}';
BEGIN
  SELECT s.seen_xmin INTO v_seen
  FROM canon_internal.source_scan_state s
  WHERE s.source_table = 'module_ct_cabinet_leads'
  FOR UPDATE;
  v_limit := canon.xmin_age_limit(v_seen);
  v_foreign := canon.foreign_xids(); -- before the read's snapshot (canon.local_snapshot_xmin)

  -- One pass, no function per row. The snapshot is this statement's own: what it shows,
  -- the pass has read; the next read starts from its oldest local transaction.
  SELECT count(*),
         count(*) FILTER (WHERE isfinite(l.lead_created_at)),
         coalesce(array_agg(l.id) FILTER (WHERE v_limit IS NULL OR age(l.xmin) <= v_limit), '{}'),
         canon.local_snapshot_xmin(pg_current_snapshot(), v_foreign)
  INTO v_rows, v_dated, v_changed, v_snapshot_xmin
  FROM public.module_ct_cabinet_leads l;

  v_written := canon.refresh_lead_keys(v_changed);

  -- Every row read is now keyed or listed unkeyed; more cached rows than lead rows means
  -- rows were deleted (fewer would be a drift): found by id, then keyed or unkeyed.
  v_cached := (SELECT count(*) FROM canon_internal.lead_keys) + (SELECT count(*) FROM canon_internal.lead_rows_unkeyed);
  IF v_cached <> v_rows THEN
    v_membership := ARRAY(
      SELECT coalesce(c.lead_id, l.id)
      FROM (SELECT k.lead_id FROM canon_internal.lead_keys k UNION ALL SELECT u.lead_id FROM canon_internal.lead_rows_unkeyed u) c
      FULL JOIN public.module_ct_cabinet_leads l ON l.id = c.lead_id
      WHERE c.lead_id IS NULL OR l.id IS NULL);
    v_written := v_written + canon.refresh_lead_keys(v_membership);
  END IF;

  UPDATE canon_internal.source_scan_state
  SET seen_xmin = v_snapshot_xmin, rows_read = v_rows, rows_dated = v_dated,
      -- (doctor: a key of a row deleted since this read is work for the next run, not drift)
      tuples_deleted = pg_stat_get_tuples_deleted('public.module_ct_cabinet_leads'::regclass),
      read_at = now(), full_read_at = now(), run_id = p_run_id
  WHERE source_table = 'module_ct_cabinet_leads';

  RETURN jsonb_build_object(
    'lead_rows', v_rows,
    'lead_rows_undated', v_rows - v_dated,
    'lead_rows_read_again', cardinality(v_changed),
    'lead_rows_written', v_written,
    'lead_rows_gone_or_unkeyed_found', cardinality(v_membership),
    'leads_with_oversized_key', (SELECT count(*) FROM canon_internal.lead_rows_unkeyed u WHERE u.reason = 'OVERSIZED_KEY'),
    'read_since_xmin', v_seen);
END
$$;
COMMENT ON FUNCTION canon.key_changed_leads(bigint) IS
  'Pipeline step 5a: keys every lead row written since the last read (by commit order: any id, page or timestamp) and removes the keys of deleted rows. Returns step stats.';

-- snapshot of sql/canon/canon.key_chunks.sql
-- canon.key_chunks: the keys of an array in sorted chunks of at most p_size, so that a GIN
-- index is probed a chunk at a time: one scan with thousands of keys checks every key for
-- each row it finds, and a scan per key pays a rescan each (figures in
-- canon.mark_tier_retries_due, its caller). Plain SQL without SET or STRICT: inlined.
CREATE OR REPLACE FUNCTION canon.key_chunks(p_keys text[], p_size integer)
RETURNS SETOF text[]
LANGUAGE sql
IMMUTABLE
AS $$
  SELECT pg_catalog.array_agg(x.key ORDER BY x.key)
  FROM (SELECT k.key, (pg_catalog.row_number() OVER (ORDER BY k.key) - 1) / p_size AS chunk
        FROM pg_catalog.unnest(p_keys) AS k (key)) x
  GROUP BY x.chunk
$$;
COMMENT ON FUNCTION canon.key_chunks(text[], integer) IS
  'The keys of an array in sorted chunks of at most p_size (a GIN index probed a chunk at a time).';

-- snapshot of sql/canon/canon.last_run_scope.sql
-- canon.last_run_scope: the lead dates the pipeline runs cover now (SPEC 7 step 5): the
-- days_back of the last COMPLETED run (not a dry run; 30, the default, before the first
-- one) and the first lead date it selects today, business today - days_back. A lead dated
-- before scope_from is neither evaluated nor retried until a run with a larger days_back.
-- Read once per query by ops.explain_lead, ops.v_cabinet_leads_limbo (reason texts) and
-- ops.v_review_queue; one probe of ingestion_runs_job_status_idx.
CREATE OR REPLACE FUNCTION canon.last_run_scope()
RETURNS TABLE (run_id bigint, days_back integer, scope_from date)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT r.id, coalesce(r.days_back, 30), canon.business_today() - coalesce(r.days_back, 30)
  FROM (SELECT NULL::bigint AS id, NULL::integer AS days_back) d
  LEFT JOIN LATERAL (
    SELECT x.id, (x.params->>'days_back')::integer AS days_back
    FROM canon.ingestion_runs x
    WHERE x.job_name = 'reconcile_cabinet_leads_pipeline' AND x.status = 'COMPLETED' AND NOT x.dry_run
    ORDER BY x.created_at DESC, x.id DESC
    LIMIT 1
  ) r ON true
$$;
COMMENT ON FUNCTION canon.last_run_scope() IS
  'The scope of the pipeline runs now: run_id and days_back of the last COMPLETED run (NULL and 30 before the first), scope_from = business today - days_back. Leads dated before scope_from are not evaluated or retried.';

-- snapshot of sql/canon/canon.lead_candidates.sql
-- canon.lead_candidates: every driver candidate of the given lead rows, by rule, with
-- its score and name similarity, and whether it is kept as evidence or why it is not.
-- The one definition of the rules of SPEC 6, used by the batch matcher and by
-- ops.explain_lead. Reads canon_internal.lead_keys and canon_internal.driver_index, always by key: a batch
-- (at most a run's limit) is probed into the driver index, never joined by hashing the
-- whole index, which the planner chose at 1M drivers from its estimates, nor with JIT
-- (10,000 leads at 1M: 2.2 s as planned, 0.86 s without JIT, 0.59 s by key). Names are
-- compared as the normalised names both store (canon.token_similarity on their tokens:
-- the score of canon.name_similarity without normalising each name again per pair).
-- A pair whose score alone is a name match but whose names differ by a given name or a
-- surname (SPEC 5, relatives) is vetoed (canon.name_veto, roles from both records' fields
-- and canon.name_token_usage): looked up only for the few pairs scoring in [name_similarity_min, 1).
CREATE OR REPLACE FUNCTION canon.lead_candidates(p_lead_ids integer[])
RETURNS TABLE (
  lead_id integer,
  lead_source_pk text,
  rule text,
  rule_group text,
  driver_id text,
  park_id text,
  in_target_park boolean,
  score numeric,
  confidence_level text,
  name_similarity numeric,
  hire_date date,
  hire_in_window boolean,
  kept boolean,
  reject_reason text,
  name_veto jsonb
)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
  WITH params AS (
    SELECT canon.setting('target_park_id') AS target_park,
           canon.setting('shared_phone_min_other_people')::integer AS min_other_people,
           mp.name_similarity_min AS sim_min, mp.name_gap_min AS gap_min,
           mp.hire_days_before_lead AS hire_before, mp.hire_days_after_lead AS hire_after
    FROM canon.match_parameters mp
  ),
  -- Below, no two derived sets of the size of the batch are joined: each step is per lead,
  -- a window over the candidates of a lead, or a lookup in the few shared phones. (This
  -- function is planned without knowing the batch size; such a join became a nested loop
  -- over both: quadratic, 1.5 s for 10,000 leads against 60 ms for 2,000.)
  batch AS (
    SELECT k.* FROM canon_internal.lead_keys k WHERE k.lead_id = ANY (p_lead_ids)
  ),
  -- A phone that other leads use under other names is an office phone, not a person's.
  -- Only phones with enough distinct names to be shared (few) are compared name by name,
  -- each read once however many leads of the batch carry it (MATERIALIZED: not inlined
  -- into the per-lead lookup below, which would read a shared phone's leads per lead).
  phone_names AS MATERIALIZED (
    SELECT p.phone_norm, array_agg(o.name_norm) AS names
    FROM (SELECT DISTINCT b.phone_norm FROM batch b WHERE b.phone_norm IS NOT NULL) p
    CROSS JOIN LATERAL (
      SELECT DISTINCT o.name_norm
      FROM canon_internal.lead_keys o
      WHERE o.phone_norm = p.phone_norm AND o.name_norm IS NOT NULL
      LIMIT 50
    ) o
    GROUP BY p.phone_norm
    HAVING count(*) > (SELECT pr.min_other_people FROM params pr)
  ),
  -- Enough is enough: stop comparing once min_other_people other people are found.
  leads AS (
    SELECT b.*,
           CASE WHEN b.phone_norm IS NOT NULL THEN (
             SELECT count(*)
             FROM (SELECT 1
                   FROM phone_names pn
                   CROSS JOIN unnest(pn.names) n (name_norm)
                   CROSS JOIN LATERAL (
                     SELECT string_to_array(b.name_norm, ' ') AS lt, string_to_array(n.name_norm, ' ') AS ot) t
                   CROSS JOIN LATERAL (SELECT canon.token_similarity(t.lt, t.ot) AS sim) s
                   WHERE pn.phone_norm = b.phone_norm
                     AND (b.name_norm IS NULL
                          OR (n.name_norm <> b.name_norm
                              AND (s.sim < (SELECT pr.sim_min FROM params pr)
                                   -- a relative's name is another person's (SPEC 5)
                                   OR canon.name_veto_of(t.lt, b.lead_id, NULL, t.ot, NULL, NULL) IS NOT NULL)))
                   LIMIT (SELECT pr.min_other_people FROM params pr)) x)
           END AS other_people
    FROM batch b
  ),
  raw AS (
    SELECT l.lead_id, l.lead_source_pk, l.name_norm AS lead_name_norm, l.lead_date, l.other_people,
           'PHONE' AS rule_group, d.driver_id, d.park_id, d.name_norm, d.hire_date
    FROM leads l JOIN canon_internal.driver_index d ON d.phone_norm = l.phone_norm
    UNION ALL
    SELECT l.lead_id, l.lead_source_pk, l.name_norm, l.lead_date, l.other_people,
           'LICENSE', d.driver_id, d.park_id, d.name_norm, d.hire_date
    FROM leads l JOIN canon_internal.driver_index d ON d.license_norm = l.license_norm
    UNION ALL
    SELECT l.lead_id, l.lead_source_pk, l.name_norm, l.lead_date, l.other_people,
           'PLATE', d.driver_id, d.park_id, d.name_norm, d.hire_date
    FROM leads l JOIN canon_internal.driver_index d ON d.plate_norm = l.plate_norm
  ),
  scored AS (
    SELECT r.lead_id, r.lead_source_pk, r.rule_group, r.driver_id, r.park_id, r.name_norm, r.lead_name_norm,
           r.park_id IS NOT DISTINCT FROM p.target_park AS in_target_park,
           CASE WHEN r.lead_name_norm = r.name_norm THEN 1.0000
                ELSE round(coalesce(canon.token_similarity(string_to_array(r.lead_name_norm, ' '), string_to_array(r.name_norm, ' ')), 0), 4)
           END AS name_similarity,
           r.hire_date,
           (r.hire_date IS NULL OR r.hire_date BETWEEN r.lead_date - p.hire_before AND r.lead_date + p.hire_after) AS hire_in_window,
           coalesce(r.other_people, 0) >= p.min_other_people AS lead_phone_shared,
           x.present IS NULL AS driver_deleted,
           lbl.present IS NOT NULL AS not_this_driver
    FROM raw r
    CROSS JOIN params p
    -- a person said this lead is not this driver (canon.lead_driver_labels): one probe per candidate
    LEFT JOIN LATERAL (SELECT true AS present FROM canon.lead_driver_labels lb
                       WHERE lb.lead_source_pk = r.lead_source_pk AND lb.driver_id = r.driver_id) lbl ON true
    -- One probe per candidate, a plain column after: a NOT EXISTS here was planned as a
    -- hashed subplan, one scan of public.drivers per later reference (3 x 30 ms of every
    -- batch at 200k drivers).
    LEFT JOIN LATERAL (SELECT true AS present FROM public.drivers x WHERE x.driver_id = r.driver_id LIMIT 1) x ON true
  ),
  -- A plate's driver whose name scores as a match may still be a relative (SPEC 5): the
  -- veto is looked up for those pairs only (a score of 1 leaves nothing to differ).
  vetted AS (
    SELECT sc.*,
           CASE WHEN sc.rule_group = 'PLATE' AND sc.name_similarity >= p.sim_min AND sc.name_similarity < 1 THEN
             canon.name_veto_of(string_to_array(sc.lead_name_norm, ' '), sc.lead_id, NULL,
                                string_to_array(sc.name_norm, ' '), NULL, sc.driver_id)
           END AS veto
    FROM scored sc
    CROSS JOIN params p
  ),
  -- Several drivers on one phone with different names are different people: when a lead's
  -- phone finds 2+ drivers (not deleted), each is compared with the one of the smallest
  -- name (a relative's name is a different person's too).
  phone_grouped AS (
    SELECT sc.*,
           first_value(sc.driver_id) OVER (PARTITION BY sc.lead_id
                                           ORDER BY (sc.rule_group = 'PHONE' AND NOT sc.driver_deleted) DESC,
                                                    sc.name_norm, sc.driver_id) AS phone_ref_driver,
           min(sc.name_norm) FILTER (WHERE sc.rule_group = 'PHONE' AND NOT sc.driver_deleted)
             OVER (PARTITION BY sc.lead_id) AS phone_ref_name,
           count(*) FILTER (WHERE sc.rule_group = 'PHONE' AND NOT sc.driver_deleted)
             OVER (PARTITION BY sc.lead_id) AS phone_drivers
    FROM vetted sc
  ),
  phone_compared AS (
    SELECT g.*,
           g.phone_drivers > 1
             AND bool_or(CASE WHEN g.rule_group = 'PHONE' AND NOT g.driver_deleted AND g.phone_drivers > 1
                                   AND g.name_norm IS DISTINCT FROM g.phone_ref_name
                              THEN (SELECT x.sim < (SELECT pr.sim_min FROM params pr)
                                           OR (x.sim < 1
                                               AND canon.name_veto_of(x.dt, NULL, g.driver_id, x.rt, NULL, g.phone_ref_driver) IS NOT NULL)
                                    FROM (SELECT string_to_array(g.name_norm, ' ') AS dt, string_to_array(g.phone_ref_name, ' ') AS rt) t
                                    CROSS JOIN LATERAL (SELECT coalesce(canon.token_similarity(t.dt, t.rt), 0) AS sim, t.dt, t.rt) x)
                              ELSE false END)
                   OVER (PARTITION BY g.lead_id) AS phone_shared_by_drivers
    FROM phone_grouped g
  ),
  classified AS (
    SELECT sc.*,
           CASE sc.rule_group
             WHEN 'PHONE' THEN 'R1_PHONE_EXACT'
             WHEN 'LICENSE' THEN 'R2_LICENSE_EXACT'
             ELSE CASE WHEN sc.hire_in_window THEN 'R3_PLATE_EXACT_NAME_SIMILAR' ELSE 'R3B_PLATE_NAME_NO_DATE' END
           END AS rule,
           CASE
             WHEN sc.driver_deleted THEN 'DRIVER_DELETED'
             WHEN sc.not_this_driver THEN 'NOT_THIS_DRIVER'
             WHEN sc.rule_group = 'PHONE' AND sc.lead_phone_shared THEN 'PHONE_SHARED_BY_LEADS'
             WHEN sc.rule_group = 'PHONE' AND coalesce(sc.phone_shared_by_drivers, false) THEN 'PHONE_SHARED_BY_DRIVERS'
             WHEN sc.rule_group = 'PLATE' AND sc.name_similarity < (SELECT pr.sim_min FROM params pr) THEN 'NAME_NOT_SIMILAR'
             WHEN sc.rule_group = 'PLATE' AND sc.veto IS NOT NULL THEN 'NAME_VETO'
           END AS reject_reason
    FROM phone_compared sc
  ),
  -- The target park is preferred: other parks count only when no rule finds a target-park driver.
  parked AS (
    SELECT c.*,
           CASE
             WHEN c.reject_reason IS NULL AND NOT c.in_target_park
                  AND bool_or(c.reject_reason IS NULL AND c.in_target_park) OVER (PARTITION BY c.lead_id)
               THEN 'OTHER_PARK_TARGET_PREFERRED'
             ELSE c.reject_reason
           END AS reason
    FROM classified c
  ),
  -- Shift drivers share a plate: the name decides when the best is clearly better (gap >=
  -- name_gap_min). Ranked among the lead's plate candidates still standing (the partition's
  -- second key); the other rows' ranks are not used.
  plate_ranked AS (
    SELECT p.*,
           (p.rule_group = 'PLATE' AND p.reason IS NULL) AS plate_standing,
           row_number() OVER w AS plate_pos,
           first_value(p.name_similarity) OVER w AS best_similarity,
           nth_value(p.name_similarity, 2) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS second_similarity
    FROM parked p
    WINDOW w AS (PARTITION BY p.lead_id, (p.rule_group = 'PLATE' AND p.reason IS NULL) ORDER BY p.name_similarity DESC, p.driver_id)
  )
  SELECT p.lead_id, p.lead_source_pk, p.rule, p.rule_group, p.driver_id, p.park_id, p.in_target_park,
         mr.score::numeric AS score,
         mr.confidence_level,
         p.name_similarity, p.hire_date, p.hire_in_window,
         final.reason IS NULL AS kept,
         final.reason AS reject_reason,
         CASE WHEN p.veto IS NOT NULL THEN jsonb_build_object('lead', p.veto->'a', 'driver', p.veto->'b') END AS name_veto
  FROM plate_ranked p
  JOIN canon.match_rules mr ON mr.rule = p.rule
  CROSS JOIN LATERAL (
    SELECT CASE
             WHEN p.plate_standing AND p.plate_pos > 1 AND p.best_similarity - p.second_similarity >= (SELECT pr.gap_min FROM params pr)
               THEN 'NAME_LESS_SIMILAR_THAN_BEST'
             ELSE p.reason
           END AS reason
  ) final
$$;
COMMENT ON FUNCTION canon.lead_candidates(integer[]) IS 'All driver candidates of the given lead rows (canon_internal.lead_keys.lead_id), by rule, with score, name similarity, kept or reject_reason, and name_veto ({"lead": {token: role}, "driver": {...}}) when a plate driver''s name is a relative''s (NAME_VETO).';

-- snapshot of sql/canon/canon.lead_date_of.sql
-- canon.lead_date_of: the lead date of a lead_created_at (SPEC 3: lead_created_at::date),
-- NULL when there is none: NULL, or 'infinity' / '-infinity', which no 14-day window can
-- start from (such rows are undated: in no limbo row, counted and listed in
-- ops.v_lead_rows_bad). The one definition used by the lead keys, the chain and the views.
CREATE OR REPLACE FUNCTION canon.lead_date_of(p_lead_created_at timestamp without time zone)
RETURNS date
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
  SELECT CASE WHEN isfinite(p_lead_created_at) THEN p_lead_created_at::date END
$$;
COMMENT ON FUNCTION canon.lead_date_of(timestamp without time zone) IS
  'lead_created_at::date, or NULL when lead_created_at is NULL or infinite (an undated lead row).';

-- snapshot of sql/canon/canon.lead_decisions.sql
-- canon.lead_decisions: the decision of SPEC 6 for each given lead row, over all
-- candidates of all rules together: MATCH (with the strongest rule, every agreeing rule
-- and the values compared as evidence) or the reason code why not, with its details and
-- up to 5 candidates (what canon.identity_unmatched keeps; NULL for a match, built only
-- for the leads not matched). Used by the batch matcher and by ops.explain_lead. A plate
-- candidate vetoed as a relative's name (NAME_VETO) counts as a plate without a similar
-- name (WEAK_MATCH_ONLY); its name_veto is kept in the candidates and in the evidence.
CREATE OR REPLACE FUNCTION canon.lead_decisions(p_lead_ids integer[])
RETURNS TABLE (
  lead_id integer,
  lead_source_pk text,
  decision text,
  driver_id text,
  match_rule text,
  match_score numeric,
  confidence_level text,
  evidence jsonb,
  details jsonb,
  candidates jsonb
)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
  WITH leads AS (
    SELECT k.* FROM canon_internal.lead_keys k WHERE k.lead_id = ANY (p_lead_ids)
  ),
  cand AS (
    SELECT c.*, mr.rank AS rule_rank
    FROM canon.lead_candidates(p_lead_ids) c
    JOIN canon.match_rules mr ON mr.rule = c.rule
  ),
  -- Everything per lead is aggregated in one pass (no correlated scans of cand).
  per_group AS (
    SELECT c.lead_id, c.rule_group, count(DISTINCT c.driver_id) AS drivers
    FROM cand c
    WHERE c.kept
    GROUP BY c.lead_id, c.rule_group
  ),
  per_lead AS (
    SELECT c.lead_id,
           count(DISTINCT c.driver_id) FILTER (WHERE c.kept) AS kept_drivers,
           count(*) FILTER (WHERE NOT c.kept AND c.reject_reason IN ('PHONE_SHARED_BY_LEADS', 'PHONE_SHARED_BY_DRIVERS')) AS shared_phone_hits,
           -- the plate is there, no similar name: not similar, or a relative's (SPEC 5)
           count(*) FILTER (WHERE NOT c.kept AND c.reject_reason IN ('NAME_NOT_SIMILAR', 'NAME_VETO')) AS weak_plate_hits,
           jsonb_agg(DISTINCT c.rule) FILTER (WHERE c.kept) AS kept_rules,
           jsonb_agg(jsonb_build_object('driver_id', c.driver_id, 'rule', c.rule, 'reject_reason', c.reject_reason)
                     || CASE WHEN c.name_veto IS NOT NULL THEN jsonb_build_object('name_veto', c.name_veto) ELSE '{}' END)
             FILTER (WHERE NOT c.kept) AS rejected
    FROM cand c
    GROUP BY c.lead_id
  ),
  summary AS (
    SELECT l.lead_id,
           coalesce(p.kept_drivers, 0) AS kept_drivers,
           coalesce(p.shared_phone_hits, 0) AS shared_phone_hits,
           coalesce(p.weak_plate_hits, 0) AS weak_plate_hits,
           p.kept_rules,
           coalesce(p.rejected, '[]'::jsonb) AS rejected,
           coalesce(g.ambiguous, false) AS some_rule_ambiguous
    FROM leads l
    LEFT JOIN per_lead p ON p.lead_id = l.lead_id
    LEFT JOIN (SELECT pg.lead_id, bool_or(pg.drivers > 1) AS ambiguous FROM per_group pg GROUP BY pg.lead_id) g
      ON g.lead_id = l.lead_id
  ),
  best AS (
    SELECT DISTINCT ON (c.lead_id) c.*
    FROM cand c
    WHERE c.kept
    ORDER BY c.lead_id, c.rule_rank, c.name_similarity DESC, c.driver_id
  ),
  decided AS (
    SELECT l.*, s.kept_drivers, s.shared_phone_hits, s.weak_plate_hits, s.kept_rules, s.rejected,
           b.driver_id AS best_driver,
           b.rule AS best_rule, b.score AS best_score, b.confidence_level AS best_confidence,
           b.name_similarity AS best_similarity, b.hire_date AS best_hire_date, b.park_id AS best_park,
           b.in_target_park AS best_in_target_park,
           CASE
             WHEN s.kept_drivers = 0 THEN
               CASE
                 WHEN l.phone_norm IS NULL AND l.plate_norm IS NULL AND l.license_norm IS NULL THEN 'MISSING_KEYS'
                 WHEN s.weak_plate_hits > 0 THEN 'WEAK_MATCH_ONLY'
                 WHEN s.shared_phone_hits > 0 AND l.plate_norm IS NULL AND l.license_norm IS NULL THEN 'SHARED_KEY'
                 ELSE 'NO_CANDIDATES'
               END
             WHEN s.some_rule_ambiguous THEN 'AMBIGUOUS'
             WHEN s.kept_drivers > 1 THEN 'CONFLICT'
             ELSE 'MATCH'
           END AS decision
    FROM leads l
    JOIN summary s ON s.lead_id = l.lead_id
    LEFT JOIN best b ON b.lead_id = l.lead_id
  ),
  top_candidates AS (
    SELECT c.lead_id,
           jsonb_agg(jsonb_build_object(
             'driver_id', c.driver_id, 'park_id', c.park_id, 'rule', c.rule, 'score', c.score,
             'name_similarity', c.name_similarity, 'hire_date', c.hire_date, 'kept', c.kept,
             'reject_reason', c.reject_reason)
             || CASE WHEN c.name_veto IS NOT NULL THEN jsonb_build_object('name_veto', c.name_veto) ELSE '{}' END
             ORDER BY c.pos) AS candidates
    FROM (
      SELECT c.*, row_number() OVER (PARTITION BY c.lead_id ORDER BY c.kept DESC, c.rule_rank, c.name_similarity DESC, c.driver_id) AS pos
      FROM cand c
      -- only where they are kept: the leads not matched (a match keeps its evidence)
      JOIN decided d ON d.lead_id = c.lead_id AND d.decision <> 'MATCH'
    ) c
    WHERE c.pos <= 5
    GROUP BY c.lead_id
  )
  SELECT d.lead_id, d.lead_source_pk, d.decision,
         CASE WHEN d.decision = 'MATCH' THEN d.best_driver END,
         CASE WHEN d.decision = 'MATCH' THEN d.best_rule END,
         CASE WHEN d.decision = 'MATCH' THEN d.best_score END,
         CASE WHEN d.decision = 'MATCH' THEN d.best_confidence END,
         CASE WHEN d.decision = 'MATCH' THEN jsonb_build_object(
           'rules', d.kept_rules,
           'lead', jsonb_build_object('lead_id', d.lead_id, 'phone_norm', d.phone_norm, 'plate_norm', d.plate_norm,
                                      'name_norm', d.name_norm, 'lead_date', d.lead_date),
           'driver', jsonb_build_object('driver_id', i.driver_id, 'park_id', i.park_id, 'phone_norm', i.phone_norm,
                                        'plate_norm', i.plate_norm, 'license_norm', i.license_norm,
                                        'name_norm', i.name_norm, 'hire_date', i.hire_date),
           'name_similarity', d.best_similarity,
           'hire_window', (SELECT jsonb_build_array(d.lead_date - mp.hire_days_before_lead, d.lead_date + mp.hire_days_after_lead)
                           FROM canon.match_parameters mp),
           'target_park', d.best_in_target_park,
           'rejected', d.rejected)
         END,
         CASE WHEN d.decision <> 'MATCH' THEN jsonb_build_object(
           'phone_norm', d.phone_norm, 'plate_norm', d.plate_norm, 'license_norm', d.license_norm,
           'name_norm', d.name_norm, 'lead_date', d.lead_date,
           'missing', to_jsonb(array_remove(ARRAY[
             CASE WHEN d.phone_norm IS NULL THEN 'phone' END,
             CASE WHEN d.plate_norm IS NULL THEN 'plate' END,
             CASE WHEN d.name_norm IS NULL THEN 'name' END], NULL)),
           'shared_phone', d.shared_phone_hits > 0,
           'kept_drivers', d.kept_drivers)
         END,
         CASE WHEN d.decision <> 'MATCH' THEN coalesce(t.candidates, '[]'::jsonb) END
  FROM decided d
  LEFT JOIN top_candidates t ON t.lead_id = d.lead_id
  LEFT JOIN canon_internal.driver_index i ON i.driver_id = d.best_driver AND d.decision = 'MATCH'
$$;
COMMENT ON FUNCTION canon.lead_decisions(integer[]) IS 'Decision per lead row: MATCH with driver, rule, score and evidence, or AMBIGUOUS / CONFLICT / WEAK_MATCH_ONLY / SHARED_KEY / NO_CANDIDATES / MISSING_KEYS with details and up to 5 candidates (details and candidates NULL for a match).';

-- snapshot of sql/canon/canon.lead_ids_maybe_not_current.sql
-- canon.lead_ids_maybe_not_current: the lead row ids whose stored state may not be current,
-- for the counts that add the stored state's counters and correct them for these rows
-- (canon.limbo_week_counts_of_state, ops.funnel_week_counts): the marked ones
-- (canon_internal.cabinet_lead_state_pending, keys in canon_internal.cabinet_lead_state_dirty)
-- and, with p_read_leads, the lead rows written since the last read (by commit order, one
-- pass over the lead rows without a function per row). When the counters corrected for
-- them do not come to the dated lead rows (rows deleted since, or a drift), or the claim
-- rules changed, every lead row and stored row instead. Without p_read_leads the lead rows
-- are taken as of the last read (the snapshot of a run, moments after its own read).
CREATE OR REPLACE FUNCTION canon.lead_ids_maybe_not_current(p_read_leads boolean)
RETURNS integer[]
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
  v_limit integer;
  v_dated bigint;
  v_ids integer[] := '{}';
  v_total bigint;
BEGIN
  IF NOT (SELECT m.full_refresh_needed FROM canon_internal.cabinet_lead_state_meta m) THEN
    IF p_read_leads THEN
      v_limit := canon.xmin_age_limit((SELECT s.seen_xmin FROM canon_internal.source_scan_state s
                                       WHERE s.source_table = 'module_ct_cabinet_leads'));
      SELECT count(*) FILTER (WHERE isfinite(l.lead_created_at)),
             coalesce(array_agg(l.id) FILTER (WHERE v_limit IS NULL OR age(l.xmin) <= v_limit), '{}')
      INTO v_dated, v_ids
      FROM public.module_ct_cabinet_leads l;
    ELSE
      v_dated := (SELECT s.rows_dated FROM canon_internal.source_scan_state s WHERE s.source_table = 'module_ct_cabinet_leads');
    END IF;
    v_ids := v_ids
      || ARRAY(SELECT p.lead_id FROM canon_internal.cabinet_lead_state_pending p)
      || canon.lead_ids_of_keys(ARRAY(SELECT d.lead_source_pk FROM canon_internal.cabinet_lead_state_dirty d));
    v_ids := ARRAY(SELECT DISTINCT unnest(v_ids));
    -- The rows the corrected counters count: stored ones less the stored rows of these,
    -- plus these as the views show them (one per dated lead row).
    SELECT (SELECT coalesce(sum(c.leads), 0) FROM canon_internal.cabinet_lead_state_counts c)
           - count(*) FILTER (WHERE n.stored) + count(*) FILTER (WHERE n.dated)
    INTO v_total
    FROM canon.lead_ids_not_current(v_ids) n;
    IF v_dated IS NOT NULL AND v_total = v_dated THEN
      RETURN v_ids;
    END IF;
  END IF;
  -- Every dated lead row and every stored row (set-based: the stored rows that are
  -- current, the others evaluated live once).
  RETURN ARRAY(SELECT l.id FROM public.module_ct_cabinet_leads l WHERE isfinite(l.lead_created_at)
               UNION SELECT s.lead_id FROM canon_internal.cabinet_lead_state s);
END
$$;
COMMENT ON FUNCTION canon.lead_ids_maybe_not_current(boolean) IS
  'Lead row ids whose stored state may not be current (marked, or written since the last lead read when p_read_leads); every lead and stored row when the counters corrected for them do not add up or the claim rules changed.';

-- snapshot of sql/canon/canon.lead_ids_not_current.sql
-- canon.lead_ids_not_current: of the given lead row ids, those whose stored state is not
-- current by the rule of canon.v_cabinet_lead_status_current (no stored row, no lead row,
-- another key or date, key marked dirty, claim rules changed), each with whether it has a
-- stored row and whether it is a dated lead row (then the views show it live). The one
-- test shared by the counts that correct the counters for such rows:
-- canon.limbo_counts_delta, canon.funnel_counts_delta, canon.lead_ids_maybe_not_current.
CREATE OR REPLACE FUNCTION canon.lead_ids_not_current(p_lead_ids integer[])
RETURNS TABLE (lead_id integer, stored boolean, dated boolean)
LANGUAGE sql
STABLE
ROWS 10
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
  SELECT x.lead_id, s.lead_id IS NOT NULL, coalesce(isfinite(l.lead_created_at), false)
  FROM (SELECT DISTINCT unnest(p_lead_ids) AS lead_id) x
  LEFT JOIN public.module_ct_cabinet_leads l ON l.id = x.lead_id
  LEFT JOIN canon_internal.cabinet_lead_state s ON s.lead_id = x.lead_id
  WHERE s.lead_id IS NULL OR l.id IS NULL
     OR s.lead_date IS DISTINCT FROM canon.lead_date_of(l.lead_created_at)
     OR s.lead_source_pk IS DISTINCT FROM canon.lead_source_pk(l.external_id, l.id)
     OR EXISTS (SELECT 1 FROM canon_internal.cabinet_lead_state_dirty d WHERE d.lead_source_pk = s.lead_source_pk)
     OR (SELECT m.full_refresh_needed FROM canon_internal.cabinet_lead_state_meta m)
$$;
COMMENT ON FUNCTION canon.lead_ids_not_current(integer[]) IS
  'The given lead row ids whose stored state is not current (the rule of canon.v_cabinet_lead_status_current), with whether each has a stored row and is a dated lead row.';

-- snapshot of sql/canon/canon.lead_ids_of_keys.sql
-- canon.lead_ids_of_keys: the lead rows (ids) that carry the given lead keys, as keyed in
-- canon_internal.lead_keys or stored in canon_internal.cabinet_lead_state (a row re-keyed since it was
-- stored is found under both keys). What a changed key means for the lead state: used by
-- step 7 and ops.refresh_cabinet_lead_state to turn keys into rows to re-evaluate.
CREATE OR REPLACE FUNCTION canon.lead_ids_of_keys(p_keys text[])
RETURNS integer[]
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT ARRAY(
    SELECT k.lead_id FROM canon_internal.lead_keys k WHERE k.lead_source_pk = ANY (p_keys)
    UNION
    -- (joined to the keys, not "= ANY (p_keys)": through the hash index that became a
    -- bitmap scan whose recheck compared every row of the blocks read with the whole
    -- array, 290 ms for 7,440 keys of a backfill run; probed key by key it is 10 ms)
    SELECT s.lead_id
    FROM unnest(p_keys) x (lead_source_pk)
    JOIN canon_internal.cabinet_lead_state s ON s.lead_source_pk = x.lead_source_pk
    ORDER BY 1)
$$;
COMMENT ON FUNCTION canon.lead_ids_of_keys(text[]) IS
  'Lead row ids carrying the given lead keys (canon_internal.lead_keys and canon_internal.cabinet_lead_state).';

-- snapshot of sql/canon/canon.lead_keys_drift.sql
-- canon.lead_keys_drift: lead rows whose cache row in canon_internal.lead_keys is not what
-- canon.refresh_lead_keys would write now: not keyed, keyed under another key or with
-- other source values (hash), listed unkeyed while their key fits, or keyed while the row
-- is gone. Rows written since the last read, and rows deleted since (as the statistics
-- say), are the next run's work, not drift. Read by ops.check_caches, repaired by
-- ops.repair_caches.
CREATE OR REPLACE FUNCTION canon.lead_keys_drift()
RETURNS TABLE (lead_id integer, example text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
  WITH seen AS (
    SELECT canon.xmin_age_limit(s.seen_xmin) AS age_limit,
           s.tuples_deleted IS DISTINCT FROM pg_stat_get_tuples_deleted('public.module_ct_cabinet_leads'::regclass) AS deleted_since
    FROM canon_internal.source_scan_state s
    WHERE s.source_table = 'module_ct_cabinet_leads'
  ),
  leads AS (
    SELECT l.id, canon.lead_source_pk(l.external_id, l.id) AS lead_source_pk,
           canon.lead_source_hash(l.external_id, l.lead_created_at, l.park_phone, l.asset_plate_number,
                              l.first_name, l.middle_name, l.last_name) AS source_hash,
           (se.age_limit IS NULL OR age(l.xmin) <= se.age_limit) AS written_since_read
    FROM public.module_ct_cabinet_leads l CROSS JOIN seen se
  )
  SELECT coalesce(l.id, k.lead_id, u.lead_id),
         format('lead id %s: %s', coalesce(l.id, k.lead_id, u.lead_id),
                CASE WHEN l.id IS NULL THEN 'cached, but the lead row is gone'
                     WHEN k.lead_id IS NULL AND u.lead_id IS NULL THEN 'not keyed'
                     WHEN k.lead_id IS NULL THEN 'listed unkeyed with a key of ' || length(l.lead_source_pk) || ' characters'
                     WHEN k.lead_source_pk <> l.lead_source_pk THEN 'keyed under ' || left(k.lead_source_pk, 40) || ', its key is ' || left(l.lead_source_pk, 40)
                     ELSE 'keyed with values that are not the row''s' END)
  FROM leads l
  FULL JOIN canon_internal.lead_keys k ON k.lead_id = l.id
  FULL JOIN canon_internal.lead_rows_unkeyed u ON u.lead_id = coalesce(l.id, k.lead_id)
  WHERE NOT coalesce(l.written_since_read, false)
    AND (l.id IS NULL
         OR (k.lead_id IS NULL AND (u.lead_id IS NULL OR length(l.lead_source_pk) <= 200))
         OR (k.lead_id IS NOT NULL AND (k.lead_source_pk <> l.lead_source_pk OR k.source_hash <> l.source_hash)))
    AND NOT (l.id IS NULL AND coalesce((SELECT se.deleted_since FROM seen se), true))
$$;
COMMENT ON FUNCTION canon.lead_keys_drift() IS
  'Lead rows whose canon_internal.lead_keys (or lead_rows_unkeyed) row differs from what keying them now would write; the next run''s work excepted.';

-- snapshot of sql/canon/canon.lead_source_hash.sql
-- canon.lead_source_hash: the fingerprint of the source values a lead row is keyed from
-- (canon_internal.lead_keys.source_hash): a row is keyed again when it differs. The one definition,
-- used by canon.refresh_lead_keys and the cache check canon.lead_keys_drift. STABLE as
-- timestamp::text is (DateStyle), so that it is inlined.
CREATE OR REPLACE FUNCTION canon.lead_source_hash(
  p_external_id text, p_lead_created_at timestamp without time zone, p_park_phone text, p_asset_plate_number text,
  p_first_name text, p_middle_name text, p_last_name text)
RETURNS text
LANGUAGE sql
STABLE
PARALLEL SAFE
AS $$
  SELECT md5(concat_ws(E'\x1f', p_external_id, p_lead_created_at::text, p_park_phone, p_asset_plate_number,
                       p_first_name, p_middle_name, p_last_name))
$$;
COMMENT ON FUNCTION canon.lead_source_hash(text, timestamp without time zone, text, text, text, text, text) IS
  'md5 of the lead row values its keys are computed from (canon_internal.lead_keys.source_hash).';

-- snapshot of sql/canon/canon.lead_source_pk.sql
-- canon.lead_source_pk: the one definition of a cabinet lead's key, used by every
-- link, claim, view, tool and the import: the external_id without the blanks at its
-- ends (canon.blank_characters: spaces, TAB, CR/LF, NBSP, other Unicode spaces, zero
-- width spaces), or the integer id as text when nothing is left. 'NB-1', 'NB-1<TAB>'
-- and '<NBSP>NB-1' are one lead. A plain SQL function with no SET clause, so that it is
-- inlined into the views that evaluate it for every lead row (names schema-qualified).
-- canon.lead_source_pk(external_id, NULL) is an external id's key, NULL when blank.
CREATE OR REPLACE FUNCTION canon.lead_source_pk(p_external_id text, p_id integer)
RETURNS text
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
  SELECT COALESCE(NULLIF(pg_catalog.btrim(p_external_id, canon.blank_characters()), ''), p_id::text)
$$;
COMMENT ON FUNCTION canon.lead_source_pk(text, integer) IS
  'Lead key: COALESCE(NULLIF(btrim(external_id, canon.blank_characters()), ''''), id::text): the external_id without blanks at its ends, else the id.';

-- snapshot of sql/canon/canon.lead_state_drift.sql
-- canon.lead_state_drift: lead rows whose stored state (canon_internal.cabinet_lead_state) is not
-- what the live definition gives and no mark or pending read explains it: a dated row
-- without a stored row, a stored row of a row gone or undated, a stored row under another
-- key or date, and (for the leads of the last doctor_lead_state_days days) a stored row
-- whose values differ from canon.v_cabinet_lead_status. Not drift: rows written since the
-- last read, rows and keys marked, trips of the lead's driver written since the last whole
-- read of summary_daily or any trip row deleted or updated since, changed claim rules.
-- Read by ops.check_caches, repaired by ops.repair_caches.
CREATE OR REPLACE FUNCTION canon.lead_state_drift()
RETURNS TABLE (lead_id integer, example text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
  WITH seen AS (
    SELECT canon.xmin_age_limit(max(s.seen_xmin) FILTER (WHERE s.source_table = 'module_ct_cabinet_leads')) AS leads_limit,
           canon.xmin_age_limit(max(s.full_seen_xmin) FILTER (WHERE s.source_table = 'summary_daily')) AS trips_limit,
           coalesce(bool_or(s.source_table = 'summary_daily'
                   AND (s.tuples_deleted IS DISTINCT FROM pg_stat_get_tuples_deleted('public.summary_daily'::regclass)
                        OR s.tuples_updated IS DISTINCT FROM pg_stat_get_tuples_updated('public.summary_daily'::regclass))), true) AS trips_gone_since
    FROM canon_internal.source_scan_state s
  ),
  rules_changed AS (
    SELECT m.full_refresh_needed AS changed FROM canon_internal.cabinet_lead_state_meta m
  ),
  marked AS (
    SELECT p.lead_id FROM canon_internal.cabinet_lead_state_pending p
    UNION
    SELECT unnest(canon.lead_ids_of_keys(ARRAY(SELECT d.lead_source_pk FROM canon_internal.cabinet_lead_state_dirty d
                                               UNION SELECT d.lead_source_pk FROM canon_internal.cabinet_lead_state_paid_dirty d)))
  ),
  leads AS (
    SELECT l.id, canon.lead_source_pk(l.external_id, l.id) AS lead_source_pk, l.lead_created_at::date AS lead_date,
           (se.leads_limit IS NULL OR age(l.xmin) <= se.leads_limit) AS written_since_read
    FROM public.module_ct_cabinet_leads l CROSS JOIN seen se
    WHERE isfinite(l.lead_created_at)
  ),
  membership AS (
    SELECT coalesce(l.id, s.lead_id) AS lead_id,
           format('lead id %s: %s', coalesce(l.id, s.lead_id),
                  CASE WHEN s.lead_id IS NULL THEN 'dated, no stored state'
                       WHEN l.id IS NULL THEN 'stored state of a lead row gone or undated'
                       ELSE 'stored under the key or date of another version of the row' END) AS example
    FROM leads l
    FULL JOIN canon_internal.cabinet_lead_state s ON s.lead_id = l.id
    WHERE (s.lead_id IS NULL OR l.id IS NULL OR s.lead_source_pk <> l.lead_source_pk OR s.lead_date <> l.lead_date)
      AND NOT coalesce(l.written_since_read, false)
  ),
  recent AS (
    SELECT s.*
    FROM canon_internal.cabinet_lead_state s
    -- (the server's date: a day either way does not matter here, and a broken business time
    -- zone, which doctor reports, must not stop the other checks)
    WHERE s.lead_date >= current_date - canon.setting('doctor_lead_state_days')::integer
  ),
  values_differ AS (
    SELECT s.lead_id, s.driver_id,
           format('lead id %s: stored %s with %s trips, live %s with %s trips', s.lead_id, s.limbo_stage, s.trips_in_window,
                  v.limbo_stage, v.trips_in_window) AS example
    FROM recent s
    CROSS JOIN LATERAL (SELECT * FROM canon.v_cabinet_lead_status c WHERE c.lead_id = s.lead_id OFFSET 0) v
    WHERE s.lead_source_pk = v.lead_source_pk AND s.lead_date = v.lead_date
      AND (s.person_key, s.driver_id, s.window_end, s.trips_in_window, s.trip_rows_in_window,
           s.reached_m1, s.reached_m5, s.reached_m25, s.expected_amount,
           s.has_claim_m1, s.has_claim_m5, s.has_claim_m25, s.limbo_stage, s.key_rows, s.paid_claims, s.paid_amount)
          IS DISTINCT FROM
          (v.person_key, v.driver_id, v.window_end, v.trips_in_window, v.trip_rows_in_window,
           v.reached_m1, v.reached_m5, v.reached_m25, v.expected_amount,
           v.has_claim_m1, v.has_claim_m5, v.has_claim_m25, v.limbo_stage, v.key_rows, v.paid_claims, v.paid_amount)
  )
  SELECT x.lead_id, x.example
  FROM (SELECT m.lead_id, m.example FROM membership m
        UNION ALL
        SELECT d.lead_id, d.example
        FROM values_differ d CROSS JOIN seen se
        -- trips the next run reads: written since the last whole read, or rows gone since
        WHERE NOT se.trips_gone_since
          AND NOT EXISTS (SELECT 1 FROM public.summary_daily t
                          WHERE t.driver_id::text = d.driver_id
                            AND (se.trips_limit IS NULL OR age(t.xmin) <= se.trips_limit))) x
  WHERE NOT EXISTS (SELECT 1 FROM marked m WHERE m.lead_id = x.lead_id)
    AND NOT (SELECT r.changed FROM rules_changed r)
$$;
COMMENT ON FUNCTION canon.lead_state_drift() IS
  'Lead rows whose stored state is missing, orphaned, under another key or date, or (recent leads) differs from the live definition, with no mark or pending read to explain it.';

-- snapshot of sql/canon/canon.lead_state_marks_drift.sql
-- canon.lead_state_marks_drift: marks that every completed run would have consumed: a
-- pending lead row (canon_internal.cabinet_lead_state_pending) or dirty key
-- (canon_internal.cabinet_lead_state_dirty) marked before the start of the last completed,
-- non-dry run. Read by ops.check_caches, repaired by ops.repair_caches.
CREATE OR REPLACE FUNCTION canon.lead_state_marks_drift()
RETURNS TABLE (lead_id integer, lead_source_pk text, example text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH last_run AS (
    SELECT max(r.started_at) AS started_at
    FROM canon.ingestion_runs r
    WHERE r.job_name = 'reconcile_cabinet_leads_pipeline' AND r.status = 'COMPLETED' AND NOT r.dry_run
  )
  SELECT p.lead_id, NULL::text, format('lead id %s marked at %s', p.lead_id, p.marked_at)
  FROM canon_internal.cabinet_lead_state_pending p CROSS JOIN last_run r
  WHERE p.marked_at < r.started_at
  UNION ALL
  SELECT NULL, d.lead_source_pk, format('lead key %s marked at %s', left(d.lead_source_pk, 40), d.marked_at)
  FROM canon_internal.cabinet_lead_state_dirty d CROSS JOIN last_run r
  WHERE d.marked_at < r.started_at
  UNION ALL
  SELECT NULL, d.lead_source_pk, format('lead key %s marked paid at %s', left(d.lead_source_pk, 40), d.marked_at)
  FROM canon_internal.cabinet_lead_state_paid_dirty d CROSS JOIN last_run r
  WHERE d.marked_at < r.started_at
$$;
COMMENT ON FUNCTION canon.lead_state_marks_drift() IS
  'Lead state marks older than the start of the last completed run (which would have consumed them).';

-- snapshot of sql/canon/canon.limbo_counts_delta.sql
-- canon.limbo_counts_delta: the stored lead state counted (canon_internal.cabinet_lead_state_counts,
-- leads > 0), with, for those of the given lead rows whose stored state is not current
-- (canon.lead_ids_not_current: the rule of canon.v_cabinet_lead_status_current), their
-- stored rows taken off (leads = -1) and their live rows added (leads = 1, one
-- canon.lead_status_live each: as a semi-join with canon.v_cabinet_lead_status the planner
-- evaluated the chain of every lead, minutes at 1M leads). Summed by week and stage it is
-- the limbo view's count when the given rows include every row whose stored state may not
-- be current. Used by canon.limbo_week_counts_of_state and the report's counts.
CREATE OR REPLACE FUNCTION canon.limbo_counts_delta(p_lead_ids integer[])
RETURNS TABLE (week_start date, limbo_stage text, with_identity boolean, with_driver boolean, leads bigint)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
  WITH not_current AS MATERIALIZED (
    SELECT n.lead_id FROM canon.lead_ids_not_current(p_lead_ids) n
  )
  SELECT date_trunc('week', c.lead_date::timestamp)::date, c.limbo_stage, c.with_identity, c.with_driver, c.leads
  FROM canon_internal.cabinet_lead_state_counts c
  UNION ALL
  SELECT date_trunc('week', s.lead_date::timestamp)::date, s.limbo_stage, s.person_key IS NOT NULL, s.driver_id IS NOT NULL, -1
  FROM not_current n
  JOIN canon_internal.cabinet_lead_state s ON s.lead_id = n.lead_id
  UNION ALL
  SELECT date_trunc('week', v.lead_date::timestamp)::date, v.limbo_stage, v.person_key IS NOT NULL, v.driver_id IS NOT NULL, 1
  FROM not_current n
  CROSS JOIN LATERAL canon.lead_status_live(n.lead_id) v
$$;
COMMENT ON FUNCTION canon.limbo_counts_delta(integer[]) IS
  'Stored state counters, with those of the given lead rows whose stored state is not current counted live instead: the limbo view''s counts when those are all the rows that may not be current.';

-- snapshot of sql/canon/canon.limbo_stage_of.sql
-- canon.limbo_stage_of: a lead's limbo stage (SPEC 8) from its chain and the claims of
-- its key, the first that applies: NO_IDENTITY, NO_DRIVER, NO_TRIPS_14D, TRIPS_NO_CLAIM,
-- OK. The one definition: canon.v_cabinet_lead_status computes it for every lead, and
-- step 7 (canon.generate_cabinet_claims) with it moves the leads it has just claimed on,
-- without reading their trips a second time. One expression (inlined).
CREATE OR REPLACE FUNCTION canon.limbo_stage_of(
  p_person_key uuid, p_driver_id text, p_trips_in_window bigint,
  p_reached_m1 boolean, p_reached_m5 boolean, p_reached_m25 boolean,
  p_has_claim_m1 boolean, p_has_claim_m5 boolean, p_has_claim_m25 boolean)
RETURNS text
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
  SELECT CASE
           WHEN p_person_key IS NULL THEN 'NO_IDENTITY'
           WHEN p_driver_id IS NULL THEN 'NO_DRIVER'
           WHEN p_trips_in_window <= 0 THEN 'NO_TRIPS_14D'
           WHEN (p_reached_m1 AND NOT p_has_claim_m1)
             OR (p_reached_m5 AND NOT p_has_claim_m5)
             OR (p_reached_m25 AND NOT p_has_claim_m25) THEN 'TRIPS_NO_CLAIM'
           ELSE 'OK'
         END
$$;
COMMENT ON FUNCTION canon.limbo_stage_of(uuid, text, bigint, boolean, boolean, boolean, boolean, boolean, boolean) IS
  'Limbo stage from a lead''s person, driver, trips in window, milestones reached and claims present: NO_IDENTITY, NO_DRIVER, NO_TRIPS_14D, TRIPS_NO_CLAIM or OK (the first that applies).';

-- snapshot of sql/canon/canon.limbo_week_counts_of_state.sql
-- canon.limbo_week_counts_of_state: leads per limbo stage for each lead week, as
-- ops.v_cabinet_leads_limbo would count them, without a pass over every lead: the counters
-- of the stored state (canon_internal.cabinet_lead_state_counts), less the stored rows that may not
-- be current, plus the view's rows for those leads (canon.limbo_counts_delta). The rows
-- that may not be current: canon.lead_ids_maybe_not_current (marked, written since the
-- last read with p_read_leads; every lead row when the counts do not add up). Without
-- p_read_leads the lead rows are taken as of the last read (the snapshot of a run, moments
-- after its own read).
-- Callers: ops.limbo_week_counts (live), ops.snapshot_limbo.
CREATE OR REPLACE FUNCTION canon.limbo_week_counts_of_state(p_read_leads boolean)
RETURNS TABLE (
  week_start            date,
  leads                 integer,
  leads_with_identity   integer,
  leads_with_driver     integer,
  limbo_no_identity     integer,
  limbo_no_driver       integer,
  limbo_no_trips_14d    integer,
  limbo_trips_no_claim  integer,
  limbo_ok              integer
)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
  v_ids integer[] := canon.lead_ids_maybe_not_current(p_read_leads);
BEGIN
  RETURN QUERY
  SELECT x.week_start,
         sum(x.leads)::integer,
         coalesce(sum(x.leads) FILTER (WHERE x.with_identity), 0)::integer,
         coalesce(sum(x.leads) FILTER (WHERE x.with_driver), 0)::integer,
         coalesce(sum(x.leads) FILTER (WHERE x.limbo_stage = 'NO_IDENTITY'), 0)::integer,
         coalesce(sum(x.leads) FILTER (WHERE x.limbo_stage = 'NO_DRIVER'), 0)::integer,
         coalesce(sum(x.leads) FILTER (WHERE x.limbo_stage = 'NO_TRIPS_14D'), 0)::integer,
         coalesce(sum(x.leads) FILTER (WHERE x.limbo_stage = 'TRIPS_NO_CLAIM'), 0)::integer,
         coalesce(sum(x.leads) FILTER (WHERE x.limbo_stage = 'OK'), 0)::integer
  FROM canon.limbo_counts_delta(v_ids) x
  GROUP BY x.week_start
  HAVING sum(x.leads) <> 0
  ORDER BY x.week_start;
END
$$;
COMMENT ON FUNCTION canon.limbo_week_counts_of_state(boolean) IS
  'Leads per limbo stage per lead week as ops.v_cabinet_leads_limbo counts them, from the stored state''s counters corrected for the rows that may not be current (marked, or written since the last lead read when p_read_leads); counts the view in full when they do not add up.';

-- snapshot of sql/canon/canon.link_decisions.sql
-- canon.link_decisions: pipeline step 6. Decides every lead of the batch
-- (pg_temp.cabinet_batch) with canon.lead_decisions and writes the outcome set-based (links
-- through canon.write_lead_links, the one link writer), in
-- the run's transaction: a person per matched driver that has none (created only with its
-- links), lead and driver links, origins, unmatched rows resolved or upserted with their
-- reason, candidates and retry bookkeeping (an IGNORED decision is kept), the batch's keys
-- taken off the never-evaluated list. With p_only_limbo a NO_DRIVER lead's person gets the
-- driver it was missing when that driver is free. Returns step stats.
CREATE OR REPLACE FUNCTION canon.link_decisions(p_run_id bigint, p_only_limbo boolean)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET client_min_messages = warning
SET jit = off
AS $$
DECLARE
  v_t timestamptz;
  v_decide_ms numeric;
  v_new_persons integer;
  v_driver_links integer;
  v_lead_links integer;
  v_origins integer;
  v_resolved integer;
  v_unmatched integer;
  v_no_driver_repaired integer := 0;
  v_evaluated_cleared integer;
BEGIN
  -- Decisions for the whole batch at once.
  v_t := clock_timestamp();
  DROP TABLE IF EXISTS pg_temp.cabinet_decisions;
  CREATE TEMP TABLE cabinet_decisions ON COMMIT DROP AS
  SELECT d.*, b.batch_kind, b.person_key AS lead_person_key, k.lead_created_at,
         dl.person_key AS driver_person_key
  FROM canon.lead_decisions(ARRAY(SELECT b.lead_id FROM pg_temp.cabinet_batch b)) d
  JOIN pg_temp.cabinet_batch b ON b.lead_id = d.lead_id
  JOIN canon_internal.lead_keys k ON k.lead_id = d.lead_id
  LEFT JOIN canon.identity_links dl ON dl.source_table = 'drivers' AND dl.source_pk = d.driver_id;
  v_decide_ms := round((extract(epoch FROM clock_timestamp() - v_t) * 1000)::numeric, 1);

  -- Linking (canon.write_lead_links, the one link writer): persons, links, origins.
  v_t := clock_timestamp();
  DROP TABLE IF EXISTS pg_temp.cabinet_links_to_write;
  CREATE TEMP TABLE cabinet_links_to_write ON COMMIT DROP AS
  SELECT d.lead_source_pk, d.lead_created_at, d.driver_id, d.driver_person_key,
         d.match_rule, d.match_score, d.confidence_level, d.evidence, NULL::jsonb AS driver_evidence
  FROM pg_temp.cabinet_decisions d
  WHERE d.decision = 'MATCH' AND d.batch_kind = 'NO_IDENTITY';
  SELECT w.new_persons, w.driver_links, w.lead_links, w.origins
  INTO v_new_persons, v_driver_links, v_lead_links, v_origins
  FROM canon.write_lead_links(p_run_id) w;
  DROP TABLE pg_temp.cabinet_links_to_write;

  UPDATE canon.identity_unmatched u
  SET status = 'RESOLVED', resolved_at = now(), last_attempt_at = now(), last_run_id = p_run_id,
      attempts = u.attempts + 1, retry_due = false
  FROM pg_temp.cabinet_decisions d
  WHERE d.decision = 'MATCH' AND d.batch_kind = 'NO_IDENTITY'
    AND u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = d.lead_source_pk AND u.status = 'OPEN';
  GET DIAGNOSTICS v_resolved = ROW_COUNT;

  -- NO_DRIVER repair (only-limbo): the lead's person gets the matched driver if it is free.
  IF p_only_limbo THEN
    INSERT INTO canon.identity_links (source_table, source_pk, person_key, match_rule, match_score, confidence_level, evidence, run_id)
    SELECT DISTINCT ON (d.driver_id) 'drivers', d.driver_id, d.lead_person_key, d.match_rule, d.match_score, d.confidence_level,
           jsonb_build_object('repaired_no_driver_for_lead', d.lead_source_pk) || d.evidence, p_run_id
    FROM pg_temp.cabinet_decisions d
    WHERE d.decision = 'MATCH' AND d.batch_kind = 'NO_DRIVER' AND d.driver_person_key IS NULL
    ORDER BY d.driver_id, d.lead_created_at
    ON CONFLICT (source_table, source_pk) DO NOTHING;
    GET DIAGNOSTICS v_no_driver_repaired = ROW_COUNT;
  END IF;

  -- Leads that stay unmatched: reason, keys and candidates; retry bookkeeping; IGNORED kept.
  INSERT INTO canon.identity_unmatched AS u (
    source_table, source_pk, reason_code, details, candidates, status,
    first_attempt_at, last_attempt_at, first_run_id, last_run_id, attempts)
  SELECT 'module_ct_cabinet_leads', d.lead_source_pk, d.decision, d.details, d.candidates, 'OPEN',
         now(), now(), p_run_id, p_run_id, 1
  FROM pg_temp.cabinet_decisions d
  WHERE d.decision <> 'MATCH' AND d.batch_kind = 'NO_IDENTITY'
  ON CONFLICT (source_table, source_pk) DO UPDATE
    SET reason_code = excluded.reason_code, details = excluded.details, candidates = excluded.candidates,
        status = CASE WHEN u.status = 'IGNORED' THEN 'IGNORED' ELSE 'OPEN' END,
        resolved_at = CASE WHEN u.status = 'IGNORED' THEN u.resolved_at END,
        last_attempt_at = excluded.last_attempt_at, last_run_id = excluded.last_run_id,
        attempts = u.attempts + 1, retry_due = false;
  GET DIAGNOSTICS v_unmatched = ROW_COUNT;
  -- Every NO_IDENTITY lead of the batch is now linked or unmatched: no longer pending.
  DELETE FROM canon_internal.lead_keys_pending q
  USING canon_internal.lead_keys k, (SELECT DISTINCT d.lead_source_pk FROM pg_temp.cabinet_decisions d WHERE d.batch_kind = 'NO_IDENTITY') d
  WHERE k.lead_source_pk = d.lead_source_pk AND q.lead_id = k.lead_id;
  GET DIAGNOSTICS v_evaluated_cleared = ROW_COUNT;
  RETURN jsonb_build_object(
    'leads_evaluated', (SELECT count(*) FROM pg_temp.cabinet_decisions),
    'newly_linked', v_lead_links,
    'newly_linked_by_rule', (SELECT coalesce(jsonb_object_agg(r.match_rule, r.n), '{}'::jsonb) FROM (
        SELECT d.match_rule, count(*) AS n FROM pg_temp.cabinet_decisions d
        WHERE d.decision = 'MATCH' AND d.batch_kind = 'NO_IDENTITY' GROUP BY d.match_rule) r),
    'new_persons', v_new_persons,
    'persons_reused', v_lead_links - (SELECT count(*) FROM pg_temp.cabinet_decisions d
                                       WHERE d.decision = 'MATCH' AND d.batch_kind = 'NO_IDENTITY' AND d.driver_person_key IS NULL),
    'newly_driver_linked', v_driver_links + v_no_driver_repaired,
    'no_driver_repaired', v_no_driver_repaired,
    'origins_written', v_origins,
    'previously_unmatched_now_linked', v_resolved,
    'unmatched', v_unmatched,
    'unmatched_by_reason', (SELECT coalesce(jsonb_object_agg(r.decision, r.n), '{}'::jsonb) FROM (
        SELECT d.decision, count(*) AS n FROM pg_temp.cabinet_decisions d
        WHERE d.decision <> 'MATCH' GROUP BY d.decision) r),
    'ambiguous', (SELECT count(*) FROM pg_temp.cabinet_decisions d WHERE d.decision = 'AMBIGUOUS'),
    'conflicts', (SELECT count(*) FROM pg_temp.cabinet_decisions d WHERE d.decision = 'CONFLICT'),
    -- (the predicate of identity_unmatched_open_idx, read index-only)
    'open_unmatched_total', (SELECT count(*) FROM canon.identity_unmatched u WHERE u.status = 'OPEN'),
    'pending_cleared', v_evaluated_cleared,
    'durations_ms', jsonb_build_object(
      'decide', v_decide_ms,
      'link', round((extract(epoch FROM clock_timestamp() - v_t) * 1000)::numeric, 1)));
END
$$;
COMMENT ON FUNCTION canon.link_decisions(bigint, boolean) IS
  'Pipeline step 6: decides the batch (canon.lead_decisions) and writes persons, links, origins and unmatched reasons set-based. Returns step stats.';

-- snapshot of sql/canon/canon.link_probabilistic.sql
-- canon.link_probabilistic: pipeline step 6b, right after canon.link_decisions. The leads of
-- the batch the rules left NO_CANDIDATES or WEAK_MATCH_ONLY (pg_temp.cabinet_decisions) go
-- through the probabilistic tier (canon.probabilistic_decisions), set-based: LINK writes
-- (canon.write_lead_links, the one link writer) the person (reused, or one new per driver),
-- lead and driver links with rule R4_PROBABILISTIC, score = probability x 100 and the
-- evidence per field, the origin, and resolves the
-- unmatched row link_decisions just wrote; REVIEW turns that row into PROBABLE_MATCH with the
-- tier's candidates and weights (details.probabilistic says why it was not linked); NONE
-- leaves the rules' reason. Returns step stats.
CREATE OR REPLACE FUNCTION canon.link_probabilistic(p_run_id bigint)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET client_min_messages = warning
SET jit = off
AS $$
DECLARE
  v_t timestamptz;
  v_decide_ms numeric;
  v_evaluated integer;
  v_new_persons integer;
  v_driver_links integer;
  v_lead_links integer;
  v_origins integer;
  v_review integer;
  v_flushed bigint;
  v_flush_ms numeric;
BEGIN
  -- the drivers indexed by this run, merged into the blocks' indexes before they are probed
  v_t := clock_timestamp();
  v_flushed := canon.flush_driver_index_keys();
  v_flush_ms := round((extract(epoch FROM clock_timestamp() - v_t) * 1000)::numeric, 1);
  v_t := clock_timestamp();
  DROP TABLE IF EXISTS pg_temp.cabinet_fs_decisions;
  CREATE TEMP TABLE cabinet_fs_decisions ON COMMIT DROP AS
  SELECT f.*, d.decision AS rules_decision, k.lead_created_at, dl.person_key AS driver_person_key
  FROM canon.probabilistic_decisions(ARRAY(
         SELECT d.lead_id FROM pg_temp.cabinet_decisions d
         WHERE d.batch_kind = 'NO_IDENTITY' AND d.decision IN ('NO_CANDIDATES', 'WEAK_MATCH_ONLY'))) f
  JOIN pg_temp.cabinet_decisions d ON d.lead_id = f.lead_id
  JOIN canon_internal.lead_keys k ON k.lead_id = f.lead_id
  LEFT JOIN canon.identity_links dl ON dl.source_table = 'drivers' AND dl.source_pk = f.driver_id
  -- only leads still OPEN (an IGNORED one stays as a person left it)
  JOIN canon.identity_unmatched u ON u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = f.lead_source_pk
                                 AND u.status = 'OPEN'
  WHERE f.outcome IN ('LINK', 'REVIEW');
  v_evaluated := (SELECT count(*) FROM pg_temp.cabinet_decisions d
                  WHERE d.batch_kind = 'NO_IDENTITY' AND d.decision IN ('NO_CANDIDATES', 'WEAK_MATCH_ONLY'));
  v_decide_ms := round((extract(epoch FROM clock_timestamp() - v_t) * 1000)::numeric, 1);

  -- LINK (canon.write_lead_links, the one link writer): persons, links, origins.
  v_t := clock_timestamp();
  DROP TABLE IF EXISTS pg_temp.cabinet_links_to_write;
  CREATE TEMP TABLE cabinet_links_to_write ON COMMIT DROP AS
  SELECT f.lead_source_pk, f.lead_created_at, f.driver_id, f.driver_person_key,
         'R4_PROBABILISTIC'::text AS match_rule, round(f.probability * 100, 2) AS match_score,
         CASE WHEN f.probability >= 0.9999 THEN 'HIGH' ELSE 'MEDIUM' END AS confidence_level,
         f.evidence || jsonb_build_object('rules', jsonb_build_array('R4_PROBABILISTIC'), 'rules_reason', f.rules_decision,
                                          'candidates', f.candidates) AS evidence,
         jsonb_build_object('fs_version', f.fs_version) AS driver_evidence
  FROM pg_temp.cabinet_fs_decisions f
  WHERE f.outcome = 'LINK';
  SELECT w.new_persons, w.driver_links, w.lead_links, w.origins
  INTO v_new_persons, v_driver_links, v_lead_links, v_origins
  FROM canon.write_lead_links(p_run_id) w;
  DROP TABLE pg_temp.cabinet_links_to_write;

  UPDATE canon.identity_unmatched u
  SET status = 'RESOLVED', resolved_at = now()
  FROM pg_temp.cabinet_fs_decisions f
  WHERE f.outcome = 'LINK'
    AND u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = f.lead_source_pk AND u.status = 'OPEN';

  -- REVIEW: the tier's candidates replace the rules' (a person decides from them).
  UPDATE canon.identity_unmatched u
  SET reason_code = 'PROBABLE_MATCH',
      candidates = f.candidates,
      details = u.details || jsonb_build_object('probabilistic', jsonb_build_object(
        'fs_version', f.fs_version, 'why_not_linked', f.why, 'probability', f.probability,
        'match_weight', f.match_weight, 'margin_bits', f.margin_bits, 'rules_reason', f.rules_decision,
        'in_words', f.evidence->>'in_words'))
  FROM pg_temp.cabinet_fs_decisions f
  WHERE f.outcome = 'REVIEW'
    AND u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = f.lead_source_pk AND u.status = 'OPEN';
  GET DIAGNOSTICS v_review = ROW_COUNT;

  RETURN jsonb_build_object(
    'leads_evaluated', v_evaluated,
    'newly_linked', v_lead_links,
    'new_persons', v_new_persons,
    'newly_driver_linked', v_driver_links,
    'origins_written', v_origins,
    'probable_match', v_review,
    'probable_match_by_why', (SELECT coalesce(jsonb_object_agg(r.why, r.n), '{}'::jsonb) FROM (
        SELECT f.why, count(*) AS n FROM pg_temp.cabinet_fs_decisions f WHERE f.outcome = 'REVIEW' GROUP BY f.why) r),
    'fs_version', (SELECT fv.version FROM canon.match_fs_versions fv WHERE fv.active),
    'index_pages_merged', v_flushed,
    'durations_ms', jsonb_build_object(
      'merge_index_keys', v_flush_ms,
      'decide', v_decide_ms,
      'link', round((extract(epoch FROM clock_timestamp() - v_t) * 1000)::numeric, 1)));
END
$$;
COMMENT ON FUNCTION canon.link_probabilistic(bigint) IS
  'Pipeline step 6b: the probabilistic tier on the batch''s NO_CANDIDATES / WEAK_MATCH_ONLY leads: LINK (R4_PROBABILISTIC, score = probability x 100, evidence per field), REVIEW (unmatched row becomes PROBABLE_MATCH with the tier''s candidates), NONE (untouched). Returns step stats.';

-- snapshot of sql/canon/canon.local_snapshot_xmin.sql
-- canon.local_snapshot_xmin: the oldest transaction of a snapshot that could still write
-- this database's tables: the smallest xid of its in-progress list that is not this
-- transaction's own nor one of p_foreign (transactions of other databases, read by
-- canon.foreign_xids just before the snapshot was taken: a transaction writes one database
-- only), else the snapshot's xmax. A row version the snapshot did not show was written by
-- such a transaction or a later one (a subtransaction's xid follows its parent's), so its
-- xmin is at least this: what canon_internal.source_scan_state.seen_xmin keeps. A long transaction
-- in another database of the cluster then does not make every run read again all that
-- was written since it began; any xid not known to be foreign counts (read again, never
-- skipped).
CREATE OR REPLACE FUNCTION canon.local_snapshot_xmin(p_snapshot pg_snapshot, p_foreign bigint[])
RETURNS xid8
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT coalesce(min(x.xid), pg_snapshot_xmax(p_snapshot))
  FROM pg_snapshot_xip(p_snapshot) x (xid)
  WHERE x.xid IS DISTINCT FROM pg_current_xact_id_if_assigned()
    AND NOT (x.xid::text::bigint % 4294967296 = ANY (coalesce(p_foreign, '{}')))
$$;
COMMENT ON FUNCTION canon.local_snapshot_xmin(pg_snapshot, bigint[]) IS
  'Oldest in-progress xid of the snapshot that could write this database (not ours, not in p_foreign), else its xmax: the seen_xmin of a read taken with it.';

-- snapshot of sql/canon/canon.make_date_or_null.sql
-- canon.make_date_or_null: the date of year/month/day, or NULL when that day does not
-- exist (month 13, 31 April, 29 February of a common year, year 0). Never raises.
-- Called by canon.parse_date_file, so it is inlined into the summary_daily index.
CREATE OR REPLACE FUNCTION canon.make_date_or_null(p_year integer, p_month integer, p_day integer)
RETURNS date
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
  SELECT CASE
    WHEN p_year < 1 OR p_month < 1 OR p_month > 12 OR p_day < 1 THEN NULL
    WHEN p_day <= 28 THEN make_date(p_year, p_month, p_day)
    WHEN p_day <= CASE
                    WHEN p_month IN (4, 6, 9, 11) THEN 30
                    WHEN p_month <> 2 THEN 31
                    WHEN p_year % 4 = 0 AND (p_year % 100 <> 0 OR p_year % 400 = 0) THEN 29
                    ELSE 28
                  END
      THEN make_date(p_year, p_month, p_day)
  END
$$;
COMMENT ON FUNCTION canon.make_date_or_null(integer, integer, integer) IS
  'make_date(y, m, d), or NULL when that calendar day does not exist. Never raises.';

-- snapshot of sql/canon/canon.mark_abandoned_runs.sql
-- canon.mark_abandoned_runs: marks FAILED every RUNNING run whose database backend is
-- gone or no longer executing that run's CALL (client killed, server restarted,
-- cancelled statement). Called at the start of every run.
CREATE OR REPLACE FUNCTION canon.mark_abandoned_runs()
RETURNS integer
LANGUAGE sql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH abandoned AS (
    UPDATE canon.ingestion_runs r
    SET status = 'FAILED',
        completed_at = clock_timestamp(),
        error_sqlstate = 'CL003',
        error_message = format('abandoned: backend %s that ran it is gone (process killed or server restarted); its writes were rolled back', r.backend_pid)
    WHERE r.status = 'RUNNING'
      AND NOT EXISTS (
        SELECT 1
        FROM pg_stat_activity a
        WHERE a.pid = r.backend_pid
          AND (r.backend_start IS NULL OR a.backend_start IS NULL OR a.backend_start = r.backend_start)
          -- A pooled connection outlives a cancelled CALL: alive means still in that CALL.
          -- (state is NULL when another role's session is not visible: trust the pid then.)
          AND (a.state IS NULL OR (a.state = 'active' AND a.query_start <= r.started_at))
      )
    RETURNING 1
  )
  SELECT count(*)::integer FROM abandoned
$$;
COMMENT ON FUNCTION canon.mark_abandoned_runs() IS 'Marks FAILED ("abandoned") every RUNNING run whose backend no longer exists; returns how many.';

-- snapshot of sql/canon/canon.mark_lead_keys_pending.sql
-- canon.mark_lead_keys_pending: trigger function on canon.identity_links and
-- canon.identity_unmatched. A lead key whose link or unmatched row goes away (deleted,
-- truncated, or moved to another key) is no longer evaluated: its rows of
-- canon_internal.lead_keys are listed in canon_internal.lead_keys_pending again, so that the next batch
-- selection (canon.select_lead_batch reads that table for never-evaluated leads) sees it.
CREATE OR REPLACE FUNCTION canon.mark_lead_keys_pending()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    INSERT INTO canon_internal.lead_keys_pending (lead_id, lead_date)
    SELECT k.lead_id, k.lead_date FROM canon_internal.lead_keys k
    ON CONFLICT (lead_id) DO NOTHING;
  ELSIF OLD.source_table = 'module_ct_cabinet_leads' THEN
    INSERT INTO canon_internal.lead_keys_pending (lead_id, lead_date)
    SELECT k.lead_id, k.lead_date FROM canon_internal.lead_keys k WHERE k.lead_source_pk = OLD.source_pk
    ON CONFLICT (lead_id) DO NOTHING;
  END IF;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION canon.mark_lead_keys_pending() IS 'Trigger: a lead whose link or unmatched row is removed is listed in canon_internal.lead_keys_pending again (evaluated as new by the next run).';

-- snapshot of sql/canon/canon.mark_lead_state_dirty_claims.sql
-- canon.mark_lead_state_dirty_claims: statement-level trigger function on
-- canon.claims_yango_cabinet_14d (INSERT, DELETE, UPDATE, transition tables old_rows /
-- new_rows): a lead's has_claim flags and stage depend on its claims, so the keys of the
-- claims written are marked in canon_internal.cabinet_lead_state_dirty; a claim paid, no
-- longer paid, or whose paid amount changed only touches the lead's paid_claims and
-- paid_amount, so its key is marked in canon_internal.cabinet_lead_state_paid_dirty. Claim
-- generation, which re-evaluates the leads it claimed itself, turns this off for its own
-- INSERT (cabinet.lead_state_marking = 'off', transaction-local).
CREATE OR REPLACE FUNCTION canon.mark_lead_state_dirty_claims()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF current_setting('cabinet.lead_state_marking', true) = 'off' THEN
    RETURN NULL;
  END IF;
  IF TG_OP = 'INSERT' THEN
    INSERT INTO canon_internal.cabinet_lead_state_dirty AS d (lead_source_pk)
    SELECT DISTINCT n.lead_source_pk FROM new_rows n
    ON CONFLICT (lead_source_pk) DO UPDATE SET mark_seq = excluded.mark_seq, marked_at = excluded.marked_at;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO canon_internal.cabinet_lead_state_dirty AS d (lead_source_pk)
    SELECT DISTINCT o.lead_source_pk FROM old_rows o
    ON CONFLICT (lead_source_pk) DO UPDATE SET mark_seq = excluded.mark_seq, marked_at = excluded.marked_at;
  ELSE
    -- Status changes do not alter a lead's stage (any status counts as present).
    INSERT INTO canon_internal.cabinet_lead_state_dirty AS d (lead_source_pk)
    SELECT k FROM (
      SELECT o.lead_source_pk AS k, o.milestone AS m FROM old_rows o
      EXCEPT
      SELECT n.lead_source_pk, n.milestone FROM new_rows n
      UNION
      SELECT n.lead_source_pk, n.milestone FROM new_rows n
      EXCEPT
      SELECT o.lead_source_pk, o.milestone FROM old_rows o
    ) x
    GROUP BY k
    ON CONFLICT (lead_source_pk) DO UPDATE SET mark_seq = excluded.mark_seq, marked_at = excluded.marked_at;
    -- Paid or no longer paid, or a paid amount changed: the lead's paid figures.
    INSERT INTO canon_internal.cabinet_lead_state_paid_dirty AS d (lead_source_pk)
    SELECT DISTINCT n.lead_source_pk
    FROM old_rows o
    JOIN new_rows n ON n.lead_source_pk = o.lead_source_pk AND n.milestone = o.milestone
    WHERE (o.status = 'paid', CASE WHEN o.status = 'paid' THEN o.amount_expected END)
          IS DISTINCT FROM (n.status = 'paid', CASE WHEN n.status = 'paid' THEN n.amount_expected END)
    ON CONFLICT (lead_source_pk) DO UPDATE SET mark_seq = excluded.mark_seq, marked_at = excluded.marked_at;
  END IF;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION canon.mark_lead_state_dirty_claims() IS
  'Trigger on canon.claims_yango_cabinet_14d: marks the lead keys whose claims appeared, disappeared or moved (canon_internal.cabinet_lead_state_dirty).';

-- snapshot of sql/canon/canon.mark_lead_state_dirty_links.sql
-- canon.mark_lead_state_dirty_links: statement-level trigger function on
-- canon.identity_links (one trigger per event, transition tables old_rows / new_rows).
-- Marks in canon_internal.cabinet_lead_state_dirty the lead keys whose state a link change can
-- alter: the lead links themselves, and every lead of a person whose driver links
-- changed (the person's driver may be another one now). One INSERT per statement,
-- whoever writes; the next evaluation (pipeline or ops.* tool) re-reads those leads.
CREATE OR REPLACE FUNCTION canon.mark_lead_state_dirty_links()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_lead_keys text[];
  v_persons uuid[];
BEGIN
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    v_lead_keys := ARRAY(SELECT n.source_pk FROM new_rows n WHERE n.source_table = 'module_ct_cabinet_leads');
    v_persons := ARRAY(SELECT DISTINCT n.person_key FROM new_rows n WHERE n.source_table = 'drivers');
  END IF;
  IF TG_OP IN ('DELETE', 'UPDATE') THEN
    v_lead_keys := coalesce(v_lead_keys, '{}') || ARRAY(SELECT o.source_pk FROM old_rows o WHERE o.source_table = 'module_ct_cabinet_leads');
    v_persons := coalesce(v_persons, '{}') || ARRAY(SELECT DISTINCT o.person_key FROM old_rows o WHERE o.source_table = 'drivers');
  END IF;

  INSERT INTO canon_internal.cabinet_lead_state_dirty AS d (lead_source_pk)
  SELECT k.lead_source_pk
  FROM (
    SELECT unnest(v_lead_keys) AS lead_source_pk
    UNION
    SELECT l.source_pk
    FROM canon.identity_links l
    WHERE l.person_key = ANY (v_persons) AND l.source_table = 'module_ct_cabinet_leads'
  ) k
  ON CONFLICT (lead_source_pk) DO UPDATE
    SET mark_seq = excluded.mark_seq, marked_at = excluded.marked_at;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION canon.mark_lead_state_dirty_links() IS
  'Trigger on canon.identity_links: marks the lead keys whose state a link change can alter (canon_internal.cabinet_lead_state_dirty).';

-- snapshot of sql/canon/canon.mark_lead_state_rules_changed.sql
-- canon.mark_lead_state_rules_changed: statement-level trigger function on
-- canon.claim_rules. Windows, thresholds and amounts of every lead may change with the
-- rules, so the next evaluation re-reads every lead (full_refresh_needed).
CREATE OR REPLACE FUNCTION canon.mark_lead_state_rules_changed()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  UPDATE canon_internal.cabinet_lead_state_meta SET full_refresh_needed = true, updated_at = now();
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION canon.mark_lead_state_rules_changed() IS
  'Trigger on canon.claim_rules: the next evaluation re-reads every lead''s state.';

-- snapshot of sql/canon/canon.mark_open_leads_due_fs_level.sql
-- canon.mark_open_leads_due_fs_level: row trigger function on canon.match_fs_levels: a change
-- of an m or u of the ACTIVE version of the probabilistic tier can change the outcome of every
-- lead left unmatched, so every OPEN one is due for a retry (canon.mark_open_leads_due does the
-- marking); the levels of an inactive version (a version being written, or an estimate of
-- ops.estimate_fs_version waiting for a person) change nothing until it is activated.
CREATE OR REPLACE FUNCTION canon.mark_open_leads_due_fs_level()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM canon.match_fs_versions v WHERE v.active AND v.version IN (OLD.version, NEW.version)) THEN
    UPDATE canon.identity_unmatched u SET retry_due = true WHERE u.status = 'OPEN' AND NOT u.retry_due;
  END IF;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION canon.mark_open_leads_due_fs_level() IS
  'Trigger on canon.match_fs_levels: a level of the active version changed, every OPEN unmatched lead is due for a retry; levels of inactive versions mark nothing.';

-- snapshot of sql/canon/canon.mark_open_leads_due.sql
-- canon.mark_open_leads_due: trigger function on canon.match_rules and
-- canon.match_parameters (statement triggers), and on canon.match_fs_versions (row triggers
-- on the active version only; its levels: canon.mark_open_leads_due_fs_level): a change of the
-- rules can change the outcome of every lead left unmatched, so every OPEN one is due for a
-- retry (canon.identity_unmatched.retry_due), whatever the driver index did. Linked leads are
-- not re-evaluated (SPEC 6).
CREATE OR REPLACE FUNCTION canon.mark_open_leads_due()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  UPDATE canon.identity_unmatched u SET retry_due = true WHERE u.status = 'OPEN' AND NOT u.retry_due;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION canon.mark_open_leads_due() IS
  'Trigger on canon.match_rules, canon.match_parameters and the active version of canon.match_fs_versions: every OPEN unmatched lead is due for a retry.';

-- snapshot of sql/canon/canon.mark_reopened_lead_due.sql
-- canon.mark_reopened_lead_due: BEFORE UPDATE trigger function on canon.identity_unmatched
-- (fired only when a lead is set back to OPEN other than by an attempt, e.g. by hand from
-- IGNORED). OPEN leads are retried only when due (retry_due): a reopened lead is due.
CREATE OR REPLACE FUNCTION canon.mark_reopened_lead_due()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  NEW.retry_due := true;
  RETURN NEW;
END
$$;
COMMENT ON FUNCTION canon.mark_reopened_lead_due() IS 'Trigger: an unmatched lead set back to OPEN by hand is due for a retry (retry_due).';

-- snapshot of sql/canon/canon.mark_retries_due.sql
-- canon.mark_retries_due: pipeline step 4b, right after the driver index refresh. Marks
-- due for a retry (canon.identity_unmatched.retry_due) the OPEN unmatched leads a driver
-- change since the last check can change: a driver indexed or re-indexed since
-- (driver_index.indexed_at), or what a driver had before it was re-indexed with other values
-- or removed (canon_internal.driver_index_key_changes: a lead that had it as a candidate,
-- e.g. AMBIGUOUS, CONFLICT or in review against two drivers, may now match). Such a driver
-- makes due the leads that share a key with it (phone, plate, licence, as
-- canon.lead_candidates joins on them) and the leads the probabilistic tier would pair it
-- with (canon.fs_blocked_pairs, seen from the driver: a plate one edit away with a shared
-- name token, a rare name key). Never checked before: every OPEN lead is due. Returns
-- {retry_check, retries_marked_due, retries_marked_due_by_tier, retry_changed_keys,
-- driver_index_changed_at}.
CREATE OR REPLACE FUNCTION canon.mark_retries_due(p_run_id bigint)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET client_min_messages = warning
SET jit = off
AS $$
DECLARE
  v_state_found boolean;
  v_index_changed_at timestamptz;
  v_retry_checked_from timestamptz;
  v_retry_checked_to timestamptz;
  v_retry_check text;
  v_marked_due integer := 0;
  v_marked_by_tier integer;
  v_changed_keys bigint;
  v_probe_by_key boolean;
  v_hashjoin text;
  v_mergejoin text;
BEGIN
  -- No change: two probes of the end of an index. Changes: the changed drivers, then index
  -- probes of canon_internal.lead_keys by their keys. The check covers changes up to now()
  -- (the transaction start: rows this run's refresh wrote are visible, later ones have a
  -- later indexed_at), which becomes retry_checked_at. Never checked: every OPEN lead is due.
  SELECT true, s.changed_at, s.retry_checked_at
  INTO v_state_found, v_index_changed_at, v_retry_checked_from
  FROM canon_internal.driver_index_state s
  FOR UPDATE;
  v_retry_checked_to := now();
  IF v_retry_checked_from IS NULL THEN
    v_retry_check := 'all_open';
    UPDATE canon.identity_unmatched u SET retry_due = true
    WHERE u.status = 'OPEN' AND NOT u.retry_due;
    GET DIAGNOSTICS v_marked_due = ROW_COUNT;
  -- (max() is one probe of the end of each index; an EXISTS could be planned as a sequential
  -- scan that stops at the first hit, and read the whole table when there is none)
  ELSIF (SELECT max(i.indexed_at) FROM canon_internal.driver_index i) > v_retry_checked_from
        OR (SELECT max(c.logged_at) FROM canon_internal.driver_index_key_changes c) > v_retry_checked_from THEN
    v_retry_check := 'changed_keys';
    DROP TABLE IF EXISTS pg_temp.cabinet_changed_drivers;
    CREATE TEMP TABLE cabinet_changed_drivers ON COMMIT DROP AS
    SELECT i.phone_norm, i.license_norm, i.plate_norm, i.name_norm
    FROM canon_internal.driver_index i WHERE i.indexed_at > v_retry_checked_from
    UNION ALL
    SELECT c.phone_norm, c.license_norm, c.plate_norm, c.name_norm
    FROM canon_internal.driver_index_key_changes c WHERE c.logged_at > v_retry_checked_from;

    -- EXACT KEYS: the leads sharing a phone, plate or licence (normalised alike, so
    -- '+51 977...' and '977...' are one phone) with a changed driver.
    DROP TABLE IF EXISTS pg_temp.cabinet_changed_keys;
    CREATE TEMP TABLE cabinet_changed_keys ON COMMIT DROP AS
    SELECT DISTINCT x.kind, x.key
    FROM pg_temp.cabinet_changed_drivers d
    CROSS JOIN LATERAL (VALUES ('PHONE', d.phone_norm), ('LICENSE', d.license_norm), ('PLATE', d.plate_norm)) x (kind, key)
    WHERE x.key IS NOT NULL;
    -- Few keys against the lead keys (the usual case): probe canon_internal.lead_keys and
    -- identity_unmatched by key, hash and merge joins off for that statement (the planner
    -- would rather read both whole, as in canon.refresh_driver_index). Many (a bulk change
    -- upstream): the planner chooses, with the temp table's statistics. (Measured at 60k
    -- lead rows: 6,000 keys by probes 10 ms, by hash joins 35 ms; a probe costs about
    -- what reading 3 lead rows does, hence under a quarter.)
    v_changed_keys := (SELECT count(*) FROM pg_temp.cabinet_changed_keys);
    v_probe_by_key := v_changed_keys * 4 < (SELECT c.reltuples FROM pg_class c WHERE c.oid = 'canon_internal.lead_keys'::regclass);
    IF v_probe_by_key THEN
      v_hashjoin := current_setting('enable_hashjoin');
      v_mergejoin := current_setting('enable_mergejoin');
      PERFORM set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true);
    ELSE
      ANALYZE pg_temp.cabinet_changed_keys;
    END IF;
    UPDATE canon.identity_unmatched u SET retry_due = true
    FROM (SELECT k.lead_source_pk FROM pg_temp.cabinet_changed_keys c
          JOIN canon_internal.lead_keys k ON k.phone_norm = c.key AND k.phone_norm IS NOT NULL WHERE c.kind = 'PHONE'
          UNION
          SELECT k.lead_source_pk FROM pg_temp.cabinet_changed_keys c
          JOIN canon_internal.lead_keys k ON k.plate_norm = c.key AND k.plate_norm IS NOT NULL WHERE c.kind = 'PLATE'
          UNION
          SELECT k.lead_source_pk FROM pg_temp.cabinet_changed_keys c
          JOIN canon_internal.lead_keys k ON k.license_norm = c.key AND k.license_norm IS NOT NULL WHERE c.kind = 'LICENSE') m
    WHERE u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = m.lead_source_pk
      AND u.status = 'OPEN' AND NOT u.retry_due;
    GET DIAGNOSTICS v_marked_due = ROW_COUNT;
    IF v_probe_by_key THEN
      PERFORM set_config('enable_hashjoin', v_hashjoin, true), set_config('enable_mergejoin', v_mergejoin, true);
    END IF;

    -- THE PROBABILISTIC TIER'S BLOCKS: the leads the tier would pair with a changed driver.
    v_marked_by_tier := canon.mark_tier_retries_due();
    v_marked_due := v_marked_due + v_marked_by_tier;
  ELSE
    v_retry_check := 'no_change';
  END IF;
  -- Checked: the lost keys are no longer needed.
  DELETE FROM canon_internal.driver_index_key_changes c WHERE c.logged_at <= v_retry_checked_to;
  IF v_state_found THEN
    UPDATE canon_internal.driver_index_state s SET retry_checked_at = v_retry_checked_to;
  ELSE
    INSERT INTO canon_internal.driver_index_state (singleton, retry_checked_at) VALUES (true, v_retry_checked_to);
  END IF;
  RETURN jsonb_build_object(
    'retry_check', v_retry_check,
    'retries_marked_due', v_marked_due,
    'retries_marked_due_by_tier', v_marked_by_tier,
    'retry_changed_keys', v_changed_keys,
    'driver_index_changed_at', v_index_changed_at);
END
$$;
COMMENT ON FUNCTION canon.mark_retries_due(bigint) IS
  'Pipeline step 4b: marks due for a retry the OPEN unmatched leads sharing a key with a driver indexed, re-indexed or removed since the last check, or that the probabilistic tier would pair with it (a plate one edit away with a shared name token, a rare name key). Returns step stats.';

-- snapshot of sql/canon/canon.mark_tier_retries_due.sql
-- canon.mark_tier_retries_due: part of canon.mark_retries_due (step 4b). Marks due the OPEN
-- unmatched leads the probabilistic tier would pair with a changed driver
-- (pg_temp.cabinet_changed_drivers: drivers indexed since the last check, and the plates and
-- names drivers had before a change or removal): the pairs of canon.fs_blocked_pairs, found
-- from the drivers' side. Plate block: a lead plate equal or one edit away with a shared
-- name token (canon.fs_plate_block_pair). Name block: one of the lead's rare keys
-- (canon.fs_rare_name_keys) that is a key of the driver's name and blocks
-- (canon.fs_name_block). Only leads the tier sees: the rules left them NO_CANDIDATES or
-- WEAK_MATCH_ONLY, or the tier sent them to review (a change of their exact keys is the
-- exact branch's). A lead's plate and name are those it was evaluated with
-- (identity_unmatched.details, GIN-indexed for these leads only): a lead whose keys changed
-- since is due already (canon.refresh_lead_keys). Returns the leads marked.
CREATE OR REPLACE FUNCTION canon.mark_tier_retries_due()
RETURNS integer
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
  v_rare_max numeric := canon.fs_rare_token_max();
  v_block_max integer := (SELECT fv.name_block_max_drivers FROM canon.match_fs_versions fv WHERE fv.active);
  v_plate_keys text[];
  v_name_keys text[] := '{}';
  v_hashjoin text := current_setting('enable_hashjoin');
  v_mergejoin text := current_setting('enable_mergejoin');
  v_marked integer;
BEGIN
  -- The changed plates' deletion keys (canon.plate_edit_keys), each with its plate and name.
  DROP TABLE IF EXISTS pg_temp.cabinet_changed_plate_keys;
  CREATE TEMP TABLE cabinet_changed_plate_keys ON COMMIT DROP AS
  SELECT DISTINCT e.key, d.plate_norm, d.name_norm
  FROM pg_temp.cabinet_changed_drivers d
  CROSS JOIN LATERAL unnest(canon.plate_edit_keys(d.plate_norm)) AS e (key)
  WHERE d.plate_norm IS NOT NULL AND d.name_norm IS NOT NULL;
  CREATE INDEX ON pg_temp.cabinet_changed_plate_keys (key);
  v_plate_keys := ARRAY(SELECT DISTINCT c.key FROM pg_temp.cabinet_changed_plate_keys c);
  -- The changed names' keys (canon.name_phonetic_keys), but not of a token more than
  -- name_block_max_drivers drivers type in one role (canon_internal.name_token_stats): those
  -- drivers have it in their names, so its key blocks nothing, and counting the key's
  -- drivers would read its whole posting list (7 ms a common key at 1M drivers, 1 s for the
  -- 153 keys of 2,000 demo drivers). None in a base too small to tell a rare name.
  IF v_rare_max >= 1 THEN
    v_name_keys := ARRAY(
      SELECT DISTINCT canon.name_phonetic(t.token)
      FROM (SELECT DISTINCT x.token
            FROM pg_temp.cabinet_changed_drivers d
            CROSS JOIN LATERAL unnest(string_to_array(d.name_norm, ' ')) AS x (token)
            WHERE length(x.token) >= 3) t
      LEFT JOIN canon_internal.name_token_stats s ON s.token = t.token
      WHERE coalesce(greatest(s.as_given, s.as_surname), 0) <= v_block_max);
  END IF;

  -- The OPEN leads the tier sees, not due yet, found by the GIN indexes on them, probed 256
  -- keys at a time (canon.key_chunks) once the rows written since the last merge are merged
  -- into them (canon.flush_unmatched_key_indexes). For the 12,678 plate keys of 2,000
  -- drivers against 35k such leads: 38 ms; all keys in one scan 244 ms (GIN checks every
  -- key for each lead it finds), key by key 125 ms, by 256 keys with one run's 400 rows
  -- still pending 333 ms (each probe reads the whole list). Few leads against many OPEN
  -- ones: probes by key from here on, hash and merge joins off (the planner would read
  -- the OPEN leads whole).
  PERFORM canon.flush_unmatched_key_indexes(cardinality(v_name_keys) > 0);
  PERFORM set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true);
  DROP TABLE IF EXISTS pg_temp.cabinet_tier_found;
  CREATE TEMP TABLE cabinet_tier_found ON COMMIT DROP AS
  SELECT DISTINCT x.source_pk AS lead_source_pk, x.details ->> 'plate_norm' AS plate_norm, x.details ->> 'name_norm' AS name_norm, x.block
  FROM (SELECT u.source_pk, u.details, 'PLATE' AS block
        FROM canon.key_chunks(v_plate_keys, 256) AS ch (keys)
        CROSS JOIN LATERAL (
          SELECT u0.source_pk, u0.details FROM canon.identity_unmatched u0
          WHERE canon.plate_edit_keys(u0.details ->> 'plate_norm') && ch.keys
            AND u0.status = 'OPEN' AND u0.reason_code IN ('NO_CANDIDATES', 'WEAK_MATCH_ONLY', 'PROBABLE_MATCH')
            AND (u0.details ->> 'plate_norm') IS NOT NULL AND NOT u0.retry_due) u
        UNION ALL
        SELECT u.source_pk, u.details, 'NAME'
        FROM canon.key_chunks(v_name_keys, 256) AS ch (keys)
        CROSS JOIN LATERAL (
          SELECT u0.source_pk, u0.details FROM canon.identity_unmatched u0
          WHERE canon.name_phonetic_keys(u0.details ->> 'name_norm') && ch.keys
            AND u0.status = 'OPEN' AND u0.reason_code IN ('NO_CANDIDATES', 'WEAK_MATCH_ONLY', 'PROBABLE_MATCH')
            AND (u0.details ->> 'name_norm') IS NOT NULL AND NOT u0.retry_due) u) x;

  -- Their pairs: a near plate with a shared name token; a rare key of the lead among the
  -- changed names' keys, counted when it blocks (looked up for those keys only).
  WITH plate_pairs AS (
    SELECT DISTINCT f.lead_source_pk, f.plate_norm, f.name_norm, c.plate_norm AS driver_plate, c.name_norm AS driver_name
    FROM pg_temp.cabinet_tier_found f
    CROSS JOIN LATERAL unnest(canon.plate_edit_keys(f.plate_norm)) AS e (key)
    JOIN pg_temp.cabinet_changed_plate_keys c ON c.key = e.key
    WHERE f.block = 'PLATE'
  ),
  rare AS MATERIALIZED (
    SELECT f.lead_source_pk, r.key
    FROM pg_temp.cabinet_tier_found f
    CROSS JOIN LATERAL canon.fs_rare_name_keys(f.name_norm, v_rare_max) AS r (key)
    WHERE f.block = 'NAME' AND r.key = ANY (v_name_keys)
  ),
  blocking AS MATERIALIZED (
    SELECT x.key
    FROM (SELECT DISTINCT r.key FROM rare r) x
    WHERE canon.fs_name_block(x.key, v_block_max) IS NOT NULL
  )
  UPDATE canon.identity_unmatched u SET retry_due = true
  FROM (SELECT p.lead_source_pk FROM plate_pairs p
        WHERE canon.fs_plate_block_pair(p.plate_norm, p.name_norm, p.driver_plate, p.driver_name)
        UNION
        SELECT r.lead_source_pk FROM rare r WHERE r.key IN (SELECT b.key FROM blocking b)) due
  WHERE u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = due.lead_source_pk
    AND u.status = 'OPEN' AND NOT u.retry_due;
  GET DIAGNOSTICS v_marked = ROW_COUNT;
  PERFORM set_config('enable_hashjoin', v_hashjoin, true), set_config('enable_mergejoin', v_mergejoin, true);
  RETURN v_marked;
END
$$;
COMMENT ON FUNCTION canon.mark_tier_retries_due() IS
  'Part of canon.mark_retries_due: marks due the OPEN leads the probabilistic tier would pair with a changed driver (pg_temp.cabinet_changed_drivers): a plate one edit away with a shared name token, a blocking name key among the lead''s rare keys. Returns the leads marked.';

-- snapshot of sql/canon/canon.milestone_rows.sql
-- canon.milestone_rows: the one unpivot of a lead's three milestones (1, 5, 25) from its
-- m1_/m5_/m25_ columns into one row each, for ops.v_cabinet_claims_expected_14d and
-- canon.insert_missing_claims:
--   CROSS JOIN LATERAL canon.milestone_rows(c.m1_trips_threshold, c.m1_amount, c.reached_m1, ...) m
-- A plain SQL function returning a set, no SET clause and no STRICT, so the planner inlines
-- it into its VALUES list: the plans are those of the VALUES written by hand.
CREATE OR REPLACE FUNCTION canon.milestone_rows(
  p_m1_trips_threshold integer, p_m1_amount numeric, p_m1_reached boolean,
  p_m5_trips_threshold integer, p_m5_amount numeric, p_m5_reached boolean,
  p_m25_trips_threshold integer, p_m25_amount numeric, p_m25_reached boolean)
RETURNS TABLE (milestone integer, trips_threshold integer, amount numeric, reached boolean)
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
  VALUES (1, p_m1_trips_threshold, p_m1_amount, p_m1_reached),
         (5, p_m5_trips_threshold, p_m5_amount, p_m5_reached),
         (25, p_m25_trips_threshold, p_m25_amount, p_m25_reached)
$$;
COMMENT ON FUNCTION canon.milestone_rows(integer, numeric, boolean, integer, numeric, boolean, integer, numeric, boolean) IS
  'The three milestones (1, 5, 25) of a lead as rows (milestone, trips_threshold, amount, reached) from its m1_/m5_/m25_ values; inlined by the planner.';

-- snapshot of sql/canon/canon.move_claimed_leads_on.sql
-- canon.move_claimed_leads_on: step 7d. The stored state of every row of the lead keys
-- just claimed follows its claims (flags and stage through canon.limbo_stage_of, the
-- view's own expression): their chain was evaluated by this step or is stored and
-- unchanged (a change would have marked it), so their trips are not read again. Returns
-- the rows written.
CREATE OR REPLACE FUNCTION canon.move_claimed_leads_on(p_run_id bigint, p_keys text[])
RETURNS integer
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET client_min_messages = warning
SET jit = off
AS $$
DECLARE
  v_written integer;
BEGIN
  -- Each key's claims probed through the claims' key and each key's rows through the hash
  -- index: written as EXISTS per milestone and joined, the claims were hashed whole and
  -- every stored row scanned (380 ms for 650 keys at 200k leads; this way 20 ms).
  WITH claimed AS MATERIALIZED (
    SELECT k.lead_source_pk, m.c1, m.c5, m.c25
    FROM (SELECT DISTINCT unnest(p_keys) AS lead_source_pk) k
    CROSS JOIN LATERAL (
      SELECT coalesce(bool_or(cl.milestone = 1), false) AS c1,
             coalesce(bool_or(cl.milestone = 5), false) AS c5,
             coalesce(bool_or(cl.milestone = 25), false) AS c25
      FROM canon.claims_yango_cabinet_14d cl
      WHERE cl.lead_source_pk = k.lead_source_pk) m
  )
  UPDATE canon_internal.cabinet_lead_state s
  SET has_claim_m1 = c.c1, has_claim_m5 = c.c5, has_claim_m25 = c.c25,
      limbo_stage = canon.limbo_stage_of(s.person_key, s.driver_id, s.trips_in_window,
                                         s.reached_m1, s.reached_m5, s.reached_m25, c.c1, c.c5, c.c25),
      evaluated_at = now(), evaluated_run_id = p_run_id
  FROM claimed c
  WHERE s.lead_source_pk = c.lead_source_pk
    AND (s.has_claim_m1, s.has_claim_m5, s.has_claim_m25) IS DISTINCT FROM (c.c1, c.c5, c.c25);
  GET DIAGNOSTICS v_written = ROW_COUNT;
  IF v_written > 0 THEN
    -- (as canon.refresh_lead_state does: counts and snapshots made before are stale)
    UPDATE canon_internal.cabinet_lead_state_meta SET changed_at = now();
  END IF;
  RETURN v_written;
END
$$;
COMMENT ON FUNCTION canon.move_claimed_leads_on(bigint, text[]) IS
  'Step 7d: the stored state of the rows of the given (just claimed) lead keys follows their claims. Returns rows written.';

-- snapshot of sql/canon/canon.name_field_tokens.sql
-- canon.name_field_tokens: the tokens of one name field (first_name, middle_name,
-- last_name) split as canon.normalize_name splits a name (accents removed, upper case,
-- every run of anything but A-Z0-9 separates), to tell which field a name token was typed
-- in: the name roles of canon_internal.driver_name_roles and of a lead (canon.name_veto_of).
-- Unsorted, with repeats, particles and numbers left in (they never equal a token of
-- canon.name_tokens, so they never decide anything): one regexp split per field, several
-- times cheaper than canon.name_tokens, paid for every driver of a full index build.
CREATE OR REPLACE FUNCTION canon.name_field_tokens(p_field text)
RETURNS text[]
LANGUAGE sql
STABLE
PARALLEL SAFE
AS $$
  -- STABLE as unaccent is, not STRICT and without SET: so it is inlined into the calling
  -- query (a call per field costs twice the expression). The first 200 characters, as
  -- canon.normalize_name. NULL when the field has no token.
  SELECT nullif(pg_catalog.array_remove(pg_catalog.regexp_split_to_array(
           pg_catalog.upper(pg_catalog.left(public.unaccent('public.unaccent'::regdictionary, pg_catalog.left(p_field, 200)), 200)
                            COLLATE "C"),
           '[^A-Z0-9]+'), ''), '{}')
$$;
COMMENT ON FUNCTION canon.name_field_tokens(text) IS
  'Tokens of one name field, split as canon.normalize_name splits (accents removed, upper case, on anything but A-Z0-9); unsorted, repeats, particles and numbers kept; NULL when none. Tells which field a name token was typed in.';

-- snapshot of sql/canon/canon.name_phonetic_hashes.sql
-- canon.name_phonetic_hashes: canon.name_phonetic_keys as 64-bit hashes (hashtextextended,
-- seed 0), the form the name GIN index of canon_internal.driver_index holds (integer keys
-- merge several times faster than text keys in the database's collation). A probe asks for
-- the hash of one key and checks the key itself on the rows found. The statement of
-- canon.name_phonetic_keys hashed as it goes (calling it would add a function call a row to
-- every index build); a test holds the two equal.
CREATE OR REPLACE FUNCTION canon.name_phonetic_hashes(p_name_norm text)
RETURNS bigint[]
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
STRICT
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT coalesce(array_agg(DISTINCT hashtextextended(canon.name_phonetic(t), 0)), '{}')
  FROM unnest(string_to_array(p_name_norm, ' ')) t
  WHERE length(t) >= 3
$$;
COMMENT ON FUNCTION canon.name_phonetic_hashes(text) IS
  'canon.name_phonetic_keys hashed (hashtextextended, seed 0): the keys of the name GIN index on canon_internal.driver_index.';

-- snapshot of sql/canon/canon.name_phonetic_keys.sql
-- canon.name_phonetic_keys: the phonetic keys (canon.name_phonetic) of the tokens of a
-- normalised name with 3 letters or more: the blocking keys of the probabilistic tier's name
-- block, indexed (GIN) on canon_internal.driver_index. Probed only with a lead's rare keys.
CREATE OR REPLACE FUNCTION canon.name_phonetic_keys(p_name_norm text)
RETURNS text[]
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
STRICT
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT coalesce(array_agg(DISTINCT canon.name_phonetic(t)), '{}')
  FROM unnest(string_to_array(p_name_norm, ' ')) t
  WHERE length(t) >= 3
$$;
COMMENT ON FUNCTION canon.name_phonetic_keys(text) IS
  'Phonetic keys (canon.name_phonetic) of the tokens of 3+ letters of a normalised name: the name block of the probabilistic tier (GIN index on canon_internal.driver_index).';

-- snapshot of sql/canon/canon.name_phonetic.sql
-- canon.name_phonetic: a Spanish phonetic key of one normalised name token, so that
-- spellings people use for the same sound compare equal: QU/K/C (QUISPE, KISPE), V/B
-- (VASQUEZ, BASQUEZ), Z/S/C before E or I (ZUNIGA, SUNIGA), Y/LL/I (YUPANQUI, IUPANKI),
-- a silent H (HUAMAN, UAMAN), G/J before E or I, W/U, PH/F, doubled letters. Read by the
-- probabilistic tier (canon.name_token_levels) and the name-key index of the driver index.
-- Plain SQL without SET: inlined (a SET clause costs more than the regexps, per token).
CREATE OR REPLACE FUNCTION canon.name_phonetic(p_token text)
RETURNS text
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
  SELECT pg_catalog.regexp_replace(
           pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(
             pg_catalog.regexp_replace(pg_catalog.regexp_replace(pg_catalog.regexp_replace(pg_catalog.regexp_replace(
               pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(p_token, 'CH', '#'), 'QU', 'K'), 'PH', 'F'), 'LL', 'Y'),
               'GU([EI])', '~\1', 'g'), 'G([EI])', 'J\1', 'g'), 'C([EI])', 'S\1', 'g'), 'X', 'KS', 'g'),
             'C', 'K'), 'Z', 'S'), 'V', 'B'), 'Y', 'I'), 'W', 'U'), 'H', ''), '~', 'G'), '#', 'CH'),
           '(.)\1+', '\1', 'g')
$$;
COMMENT ON FUNCTION canon.name_phonetic(text) IS
  'Spanish phonetic key of a normalised name token: QU/K/C, V/B, Z/S/CE/CI, Y/LL/I, silent H, GE/JE, W/U, PH/F, doubled letters (QUISPE and KISPE give KISPE; VASQUEZ and BAZQUEZ give BASKES).';

-- snapshot of sql/canon/canon.name_similarity.sql
-- canon.name_similarity: how alike two person names are, 0..1 (SPEC 5), for lead
-- matching (R3/R3B at >= 0.66, AMBIGUOUS when the best two are < 0.15 apart).
-- The names are tokenised (canon.name_tokens) and scored by canon.token_similarity (the
-- formula is written there): (jaccard + overlap) / 2 of the token sets, tokens of 5+
-- letters one typo apart counting as shared.
CREATE OR REPLACE FUNCTION canon.name_similarity(p_name_a text, p_name_b text)
RETURNS numeric
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
AS $$
-- PL/pgSQL on purpose: it keeps the tokeniser's plan cached between calls, where a
-- SQL-language version re-plans the nested canon.normalize_name call on every pair
-- (measured per pair: 16 us against 470 us on PostgreSQL 15, 15 us against 174 us on 18).
BEGIN
  RETURN canon.token_similarity(canon.name_tokens(p_name_a), canon.name_tokens(p_name_b));
END
$$;
COMMENT ON FUNCTION canon.name_similarity(text, text) IS
  'Name similarity 0..1 on the token sets of canon.name_tokens (raw or normalised names): (jaccard + overlap) / 2, overlap on the shorter name when it has 2+ tokens; tokens of 5+ letters one typo apart (edit or adjacent swap) count as shared. 0 when either name is NULL or has no token. Symmetric; never raises.';

-- snapshot of sql/canon/canon.name_token_levels.sql
-- canon.name_token_levels: how the tokens of a lead's name (canon.name_tokens form) meet a
-- driver's, token by token, for the probabilistic tier. One row per lead token with its best
-- partner among the driver's tokens and the level: EXACT, PHONETIC (canon.name_phonetic),
-- TYPO (canon.one_typo), GLUED (two tokens typed as one, JUANCARLOS for JUAN CARLOS, or a
-- particle glued on, DELACRUZ for CRUZ; either side), INITIAL, NONE. Then one row per
-- driver token no lead token partners (MISSING: a name the lead left out). Two-letter
-- tokens are fragments of split names and are left out, as in canon.name_veto.
-- PL/pgSQL loops over a handful of tokens, simple expressions only (cheaper per pair than SQL CTEs).
CREATE OR REPLACE FUNCTION canon.name_token_levels(p_lead text[], p_driver text[])
RETURNS TABLE (side text, token text, partner text, level text)
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
ROWS 6
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  l text[];
  d text[];
  lph text[];
  dph text[];
  d_hit boolean[];
  nl integer;
  nd integer;
  best integer;
  best_y text;
  r integer;
  x text;
  y text;
  lx integer;
  ly integer;
  k integer;
BEGIN
  -- Only simple expressions below (no subquery per pair): each would be a query of its own.
  -- the inputs are canon.name_tokens sets (distinct); loops, not queries: no SPI per call
  l := '{}';
  lph := '{}';
  FOREACH x IN ARRAY coalesce(p_lead, '{}') LOOP
    IF length(x) <> 2 THEN
      l := l || x;
      lph := lph || CASE WHEN length(x) >= 3 THEN canon.name_phonetic(x) END;
    END IF;
  END LOOP;
  d := '{}';
  dph := '{}';
  FOREACH y IN ARRAY coalesce(p_driver, '{}') LOOP
    IF length(y) <> 2 THEN
      d := d || y;
      dph := dph || CASE WHEN length(y) >= 3 THEN canon.name_phonetic(y) END;
    END IF;
  END LOOP;
  nl := cardinality(l);
  nd := cardinality(d);
  -- each token's phonetic key once (above), not once per pair
  d_hit := array_fill(false, ARRAY[greatest(nd, 1)]);
  FOR i IN 1 .. nl LOOP
    x := l[i];
    lx := length(x);
    best := 9;
    best_y := NULL;
    FOR j IN 1 .. nd LOOP
      y := d[j];
      ly := length(y);
      r := NULL;
      IF x = y THEN
        r := 1;
      ELSIF lph[i] = dph[j] THEN
        r := 2;
      ELSIF lx >= 4 AND ly >= 4 AND lx <= 255 AND ly <= 255 AND abs(lx - ly) <= 1
            AND public.levenshtein_less_equal(x, y, 2) <= 2 THEN
        -- one edit, or two adjacent letters swapped (as canon.one_typo)
        IF public.levenshtein_less_equal(x, y, 1) <= 1 THEN
          r := 3;
        ELSIF lx = ly THEN
          k := 1;
          WHILE k <= lx AND substr(x, k, 1) = substr(y, k, 1) LOOP
            k := k + 1;
          END LOOP;
          IF k < lx AND substr(x, k, 1) = substr(y, k + 1, 1) AND substr(x, k + 1, 1) = substr(y, k, 1)
             AND substr(x, k + 2) = substr(y, k + 2) THEN
            r := 3;
          END IF;
        END IF;
      END IF;
      IF r IS NULL THEN
        -- glued: a particle glued on (DELACRUZ, CRUZ) either side, or two tokens typed as one
        IF (ly >= 3 AND x IN ('DE' || y, 'DEL' || y, 'DELA' || y, 'DELAS' || y, 'DELOS' || y, 'LA' || y, 'LOS' || y))
           OR (lx >= 3 AND y IN ('DE' || x, 'DEL' || x, 'DELA' || x, 'DELAS' || x, 'DELOS' || x, 'LA' || x, 'LOS' || x)) THEN
          r := 4;
        ELSIF lx >= 6 AND ly >= 3 AND ly < lx
              AND ((left(x, ly) = y AND substr(x, ly + 1) = ANY (d)) OR (right(x, ly) = y AND left(x, lx - ly) = ANY (d))) THEN
          r := 4;
        ELSIF ly >= 6 AND lx >= 3 AND lx < ly
              AND ((left(y, lx) = x AND substr(y, lx + 1) = ANY (l)) OR (right(y, lx) = x AND left(y, ly - lx) = ANY (l))) THEN
          r := 4;
        ELSIF (lx = 1 AND ly > 1 AND left(y, 1) = x) OR (ly = 1 AND lx > 1 AND left(x, 1) = y) THEN
          r := 5;
        END IF;
      END IF;
      IF r IS NOT NULL THEN
        d_hit[j] := true;
        IF r < best THEN
          best := r;
          best_y := y;
        END IF;
      END IF;
    END LOOP;
    side := 'LEAD';
    token := x;
    partner := best_y;
    level := CASE best WHEN 1 THEN 'EXACT' WHEN 2 THEN 'PHONETIC' WHEN 3 THEN 'TYPO' WHEN 4 THEN 'GLUED'
                       WHEN 5 THEN 'INITIAL' ELSE 'NONE' END;
    RETURN NEXT;
  END LOOP;
  FOR j IN 1 .. nd LOOP
    IF NOT d_hit[j] THEN
      side := 'DRIVER';
      token := d[j];
      partner := NULL;
      level := 'MISSING';
      RETURN NEXT;
    END IF;
  END LOOP;
END
$$;
COMMENT ON FUNCTION canon.name_token_levels(text[], text[]) IS
  'Token-by-token comparison of a lead''s name with a driver''s (probabilistic tier): per lead token its best partner and level (EXACT, PHONETIC, TYPO, GLUED, INITIAL, NONE); per driver token without partner a MISSING row. Two-letter fragments left out.';

-- snapshot of sql/canon/canon.name_token_usage.sql
-- canon.name_token_usage: which of the given name tokens the drivers clearly use as a
-- given name, and which as a surname (SPEC 5: roles are judged from "how common each
-- token is as a given name or a surname among the drivers"), from the counts kept in
-- canon_internal.name_token_stats. Called by canon.lead_candidates for the few candidate pairs
-- canon.name_veto looks at; a handful of primary-key probes per pair.
CREATE OR REPLACE FUNCTION canon.name_token_usage(p_tokens text[])
RETURNS TABLE (given_names text[], surnames text[])
LANGUAGE sql
STABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
  -- Clear: typed in that role by at least min_uses drivers and at least ratio times as
  -- often as in the other role (CRUZ, SANTOS, LEON are both: not clear, the fields decide).
  WITH params (min_uses, ratio) AS (VALUES (3, 3))
  SELECT array_agg(s.token ORDER BY s.token) FILTER (WHERE s.as_given >= p.min_uses AND s.as_given >= p.ratio * s.as_surname),
         array_agg(s.token ORDER BY s.token) FILTER (WHERE s.as_surname >= p.min_uses AND s.as_surname >= p.ratio * s.as_given)
  FROM params p
  LEFT JOIN canon_internal.name_token_stats s ON s.token = ANY (p_tokens)
$$;
COMMENT ON FUNCTION canon.name_token_usage(text[]) IS
  'Of the given tokens, those the drivers clearly use as given names (first/middle name) and as surnames (last name): at least 3 drivers and 3 times as often as the other role, from canon_internal.name_token_stats. NULL arrays when none.';

-- snapshot of sql/canon/canon.name_tokens.sql
-- canon.name_tokens: the tokens of canon.normalize_name as a sorted text[], for
-- canon.name_similarity and for SQL that compares names token by token.
CREATE OR REPLACE FUNCTION canon.name_tokens(p_name text)
RETURNS text[]
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
  -- Not STRICT, so that it is inlined into the calling query (string_to_array(NULL) is NULL).
  SELECT pg_catalog.string_to_array(canon.normalize_name(p_name), ' ')
$$;
COMMENT ON FUNCTION canon.name_tokens(text) IS
  'Tokens of canon.normalize_name as a sorted, de-duplicated text[]; NULL when the name has no token.';

-- snapshot of sql/canon/canon.name_veto_of.sql
-- canon.name_veto_of: canon.name_veto for two names of records the matcher holds (a lead
-- row, a driver, or a bare name), with the roles both records can tell: the lead's
-- first/middle/last name fields (public.module_ct_cabinet_leads), the driver's
-- (canon_internal.driver_name_roles) and the drivers' usage of each token (canon.name_token_usage).
-- Called by canon.lead_candidates only for pairs whose score alone is a name match; each
-- record is named by a lead id or a driver id (both NULL: a name without fields).
CREATE OR REPLACE FUNCTION canon.name_veto_of(
  p_a text[], p_a_lead_id integer, p_a_driver_id text,
  p_b text[], p_b_lead_id integer, p_b_driver_id text)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  a_given    text[];
  a_surnames text[];
  b_given    text[];
  b_surnames text[];
  u_given    text[];
  u_surnames text[];
BEGIN
  -- With every role unknown the veto is the widest it can be: when even that finds
  -- nothing (a missing middle name, a typo, an initial), no lookup is needed.
  IF canon.name_veto(p_a, NULL, NULL, p_b, NULL, NULL, NULL, NULL) IS NULL THEN
    RETURN NULL;
  END IF;
  IF p_a_lead_id IS NOT NULL THEN
    SELECT canon.name_field_tokens(concat_ws(' ', l.first_name, l.middle_name)), canon.name_field_tokens(l.last_name)
    INTO a_given, a_surnames
    FROM public.module_ct_cabinet_leads l WHERE l.id = p_a_lead_id;
  ELSIF p_a_driver_id IS NOT NULL THEN
    SELECT r.given_names, r.surnames INTO a_given, a_surnames
    FROM canon_internal.driver_name_roles r WHERE r.driver_id = p_a_driver_id;
  END IF;
  IF p_b_lead_id IS NOT NULL THEN
    SELECT canon.name_field_tokens(concat_ws(' ', l.first_name, l.middle_name)), canon.name_field_tokens(l.last_name)
    INTO b_given, b_surnames
    FROM public.module_ct_cabinet_leads l WHERE l.id = p_b_lead_id;
  ELSIF p_b_driver_id IS NOT NULL THEN
    SELECT r.given_names, r.surnames INTO b_given, b_surnames
    FROM canon_internal.driver_name_roles r WHERE r.driver_id = p_b_driver_id;
  END IF;
  SELECT u.given_names, u.surnames INTO u_given, u_surnames FROM canon.name_token_usage(p_a || p_b) u;
  RETURN canon.name_veto(p_a, a_given, a_surnames, p_b, b_given, b_surnames, u_given, u_surnames);
END
$$;
COMMENT ON FUNCTION canon.name_veto_of(text[], integer, text, text[], integer, text) IS
  'canon.name_veto of two token sets with the roles their records tell: a lead row (p_*_lead_id: its name fields), a driver (p_*_driver_id: canon_internal.driver_name_roles) or neither, and the drivers'' usage (canon.name_token_usage). NULL: no veto.';

-- snapshot of sql/canon/canon.name_veto.sql
-- canon.name_veto: SPEC 5 "Relatives are different people". Two names that each carry a
-- name the other lacks, in the same role (a different given name: JOSE CARLOS vs JUAN
-- CARLOS; a different surname: QUISPE MAMANI vs QUISPE HUAMAN), are two people, whatever
-- their token score (3 of 4 tokens shared scores 0.675). Called by canon.lead_candidates
-- on the pairs whose score alone would be a name match; returns NULL (no veto) or the
-- tokens each side lacks with the role judged for each, for the candidates and evidence.
CREATE OR REPLACE FUNCTION canon.name_veto(
  p_a text[], p_a_given text[], p_a_surnames text[],
  p_b text[], p_b_given text[], p_b_surnames text[],
  p_usage_given text[], p_usage_surnames text[])
RETURNS jsonb
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
-- p_a, p_b: the two names as canon.name_tokens sets. p_*_given / p_*_surnames: the tokens
-- of that record's given-name fields (first and middle name) and of its last-name field
-- (NULL when the record has no such field, e.g. a driver with only full_name).
-- p_usage_given / p_usage_surnames: tokens the drivers clearly use as given names / as
-- surnames (canon.name_token_usage).
--   unshared = tokens of one name with no partner in the other. Partner: the same token,
--              one typo apart (tokens of 5+ letters, as canon.token_similarity: edit
--              distance 1 or an adjacent swap), or an initial (C and CARLOS).
--   role     = the drivers' usage when clear; else the field the token was typed in,
--              read the other way round when the record's fields are swapped (its tokens
--              of clear usage mostly sit in the other role's field); else UNKNOWN.
--   veto     = an unshared token on each side of the same role, UNKNOWN fitting either
--              role. A missing middle name (nothing unshared on one side) never vetoes,
--              nor a middle name on one side against a surname on the other, nor a token
--              of two letters (a fragment: VAN'T HOF is VAN T HOF, VAN'WT HOF is VAN WT
--              HOF in FEBRL); an initial (one letter) does (C is not ALBERTO).
-- Result: NULL, or {"a": {token: role}, "b": {token: role}} with every unshared token.
DECLARE
  na      integer := COALESCE(cardinality(p_a), 0);
  nb      integer := COALESCE(cardinality(p_b), 0);
  hit_a   boolean[];
  hit_b   boolean[];
  ua      text[] := '{}';
  ub      text[] := '{}';
  ra      text[] := '{}';
  rb      text[] := '{}';
  x       text;
  y       text;
  lx      integer;
  ly      integer;
  d       integer;
  k       integer;
  pair    boolean;
  swapped boolean;
  u_role  text;
  f_role  text;
  agree   integer;
  differ  integer;
  out_a   jsonb := '{}';
  out_b   jsonb := '{}';
  veto    boolean := false;
BEGIN
  IF na = 0 OR nb = 0 THEN
    RETURN NULL;
  END IF;
  -- UNSHARED: the partner rule of canon.token_similarity, plus initials.
  hit_a := array_fill(false, ARRAY[na]);
  hit_b := array_fill(false, ARRAY[nb]);
  FOR i IN 1 .. na LOOP
    x := p_a[i];
    lx := length(x);
    FOR j IN 1 .. nb LOOP
      y := p_b[j];
      ly := length(y);
      pair := x = y
        OR (lx = 1 AND ly > 1 AND left(y, 1) = x)
        OR (ly = 1 AND lx > 1 AND left(x, 1) = y);
      IF NOT pair AND lx >= 5 AND ly >= 5 AND lx <= 255 AND ly <= 255 AND abs(lx - ly) <= 1 THEN
        d := public.levenshtein_less_equal(x, y, 2);
        IF d <= 1 THEN
          pair := true;
        ELSIF d = 2 AND lx = ly THEN
          k := 1;
          WHILE k <= lx AND substr(x, k, 1) = substr(y, k, 1) LOOP
            k := k + 1;
          END LOOP;
          pair := k < lx
            AND substr(x, k, 1) = substr(y, k + 1, 1)
            AND substr(x, k + 1, 1) = substr(y, k, 1)
            AND substr(x, k + 2) = substr(y, k + 2);
        END IF;
      END IF;
      IF pair THEN
        hit_a[i] := true;
        hit_b[j] := true;
      END IF;
    END LOOP;
  END LOOP;
  FOR i IN 1 .. na LOOP
    IF NOT hit_a[i] AND length(p_a[i]) <> 2 THEN ua := ua || p_a[i]; END IF;
  END LOOP;
  FOR j IN 1 .. nb LOOP
    IF NOT hit_b[j] AND length(p_b[j]) <> 2 THEN ub := ub || p_b[j]; END IF;
  END LOOP;
  IF cardinality(ua) = 0 OR cardinality(ub) = 0 THEN
    RETURN NULL;
  END IF;

  -- ROLES of the unshared tokens, record a then record b.
  FOR side IN 1 .. 2 LOOP
    DECLARE
      r_given    text[] := CASE side WHEN 1 THEN p_a_given ELSE p_b_given END;
      r_surnames text[] := CASE side WHEN 1 THEN p_a_surnames ELSE p_b_surnames END;
      r_unshared text[] := CASE side WHEN 1 THEN ua ELSE ub END;
      r_roles    text[] := '{}';
    BEGIN
      -- Swapped fields: the tokens whose usage is clear mostly sit in the other field.
      agree := 0;
      differ := 0;
      FOREACH x IN ARRAY COALESCE(r_given, '{}') || COALESCE(r_surnames, '{}') LOOP
        u_role := CASE WHEN x = ANY (p_usage_given) THEN 'GIVEN_NAME' WHEN x = ANY (p_usage_surnames) THEN 'SURNAME' END;
        f_role := CASE WHEN x = ANY (r_given) AND NOT COALESCE(x = ANY (r_surnames), false) THEN 'GIVEN_NAME'
                       WHEN x = ANY (r_surnames) AND NOT COALESCE(x = ANY (r_given), false) THEN 'SURNAME' END;
        IF u_role IS NOT NULL AND f_role IS NOT NULL THEN
          IF u_role = f_role THEN agree := agree + 1; ELSE differ := differ + 1; END IF;
        END IF;
      END LOOP;
      swapped := differ > agree;
      FOREACH x IN ARRAY r_unshared LOOP
        u_role := CASE WHEN x = ANY (p_usage_given) THEN 'GIVEN_NAME' WHEN x = ANY (p_usage_surnames) THEN 'SURNAME' END;
        f_role := CASE WHEN x = ANY (r_given) AND NOT COALESCE(x = ANY (r_surnames), false)
                         THEN CASE WHEN swapped THEN 'SURNAME' ELSE 'GIVEN_NAME' END
                       WHEN x = ANY (r_surnames) AND NOT COALESCE(x = ANY (r_given), false)
                         THEN CASE WHEN swapped THEN 'GIVEN_NAME' ELSE 'SURNAME' END END;
        r_roles := r_roles || COALESCE(u_role, f_role, 'UNKNOWN');
      END LOOP;
      IF side = 1 THEN ra := r_roles; ELSE rb := r_roles; END IF;
    END;
  END LOOP;

  -- VETO: one unshared token on each side in the same role (UNKNOWN fits either).
  FOR i IN 1 .. cardinality(ua) LOOP
    FOR j IN 1 .. cardinality(ub) LOOP
      IF ra[i] = rb[j] OR ra[i] = 'UNKNOWN' OR rb[j] = 'UNKNOWN' THEN
        veto := true;
      END IF;
    END LOOP;
  END LOOP;
  IF NOT veto THEN
    RETURN NULL;
  END IF;
  FOR i IN 1 .. cardinality(ua) LOOP
    out_a := out_a || jsonb_build_object(ua[i], ra[i]);
  END LOOP;
  FOR j IN 1 .. cardinality(ub) LOOP
    out_b := out_b || jsonb_build_object(ub[j], rb[j]);
  END LOOP;
  RETURN jsonb_build_object('a', out_a, 'b', out_b);
END
$$;
COMMENT ON FUNCTION canon.name_veto(text[], text[], text[], text[], text[], text[], text[], text[]) IS
  'SPEC 5 relatives veto: NULL, or {"a": {token: role}, "b": {token: role}} when names a and b (canon.name_tokens sets) each carry an unshared token (no equal, one-typo or initial partner; two-letter fragments never count) of the same role (GIVEN_NAME, SURNAME; UNKNOWN fits either). Roles: clear usage among the drivers (p_usage_*), else the record''s field (p_*_given / p_*_surnames), read swapped when the record''s clear tokens mostly sit in the other field. Symmetric; never vetoes a name whose tokens all have a partner in the other.';

-- snapshot of sql/canon/canon.never_evaluated_drift.sql
-- canon.never_evaluated_drift: dated lead keys neither linked nor unmatched none of whose
-- rows is listed in canon_internal.lead_keys_pending: no batch would ever select them. Read by
-- ops.check_caches, repaired by ops.repair_caches.
CREATE OR REPLACE FUNCTION canon.never_evaluated_drift()
RETURNS TABLE (lead_id integer, example text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT min(k.lead_id), format('lead key %s (lead id %s) is not listed', left(k.lead_source_pk, 40), min(k.lead_id))
  FROM canon_internal.lead_keys k
  WHERE k.lead_date IS NOT NULL
    AND NOT EXISTS (SELECT 1 FROM canon.identity_links l WHERE l.source_table = 'module_ct_cabinet_leads' AND l.source_pk = k.lead_source_pk)
    AND NOT EXISTS (SELECT 1 FROM canon.identity_unmatched u WHERE u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = k.lead_source_pk)
  GROUP BY k.lead_source_pk
  HAVING NOT bool_or(EXISTS (SELECT 1 FROM canon_internal.lead_keys_pending q WHERE q.lead_id = k.lead_id))
$$;
COMMENT ON FUNCTION canon.never_evaluated_drift() IS
  'Dated lead keys never evaluated (no link, no unmatched row) with no row in canon_internal.lead_keys_pending.';

-- snapshot of sql/canon/canon.new_person_key.sql
-- canon.new_person_key: a new person_key, a time-ordered UUID (version 7, RFC 9562):
-- 48 bits of Unix time in milliseconds, then 74 random bits (gen_random_uuid's, with
-- the version nibble set to 7; the variant bits are already RFC 4122's). Why not a v4:
-- every person_key index (the registry's primary key, identity_links, identity_origin,
-- claims) receives a batch's new keys at its right end, a few hot pages, instead of one
-- random leaf page per key; at 1M persons those pages are mostly outside shared buffers
-- and each insert read one. Keys stay unique and unguessable (74 random bits per
-- millisecond); they reveal when the person was created, as identity_registry.created_at
-- does. PostgreSQL 18 has uuidv7() built in; this works on 15 too.
CREATE OR REPLACE FUNCTION canon.new_person_key()
RETURNS uuid
LANGUAGE sql
VOLATILE
PARALLEL SAFE
AS $$
  SELECT encode(
           set_bit(set_bit(
             overlay(uuid_send(gen_random_uuid())
                     PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                     FROM 1 FOR 6),
             52, 1), 53, 1),
           'hex')::uuid
$$;
COMMENT ON FUNCTION canon.new_person_key() IS
  'A new person_key: a time-ordered UUID v7 (RFC 9562), so that new persons land at the right end of every person_key index.';

-- snapshot of sql/canon/canon.normalize_license.sql
-- canon.normalize_license: the one comparison key for driving licence numbers (SPEC 5),
-- used by the driver matching index and lead matching (R2_LICENSE_EXACT).
CREATE OR REPLACE FUNCTION canon.normalize_license(p_license text)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
STRICT
PARALLEL SAFE
AS $$
-- PL/pgSQL because it is 3 to 4 times faster than a SQL function with a subquery.
DECLARE
  -- upper case first (ASCII rules, COLLATE "C": the same on every server), then A-Z0-9
  v_license text := pg_catalog.regexp_replace(pg_catalog.upper(p_license COLLATE "C"), '[^A-Z0-9]+', '', 'g');
BEGIN
  -- junk: outside 5..20 characters (a Peruvian licence is a letter and the 8-digit DNI),
  -- no digit at all (NO TIENE, EN TRAMITE) or one character repeated (00000000)
  IF pg_catalog.length(v_license) NOT BETWEEN 5 AND 20
     OR v_license !~ '[0-9]'
     OR pg_catalog.btrim(v_license, pg_catalog.left(v_license, 1)) = '' THEN
    RETURN NULL;
  END IF;
  RETURN v_license;
END
$$;
COMMENT ON FUNCTION canon.normalize_license(text) IS
  'Licence comparison key: upper-cased, then only A-Z and 0-9 kept (''q-4567 8901'' -> Q45678901). NULL when fewer than 5 or more than 20 characters remain, when no digit remains (NO TIENE) or all characters are the same. Idempotent; never raises.';

-- snapshot of sql/canon/canon.normalize_name.sql
-- canon.normalize_name: the one comparison form of a person's name (SPEC 5), stored in
-- the driver matching index and in match evidence, and compared by canon.name_similarity.
CREATE OR REPLACE FUNCTION canon.normalize_name(p_name text)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
STRICT
PARALLEL SAFE
AS $$
-- PL/pgSQL of builtins, no query: 4 to 5 times faster than the SQL function with an
-- aggregate over regexp_split_to_table it replaces (the same results: test/sql/canon.normalize_name).
DECLARE
  -- Only the first 200 characters count, so a 10 kB string costs what a name costs.
  -- Accents go (unaccent with its dictionary named: no search_path needed; Ñ -> N), then
  -- ASCII upper case (COLLATE "C": the same result on every server).
  v_name text := pg_catalog.upper(
    pg_catalog.left(public.unaccent('public.unaccent'::regdictionary, pg_catalog.left(p_name, 200)), 200) COLLATE "C");
  v_tokens text[];
BEGIN
  -- Every run of anything but A-Z0-9 (spaces, hyphens, punctuation, other scripts, emoji)
  -- separates tokens. A tsvector of them is the set, sorted bytewise (C order) and
  -- de-duplicated; the particles are deleted from it.
  v_tokens := pg_catalog.tsvector_to_array(pg_catalog.ts_delete(
    pg_catalog.array_to_tsvector(pg_catalog.array_remove(
      pg_catalog.string_to_array(pg_catalog.regexp_replace(v_name, '[^A-Z0-9]+', ' ', 'g'), ' '), '')),
    '{DE,DEL,LA,LOS,LAS,EL,Y,E}'::text[]));
  -- Tokens without a letter (numbers) go; they start with a digit, so they sort first.
  IF pg_catalog.ascii(v_tokens[1]) < 65 THEN
    FOR i IN 1 .. pg_catalog.cardinality(v_tokens) LOOP
      EXIT WHEN pg_catalog.ascii(v_tokens[i]) >= 65;
      IF pg_catalog.btrim(v_tokens[i], '0123456789') = '' THEN
        v_tokens[i] := NULL;
      END IF;
    END LOOP;
    v_tokens := pg_catalog.array_remove(v_tokens, NULL);
  END IF;
  -- Joined by single spaces; NULL when no token remains.
  RETURN nullif(pg_catalog.array_to_string(v_tokens, ' '), '');
END
$$;
COMMENT ON FUNCTION canon.normalize_name(text) IS
  'Name as its token set: accents removed, upper case, punctuation to spaces, particles (DE DEL LA LOS LAS EL Y E) and numbers dropped, tokens sorted and de-duplicated, joined by single spaces (''María  de la  Cruz'' -> CRUZ MARIA); first 200 characters only. NULL when no token remains. Idempotent.';

-- snapshot of sql/canon/canon.normalize_phone.sql
-- canon.normalize_phone: the one comparison key for phone numbers (SPEC 5), used by the
-- driver matching index, lead matching (R1_PHONE_EXACT) and the shared-values view.
CREATE OR REPLACE FUNCTION canon.normalize_phone(p_phone text)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
STRICT
PARALLEL SAFE
AS $$
-- PL/pgSQL because it is 8 to 10 times faster than the same steps as a SQL function
-- with subqueries (2 us against 18-24 us a call, PostgreSQL 15 and 18).
DECLARE
  -- ASCII digits only, then leading zeros off (the 00 international prefix, a trunk 0)
  v_digits text := pg_catalog.ltrim(pg_catalog.regexp_replace(p_phone, '[^0-9]+', '', 'g'), '0');
BEGIN
  -- country code 51 off an 11-digit number, and a trunk 0 written after it
  -- (+51 (01) 456-7890 is the same line as (01) 456-7890)
  IF pg_catalog.length(v_digits) = 11 AND pg_catalog.left(v_digits, 2) = '51' THEN
    v_digits := pg_catalog.ltrim(pg_catalog.substr(v_digits, 3), '0');
  END IF;
  -- junk: too short for a phone (< 7), longer than E.164 allows (> 15), one digit repeated
  IF pg_catalog.length(v_digits) NOT BETWEEN 7 AND 15
     OR pg_catalog.btrim(v_digits, pg_catalog.left(v_digits, 1)) = '' THEN
    RETURN NULL;
  END IF;
  RETURN v_digits;
END
$$;
COMMENT ON FUNCTION canon.normalize_phone(text) IS
  'Phone comparison key, the national number: ASCII digits only, leading zeros stripped, country code 51 stripped from 11-digit numbers (''+51 977 456 321'' -> 977456321). NULL when fewer than 7 or more than 15 digits remain or all digits are the same. Idempotent; never raises.';

-- snapshot of sql/canon/canon.normalize_plate.sql
-- canon.normalize_plate: the one comparison key for vehicle plates (SPEC 5), used by the
-- driver matching index and lead matching (R3_PLATE_EXACT_NAME_SIMILAR, R3B).
CREATE OR REPLACE FUNCTION canon.normalize_plate(p_plate text)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
STRICT
PARALLEL SAFE
AS $$
-- PL/pgSQL because it is 3 to 4 times faster than a SQL function with a subquery.
DECLARE
  -- upper case first (ASCII rules, COLLATE "C": the same on every server), then A-Z0-9
  v_plate text := pg_catalog.regexp_replace(pg_catalog.upper(p_plate COLLATE "C"), '[^A-Z0-9]+', '', 'g');
BEGIN
  -- junk: outside 4..12 characters (Peruvian plates have 6), no digit at all (SIN PLACA,
  -- NO TIENE, PENDIENTE) or one character repeated (000000, XXXXXX)
  IF pg_catalog.length(v_plate) NOT BETWEEN 4 AND 12
     OR v_plate !~ '[0-9]'
     OR pg_catalog.btrim(v_plate, pg_catalog.left(v_plate, 1)) = '' THEN
    RETURN NULL;
  END IF;
  RETURN v_plate;
END
$$;
COMMENT ON FUNCTION canon.normalize_plate(text) IS
  'Plate comparison key: upper-cased, then only A-Z and 0-9 kept (''abc-123 x'' -> ABC123X). NULL when fewer than 4 or more than 12 characters remain, when no digit remains (SIN PLACA) or all characters are the same. Idempotent; never raises.';

-- snapshot of sql/canon/canon.one_typo.sql
-- canon.one_typo: two different tokens of 4+ letters one typing error apart: one character
-- changed, missing or extra (levenshtein 1), or two adjacent ones swapped (JOSE/JSOE).
-- The TYPO level of canon.name_token_levels. Plain SQL without SET: inlined per pair.
CREATE OR REPLACE FUNCTION canon.one_typo(p_a text, p_b text)
RETURNS boolean
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
  SELECT length(p_a) >= 4 AND length(p_b) >= 4 AND length(p_a) <= 255 AND length(p_b) <= 255
     AND abs(length(p_a) - length(p_b)) <= 1 AND p_a <> p_b
     AND (public.levenshtein_less_equal(p_a, p_b, 1) <= 1
          OR (length(p_a) = length(p_b) AND public.levenshtein_less_equal(p_a, p_b, 2) = 2
              AND EXISTS (SELECT 1 FROM pg_catalog.generate_series(1, length(p_a) - 1) k
                          WHERE overlay(p_a PLACING pg_catalog.substr(p_a, k + 1, 1) || pg_catalog.substr(p_a, k, 1) FROM k FOR 2) = p_b)))
$$;
COMMENT ON FUNCTION canon.one_typo(text, text) IS
  'Two different tokens of 4+ letters one typing error apart: levenshtein 1 or an adjacent swap.';

-- snapshot of sql/canon/canon.parse_date_file.sql
-- canon.parse_date_file: the day of a public.summary_daily row. date_file holds
-- DD-MM-YYYY or YYYY-MM-DD (both occur upstream); anything else, including days that do
-- not exist (31-02-2026, 2026-13-01), gives NULL and is listed in ops.v_trip_rows_unparseable.
-- IMMUTABLE and inlinable plain SQL (no plpgsql, no exception block): it backs the index
-- public.summary_daily_driver_trip_date_idx. Changing its body requires a REINDEX of it.
CREATE OR REPLACE FUNCTION canon.parse_date_file(p_date_file text)
RETURNS date
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
  SELECT CASE
    WHEN btrim(p_date_file, E' \t\r\n') ~ '^[0-9]{2}-[0-9]{2}-[0-9]{4}$'
      THEN canon.make_date_or_null(substr(btrim(p_date_file, E' \t\r\n'), 7, 4)::integer,
                                   substr(btrim(p_date_file, E' \t\r\n'), 4, 2)::integer,
                                   substr(btrim(p_date_file, E' \t\r\n'), 1, 2)::integer)
    WHEN btrim(p_date_file, E' \t\r\n') ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$'
      THEN canon.make_date_or_null(substr(btrim(p_date_file, E' \t\r\n'), 1, 4)::integer,
                                   substr(btrim(p_date_file, E' \t\r\n'), 6, 2)::integer,
                                   substr(btrim(p_date_file, E' \t\r\n'), 9, 2)::integer)
  END
$$;
COMMENT ON FUNCTION canon.parse_date_file(text) IS
  'Day of a summary_daily.date_file in DD-MM-YYYY or YYYY-MM-DD (blanks, tabs and line breaks trimmed); NULL for anything else, including impossible days. Never raises. Backs summary_daily_driver_trip_date_idx: REINDEX it after any change.';

-- snapshot of sql/canon/canon.plate_comparison.sql
-- canon.plate_comparison: how a lead's plate compares with a driver's (both normalised), as
-- the probabilistic tier weighs it: EXACT; CONFUSION (one character changed into one it is
-- mistaken for when typed or read: O/0, I/1, B/8, S/5, Z/2, G/6); ONE_EDIT (another
-- character changed, one missing or added, two adjacent ones swapped); DIFFERENT. NULL
-- when either plate is unknown. note says what differs, for the evidence in words.
CREATE OR REPLACE FUNCTION canon.plate_comparison(p_lead text, p_driver text, OUT level text, OUT note text)
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  la integer := length(p_lead);
  lb integer := length(p_driver);
  k integer;
  a text;
  b text;
BEGIN
  IF p_lead IS NULL OR p_driver IS NULL THEN
    RETURN;
  END IF;
  IF p_lead = p_driver THEN
    level := 'EXACT';
    RETURN;
  END IF;
  level := 'DIFFERENT';
  IF abs(la - lb) > 1 THEN
    RETURN;
  END IF;
  -- first differing position
  k := 1;
  WHILE k <= least(la, lb) AND substr(p_lead, k, 1) = substr(p_driver, k, 1) LOOP
    k := k + 1;
  END LOOP;
  a := substr(p_lead, k, 1);
  b := substr(p_driver, k, 1);
  IF la = lb THEN
    IF substr(p_lead, k + 1) = substr(p_driver, k + 1) THEN
      IF (a || b) IN ('O0', '0O', 'I1', '1I', 'B8', '8B', 'S5', '5S', 'Z2', '2Z', 'G6', '6G') THEN
        level := 'CONFUSION';
        note := a || '/' || b;
      ELSE
        level := 'ONE_EDIT';
        note := a || '/' || b;
      END IF;
    ELSIF k < la AND a = substr(p_driver, k + 1, 1) AND b = substr(p_lead, k + 1, 1)
          AND substr(p_lead, k + 2) = substr(p_driver, k + 2) THEN
      level := 'ONE_EDIT';
      note := 'swapped ' || a || b || '/' || b || a;
    END IF;
  ELSIF la < lb THEN
    IF substr(p_lead, k) = substr(p_driver, k + 1) THEN
      level := 'ONE_EDIT';
      note := 'missing ' || b;
    END IF;
  ELSE
    IF substr(p_lead, k + 1) = substr(p_driver, k) THEN
      level := 'ONE_EDIT';
      note := 'extra ' || a;
    END IF;
  END IF;
END
$$;
COMMENT ON FUNCTION canon.plate_comparison(text, text) IS
  'Plate comparison level of the probabilistic tier: EXACT, CONFUSION (one of O/0, I/1, B/8, S/5, Z/2, G/6), ONE_EDIT (other substitution, missing or extra character, adjacent swap) or DIFFERENT; NULL when a plate is unknown. note: what differs (O/0, missing 3, swapped 21/12).';

-- snapshot of sql/canon/canon.plate_edit_hashes.sql
-- canon.plate_edit_hashes: canon.plate_edit_keys as 64-bit hashes (hashtextextended, seed 0),
-- the form the GIN index of canon_internal.driver_index holds: an integer key compares and
-- merges several times faster than a text key in the database's collation, which is most of
-- a full build of the index (7 keys a plate). Two plates sharing a key share its hash; a
-- hash shared by chance only proposes a pair that canon.plate_comparison then rejects.
-- The same loop as canon.plate_edit_keys, hashed as it goes (a query per call would cost
-- more than the hashing); a test holds the two equal.
CREATE OR REPLACE FUNCTION canon.plate_edit_hashes(p_plate text)
RETURNS bigint[]
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  keys bigint[] := ARRAY[hashtextextended(p_plate, 0)];
BEGIN
  IF length(p_plate) > 1 THEN
    FOR i IN 1 .. length(p_plate) LOOP
      keys := keys || hashtextextended(overlay(p_plate PLACING '' FROM i FOR 1), 0);
    END LOOP;
  END IF;
  RETURN keys;
END
$$;
COMMENT ON FUNCTION canon.plate_edit_hashes(text) IS
  'canon.plate_edit_keys hashed (hashtextextended, seed 0): the keys of the near-plate GIN index on canon_internal.driver_index.';

-- snapshot of sql/canon/canon.plate_edit_keys.sql
-- canon.plate_edit_keys: the plate and every form of it with one character deleted (its
-- deletion neighbourhood). Two plates one edit apart (a character changed, missing or
-- added, or two adjacent ones swapped) always share one of these keys, so the GIN index
-- of canon_internal.driver_index on them finds near plates by key, never by scanning.
-- Read by canon.probabilistic_candidates (lead side) and the index (driver side).
CREATE OR REPLACE FUNCTION canon.plate_edit_keys(p_plate text)
RETURNS text[]
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
STRICT
SET search_path = pg_catalog, pg_temp
AS $$
-- a loop, not a query: called per lead and per indexed driver
DECLARE
  keys text[] := ARRAY[p_plate];
BEGIN
  IF length(p_plate) > 1 THEN
    FOR i IN 1 .. length(p_plate) LOOP
      keys := keys || overlay(p_plate PLACING '' FROM i FOR 1);
    END LOOP;
  END IF;
  RETURN keys;
END
$$;
COMMENT ON FUNCTION canon.plate_edit_keys(text) IS
  'The plate and its one-deletion forms (ABC123: ABC123, BC123, AC123, ...): plates one edit apart (substitution, insertion, deletion, adjacent swap) share a key. Indexed on canon_internal.driver_index.';

-- snapshot of sql/canon/canon.probabilistic_candidates.sql
-- canon.probabilistic_candidates: the probabilistic tier's candidate pairs (Fellegi-Sunter, as
-- Splink does) for the given lead rows, with each field's comparison level, its weight in
-- bits (log2 m/u of the active canon.match_fs_versions / canon.match_fs_levels), the sum with
-- the prior, the match probability and, for the pairs in the review band or above, the
-- evidence per field and in words. The levels of plate, hire date and park and the number
-- of indexed drivers the weights used are returned too (canon.estimate_fs_m reads them).
-- Candidates come from the tier's blocking, canon.fs_blocked_pairs (plate equal or one edit
-- away with a shared name token; the lead's rare name keys; both read by GIN on hashed keys).
-- Name tokens weigh by rarity: an agreeing token's u is its share of the drivers
-- (canon_internal.name_token_stats), so QUISPE counts for less than a rare surname. Called
-- by canon.probabilistic_decisions, only for the leads the rules leave behind.
CREATE OR REPLACE FUNCTION canon.probabilistic_candidates(p_lead_ids integer[])
RETURNS TABLE (
  lead_id integer,
  lead_source_pk text,
  driver_id text,
  fs_version integer,
  blocks text[],
  plate_level text,
  hire_level text,
  park_level text,
  indexed_drivers bigint,
  name_weight numeric,
  rare_name_agrees boolean,
  lead_tokens_aligned text[],
  match_weight numeric,
  probability numeric,
  driver_deleted boolean,
  contributions jsonb,
  evidence_words text
)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
  WITH v0 AS (
    SELECT fv.*, canon.setting('target_park_id') AS target_park, canon.fs_indexed_drivers() AS drivers
    FROM canon.match_fs_versions fv
    WHERE fv.active
  ),
  -- a token typed by at most rare_max drivers is rare (below 1: a base too small to tell)
  v AS MATERIALIZED (SELECT v0.*, canon.fs_rare_token_max() AS rare_max FROM v0),
  lv AS (
    SELECT l.* FROM canon.match_fs_levels l JOIN v ON v.version = l.version
  ),
  pairs AS MATERIALIZED (
    SELECT * FROM canon.fs_blocked_pairs(p_lead_ids)
  ),
  candidates AS (
    SELECT pr.*, k.lead_source_pk, k.plate_norm AS lead_plate, k.lead_date, string_to_array(k.name_norm, ' ') AS lt,
           d.plate_norm AS driver_plate, d.name_norm AS driver_name, d.hire_date, d.park_id
    FROM pairs pr
    JOIN canon_internal.lead_keys k ON k.lead_id = pr.lead_id
    JOIN canon_internal.driver_index d ON d.driver_id = pr.driver_id
  ),
  compared AS (
    SELECT pr.lead_id, pr.lead_source_pk, pr.driver_id, pr.blocks, v.version,
           pc.level AS plate_level, pc.note AS plate_note, pr.lead_plate, pr.driver_plate,
           CASE WHEN isfinite(pr.hire_date) AND isfinite(pr.lead_date) THEN pr.hire_date - pr.lead_date END AS hire_days,
           -- an unknown or infinite date ('infinity' arrives from upstream) is no evidence
           CASE WHEN NOT (isfinite(pr.hire_date) AND isfinite(pr.lead_date)) OR pr.hire_date IS NULL OR pr.lead_date IS NULL THEN NULL
                WHEN pr.hire_date - pr.lead_date BETWEEN 0 AND 30 THEN 'NEAR'
                WHEN pr.hire_date - pr.lead_date BETWEEN -30 AND 90 THEN 'CLOSE'
                WHEN pr.hire_date - pr.lead_date BETWEEN -365 AND 365 THEN 'YEAR'
                ELSE 'FAR' END AS hire_level,
           CASE WHEN pr.park_id IS NOT DISTINCT FROM v.target_park THEN 'TARGET' ELSE 'OTHER' END AS park_level,
           ln(v.prior_match_share::float8 / greatest(v.drivers, 1) / (1 - v.prior_match_share::float8 / greatest(v.drivers, 1))) / ln(2::float8) AS prior_weight,
           nm.weight AS name_weight, nm.rare_agrees, pr.lt, pr.driver_name,
           x.present IS NULL AS driver_deleted,
           nm.aligned,
           v.drivers, v.rare_max, v.token_share_min, v.review_probability_min
    FROM candidates pr
    CROSS JOIN v
    CROSS JOIN LATERAL canon.plate_comparison(pr.lead_plate, pr.driver_plate) pc
    -- one probe per pair (a NOT EXISTS became a scan of public.drivers)
    LEFT JOIN LATERAL (SELECT true AS present FROM public.drivers x WHERE x.driver_id = pr.driver_id LIMIT 1) x ON true
    -- Name: every token's level, weighed by the partner token's share of drivers.
    CROSS JOIN LATERAL (
      SELECT coalesce(sum(t.w), 0) AS weight,
             coalesce(bool_or(t.side = 'LEAD' AND t.level IN ('EXACT', 'PHONETIC', 'TYPO', 'GLUED') AND t.count <= v.rare_max AND v.rare_max >= 1), false) AS rare_agrees,
             -- the lead's tokens spelled as their partners: the relatives veto then sees only tokens without any partner
             array_agg(CASE WHEN t.level IN ('PHONETIC', 'TYPO', 'GLUED') THEN t.partner ELSE t.token END) FILTER (WHERE t.side = 'LEAD') AS aligned
      FROM canon.fs_name_tokens(pr.lt, pr.driver_name, v.version, v.drivers, v.token_share_min) t
    ) nm
  ),
  weighed AS (
    SELECT c.*,
           -- weights in double precision (a numeric logarithm is slow)
           CASE WHEN pl.u_kind = 'PER_DRIVER' THEN ln(pl.m::float8 / least(1, pl.u::float8 / greatest(c.drivers, 1)))
                ELSE ln(pl.m::float8 / pl.u::float8) END / ln(2::float8) AS plate_weight,
           ln(hl.m::float8 / hl.u::float8) / ln(2::float8) AS hire_weight,
           ln(pk.m::float8 / pk.u::float8) / ln(2::float8) AS park_weight
    FROM compared c
    LEFT JOIN lv pl ON pl.comparison = 'PLATE' AND pl.level = c.plate_level
    LEFT JOIN lv hl ON hl.comparison = 'HIRE_DATE' AND hl.level = c.hire_level
    LEFT JOIN lv pk ON pk.comparison = 'PARK' AND pk.level = c.park_level
  ),
  summed AS (
    SELECT w.*, w.prior_weight + coalesce(w.plate_weight, 0) + w.name_weight + coalesce(w.hire_weight, 0) + coalesce(w.park_weight, 0) AS total
    FROM weighed w
  )
  SELECT s.lead_id, s.lead_source_pk, s.driver_id, s.version, s.blocks, s.plate_level,
         s.hire_level, s.park_level, s.drivers::bigint,
         round((s.name_weight)::numeric, 2), s.rare_agrees, s.aligned,
         round((s.total)::numeric, 2), s.probability,
         s.driver_deleted,
         det.contributions,
         det.words
  FROM (
    SELECT sm.*, round((1 / (1 + power(2::float8, -greatest(least(sm.total, 60), -60))))::numeric, 6) AS probability
    FROM summed sm
  ) s
  -- The evidence per field and in words only for the candidates that can be linked or
  -- reviewed (the gate is checked before the tokens are compared again).
  LEFT JOIN LATERAL (
    SELECT jsonb_build_object(
             'prior', round((s.prior_weight)::numeric, 2),
             'plate', jsonb_build_object('level', s.plate_level, 'note', s.plate_note, 'lead', s.lead_plate, 'driver', s.driver_plate,
                                         'weight', round((coalesce(s.plate_weight, 0))::numeric, 2)),
             'name', jsonb_build_object('weight', round((s.name_weight)::numeric, 2), 'rare_token_agrees', s.rare_agrees, 'tokens', nw.tokens),
             'hire_date', jsonb_build_object('level', s.hire_level, 'days_after_lead', s.hire_days, 'weight', round((coalesce(s.hire_weight, 0))::numeric, 2)),
             'park', jsonb_build_object('level', s.park_level, 'weight', round((coalesce(s.park_weight, 0))::numeric, 2))) AS contributions,
           concat_ws('; ',
             CASE s.plate_level
               WHEN 'EXACT' THEN 'plate equal'
               WHEN 'CONFUSION' THEN format('plate one character off (%s)', s.plate_note)
               WHEN 'ONE_EDIT' THEN format('plate one edit off (%s)', s.plate_note)
               WHEN 'DIFFERENT' THEN 'another plate'
               ELSE 'no plate to compare' END,
             'name: ' || nw.words,
             CASE WHEN s.hire_days IS NULL THEN 'hire date unknown'
                  WHEN s.hire_days >= 0 THEN format('hire date %s days after the lead', s.hire_days)
                  ELSE format('hire date %s days before the lead', -s.hire_days) END,
             CASE s.park_level WHEN 'TARGET' THEN 'target park' ELSE 'another park' END) AS words
    FROM (
      SELECT jsonb_agg(jsonb_build_object('side', t.side, 'token', t.token, 'partner', t.partner, 'level', t.level,
                                          'share', round((t.share)::numeric, 6), 'weight', round((t.w)::numeric, 2)) ORDER BY t.side DESC, t.token) AS tokens,
             string_agg(CASE t.level
                          WHEN 'EXACT' THEN t.token || ' equal'
                          WHEN 'PHONETIC' THEN t.token || ' sounds like ' || t.partner
                          WHEN 'TYPO' THEN t.token || ' one typo from ' || t.partner
                          WHEN 'GLUED' THEN t.token || ' glued/split with ' || t.partner
                          WHEN 'INITIAL' THEN t.token || ' initial of ' || t.partner
                          WHEN 'NONE' THEN t.token || ' not in the driver''s name'
                          WHEN 'MISSING' THEN t.token || ' not given on the lead'
                        END
                        || CASE WHEN t.level IN ('EXACT', 'PHONETIC', 'TYPO', 'GLUED')
                                THEN CASE WHEN t.count <= s.rare_max AND s.rare_max >= 1 THEN ' (rare)' ELSE ' (common)' END
                                ELSE '' END,
                        ', ' ORDER BY t.side DESC, t.token) AS words
      FROM canon.fs_name_tokens(s.lt, s.driver_name, s.version, s.drivers, s.token_share_min) t
      WHERE s.probability >= s.review_probability_min
    ) nw
    WHERE s.probability >= s.review_probability_min
  ) det ON true
$$;
COMMENT ON FUNCTION canon.probabilistic_candidates(integer[]) IS
  'Probabilistic tier: candidate drivers of the given lead rows (blocks: plate equal or one edit, rare name tokens), each field''s level and weight (bits), the total with the prior, the probability, the per-field contributions and the evidence in words. Parameters: the active canon.match_fs_versions.';

-- snapshot of sql/canon/canon.probabilistic_decisions.sql
-- canon.probabilistic_decisions: the probabilistic tier's outcome per lead row, over its
-- candidates (canon.probabilistic_candidates): LINK, REVIEW or NONE, with the best driver,
-- its probability and weight, the margin over the second candidate, the evidence and up to
-- 5 candidates with their weights. A candidate is out when the names are relatives' (the
-- veto of the rules, canon.name_veto_of, on the lead's tokens spelled as their phonetic,
-- typo or glued partners: only a token without any partner can make a relative; looked up
-- only for candidates in the review band or above), a person said it is not this driver
-- (canon.lead_driver_labels) or the driver is gone. LINK needs, all of: probability >= link_probability_min; the
-- next candidate at least margin_bits_min bits behind; evidence besides the name when the
-- name is common (a plate equal or one edit away, or a rare name token agreeing). REVIEW:
-- the best is at or above review_probability_min but fails one of those (why says which).
-- Called by canon.link_probabilistic and ops.explain_lead.
CREATE OR REPLACE FUNCTION canon.probabilistic_decisions(p_lead_ids integer[])
RETURNS TABLE (
  lead_id integer,
  lead_source_pk text,
  outcome text,
  why text,
  driver_id text,
  probability numeric,
  match_weight numeric,
  margin_bits numeric,
  fs_version integer,
  evidence jsonb,
  candidates jsonb
)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
  WITH v AS (
    SELECT fv.* FROM canon.match_fs_versions fv WHERE fv.active
  ),
  cand AS MATERIALIZED (
    SELECT c.* FROM canon.probabilistic_candidates(p_lead_ids) c
  ),
  -- The relatives veto, for the candidates that could matter only.
  vetted AS (
    SELECT c.*, k.lead_date, k.plate_norm AS lead_plate, k.name_norm AS lead_name,
           d.park_id, d.plate_norm AS driver_plate, d.name_norm AS driver_name, d.hire_date,
           CASE WHEN c.probability >= v.review_probability_min AND NOT c.driver_deleted THEN
             canon.name_veto_of(c.lead_tokens_aligned, c.lead_id, NULL,
                                string_to_array(d.name_norm, ' '), NULL, c.driver_id)
           END AS veto
    FROM cand c
    CROSS JOIN v
    JOIN canon_internal.lead_keys k ON k.lead_id = c.lead_id
    JOIN canon_internal.driver_index d ON d.driver_id = c.driver_id
  ),
  ranked AS (
    SELECT x.*,
           row_number() OVER (PARTITION BY x.lead_id ORDER BY x.reject_reason IS NULL DESC, x.match_weight DESC, x.driver_id) AS pos
    FROM (
      SELECT t.*,
             CASE WHEN t.driver_deleted THEN 'DRIVER_DELETED'
                  WHEN lbl.present THEN 'NOT_THIS_DRIVER'
                  WHEN t.veto IS NOT NULL THEN 'NAME_VETO' END AS reject_reason
      FROM vetted t
      -- a person said this lead is not this driver
      LEFT JOIN LATERAL (SELECT true AS present FROM canon.lead_driver_labels lb
                         WHERE lb.lead_source_pk = t.lead_source_pk AND lb.driver_id = t.driver_id) lbl ON true
    ) x
  ),
  per_lead AS (
    SELECT r.lead_id,
           max(r.lead_source_pk) AS lead_source_pk,
           (array_agg(r.driver_id ORDER BY r.pos) FILTER (WHERE r.reject_reason IS NULL))[1] AS best_driver,
           max(r.match_weight) FILTER (WHERE r.pos = 1 AND r.reject_reason IS NULL) AS best_weight,
           max(r.match_weight) FILTER (WHERE r.pos = 2 AND r.reject_reason IS NULL) AS second_weight
    FROM ranked r
    GROUP BY r.lead_id
  ),
  decided AS (
    SELECT pl.*, b.probability, b.plate_level, b.rare_name_agrees, b.contributions, b.evidence_words,
           b.lead_date, b.lead_plate, b.lead_name, b.park_id, b.driver_plate, b.driver_name, b.hire_date, b.fs_version,
           pl.best_weight - pl.second_weight AS margin,
           CASE
             WHEN b.driver_id IS NULL OR b.probability < v.review_probability_min THEN NULL
             WHEN b.probability < v.link_probability_min THEN 'BELOW_LINK_BAND'
             WHEN pl.second_weight IS NOT NULL AND pl.best_weight - pl.second_weight < v.margin_bits_min THEN 'SECOND_CANDIDATE_CLOSE'
             WHEN b.plate_level IS DISTINCT FROM 'EXACT' AND b.plate_level IS DISTINCT FROM 'CONFUSION'
                  AND b.plate_level IS DISTINCT FROM 'ONE_EDIT' AND NOT b.rare_name_agrees THEN 'COMMON_NAME_ONLY'
           END AS review_why
    FROM per_lead pl
    CROSS JOIN v
    LEFT JOIN ranked b ON b.lead_id = pl.lead_id AND b.driver_id = pl.best_driver
  ),
  top_candidates AS (
    SELECT r.lead_id,
           jsonb_agg(jsonb_build_object(
             'driver_id', r.driver_id, 'park_id', r.park_id, 'rule', 'R4_PROBABILISTIC',
             'score', round(r.probability * 100, 2), 'probability', r.probability, 'match_weight', r.match_weight,
             'hire_date', r.hire_date, 'kept', r.reject_reason IS NULL, 'reject_reason', r.reject_reason,
             'evidence', r.evidence_words,
             'weights', jsonb_build_object('prior', r.contributions->'prior', 'plate', r.contributions->'plate'->'weight',
                                           'name', r.contributions->'name'->'weight', 'hire_date', r.contributions->'hire_date'->'weight',
                                           'park', r.contributions->'park'->'weight'))
             || CASE WHEN r.veto IS NOT NULL THEN jsonb_build_object('name_veto', jsonb_build_object('lead', r.veto->'a', 'driver', r.veto->'b')) ELSE '{}' END
             ORDER BY r.pos) AS candidates
    FROM ranked r
    WHERE r.pos <= 5
    GROUP BY r.lead_id
  )
  SELECT d.lead_id, d.lead_source_pk,
         CASE WHEN d.probability IS NULL OR d.probability < v.review_probability_min THEN 'NONE'
              WHEN d.review_why IS NULL THEN 'LINK' ELSE 'REVIEW' END,
         d.review_why,
         CASE WHEN d.probability >= v.review_probability_min THEN d.best_driver END,
         d.probability, d.best_weight, round(d.margin, 2), v.version,
         CASE WHEN d.probability >= v.review_probability_min THEN jsonb_build_object(
           'tier', 'PROBABILISTIC', 'fs_version', v.version, 'probability', d.probability,
           'match_weight', d.best_weight, 'margin_bits', round(d.margin, 2), 'in_words', d.evidence_words,
           'contributions', d.contributions,
           'lead', jsonb_build_object('lead_id', d.lead_id, 'plate_norm', d.lead_plate, 'name_norm', d.lead_name, 'lead_date', d.lead_date),
           'driver', jsonb_build_object('driver_id', d.best_driver, 'park_id', d.park_id, 'plate_norm', d.driver_plate,
                                        'name_norm', d.driver_name, 'hire_date', d.hire_date))
         END,
         coalesce(t.candidates, '[]'::jsonb)
  FROM decided d
  CROSS JOIN v
  LEFT JOIN top_candidates t ON t.lead_id = d.lead_id
$$;
COMMENT ON FUNCTION canon.probabilistic_decisions(integer[]) IS
  'Probabilistic tier outcome per lead row: LINK / REVIEW (why: BELOW_LINK_BAND, SECOND_CANDIDATE_CLOSE, COMMON_NAME_ONLY) / NONE, best driver, probability, weight, margin over the second, evidence (contributions per field, words) and up to 5 candidates with weights. Relatives (canon.name_veto_of) and deleted drivers are never linked.';

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

-- snapshot of sql/canon/canon.refresh_driver_index.sql
-- canon.refresh_driver_index: pipeline step 4. Brings canon_internal.driver_index up to date with
-- public.drivers. Every run reads the driver ids with a row version written since its last
-- read, by commit order (the row's xmin against the oldest transaction in progress at that
-- read, canon_internal.source_scan_state.seen_xmin): a late commit, a change in place and a driver
-- with a future or missing updated_at/created_at are all read by the next run, in one pass
-- over the drivers. Such odd timestamps are counted (and listed in
-- ops.v_drivers_odd_timestamps) from the odd row versions of the last count and the
-- versions written since, read by ctid: the pass does not read the timestamps.
-- Their rows are re-normalised only when their source values
-- changed (hash); the newest row of a driver_id wins. Every
-- driver_index_full_refresh_hours the whole table is reconciled, which also removes
-- deleted drivers (the matcher never proposes a deleted driver meanwhile: it checks).
-- The first build of an empty index inserts into the bare table and creates the secondary
-- indexes after the rows (canon.suspend_driver_index_indexes / restore_driver_index_indexes).
-- Whenever a row of the index is written or removed, driver_index_state.changed_at is set
-- to now() (reported by runs). Which unmatched leads are worth retrying is decided by
-- canon.mark_retries_due from the rows indexed since its last check (indexed_at) and
-- the keys drivers lost (canon_internal.driver_index_key_changes, written here). Returns step stats.
CREATE OR REPLACE FUNCTION canon.refresh_driver_index(p_run_id bigint)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET jit = off
SET client_min_messages = warning
-- a full build sorts every driver row once: in memory at 20k drivers (4 MB would spill)
SET work_mem = '64MB'
AS $$
DECLARE
  v_foreign bigint[];
  v_state canon_internal.driver_index_state%ROWTYPE;
  v_full boolean;
  v_seen xid8;
  v_limit integer;
  v_snapshot_xmin xid8;
  v_scanned integer;
  v_upserted integer;
  v_deleted integer := 0;
  v_changed_at timestamptz;
  v_probe_by_key boolean;
  v_hashjoin text;
  v_mergejoin text;
  v_changed_ids text[];
  v_rows bigint;
  v_future bigint;
  v_no_time bigint;
  v_bad_ids bigint;
  v_was_empty boolean;
  v_bulk boolean := false;
  v_indexes_restored integer;
  v_future_from timestamp := (now() AT TIME ZONE canon.setting('business_timezone')) + interval '1 day';
  v_count_all boolean;
  v_odd_how text;
  v_odd_versions tid[];
  v_odd_xmins xid[];
  v_relfilenode oid := pg_relation_filenode('public.drivers'::regclass);
BEGIN
  SELECT * INTO v_state FROM canon_internal.driver_index_state FOR UPDATE;
  -- an index of the table dropped by hand comes back (a no-op when all exist)
  v_indexes_restored := canon.restore_driver_index_indexes();
  v_full := NOT FOUND OR v_state.last_full_at IS NULL
            OR v_state.last_full_at < now() - make_interval(hours => canon.setting('driver_index_full_refresh_hours')::integer);
  SELECT s.seen_xmin INTO v_seen FROM canon_internal.source_scan_state s WHERE s.source_table = 'drivers' FOR UPDATE;
  v_full := v_full OR v_seen IS NULL;
  v_limit := CASE WHEN NOT v_full THEN canon.xmin_age_limit(v_seen) END;
  v_full := v_full OR v_limit IS NULL;
  v_foreign := canon.foreign_xids(); -- before the read's snapshot (canon.local_snapshot_xmin)

  -- Odd timestamps: a row version never changes, and one that is not odd at a threshold is
  -- not odd at a later one (the threshold moves forward with the clock). So the odd versions
  -- of the last count (odd_versions: ctid and xmin) and the versions written since the last
  -- read are all the odd versions there can be: the pass reads neither timestamp (they end
  -- every row: reading them costs as much as the pass), and those few versions are read by
  -- their ctid in the same statement. Every row is counted again on a full refresh, before
  -- the first count, when the threshold moved back (a change of time zone), when the table
  -- was rewritten (VACUUM FULL, CLUSTER: every ctid moved) or is not a plain table.
  v_count_all := v_full OR v_state.odd_versions IS NULL OR v_future_from < v_state.odd_future_from
    OR v_state.odd_relfilenode IS DISTINCT FROM v_relfilenode
    OR (SELECT c.relkind FROM pg_class c WHERE c.oid = 'public.drivers'::regclass) <> 'r';

  -- One pass over the drivers (one builtin per row): the ids with a row version not seen
  -- yet. The snapshot is this statement's own. No DISTINCT: it would sort every row (a
  -- third of the pass); the few ids repeat harmlessly.
  IF v_count_all THEN
    SELECT count(*),
           count(*) FILTER (WHERE o.why = 'FUTURE_TIMESTAMP'),
           count(*) FILTER (WHERE o.why = 'NO_TIMESTAMP'),
           -- ids that cannot be indexed, counted on a full refresh only (v_full is a constant)
           count(*) FILTER (WHERE v_full AND (nullif(btrim(d.driver_id), '') IS NULL OR length(d.driver_id) > 200)),
           CASE WHEN v_full THEN NULL
                ELSE coalesce(array_agg(d.driver_id) FILTER (WHERE age(d.xmin) <= v_limit), '{}') END,
           -- (two aggregates of one pass take the rows in the same order: the arrays pair up)
           coalesce(array_agg(d.ctid) FILTER (WHERE o.why IS NOT NULL), '{}'),
           coalesce(array_agg(d.xmin) FILTER (WHERE o.why IS NOT NULL), '{}'),
           canon.local_snapshot_xmin(pg_current_snapshot(), v_foreign)
    INTO v_rows, v_future, v_no_time, v_bad_ids, v_changed_ids, v_odd_versions, v_odd_xmins, v_snapshot_xmin
    FROM public.drivers d
    CROSS JOIN LATERAL (SELECT canon.driver_timestamp_oddity(d.updated_at, d.created_at, v_future_from) AS why) o;
    v_odd_how := 'COUNTED';
  ELSE
    WITH pass AS MATERIALIZED (
      SELECT count(*) AS n,
             coalesce(array_agg(d.ctid) FILTER (WHERE age(d.xmin) <= v_limit), '{}') AS tids,
             canon.local_snapshot_xmin(pg_current_snapshot(), v_foreign) AS snapshot_xmin
      FROM public.drivers d
    ),
    -- the versions written since the last read and the odd versions counted last time, by
    -- ctid (the same snapshot: the very versions the pass saw)
    seen AS MATERIALIZED (
      SELECT d.ctid, d.xmin, d.driver_id,
             age(d.xmin) <= v_limit AS written,
             canon.driver_timestamp_oddity(d.updated_at, d.created_at, v_future_from) AS why
      FROM public.drivers d
      WHERE d.ctid = ANY ((SELECT p.tids FROM pass p) || v_state.odd_versions)
    ),
    odd AS (
      SELECT s.ctid, s.xmin, s.why
      FROM seen s
      -- a tracked slot holds the version counted only with the same xmin
      LEFT JOIN unnest(v_state.odd_versions, v_state.odd_version_xmins) t (tid, x) ON t.tid = s.ctid AND t.x = s.xmin
      WHERE s.why IS NOT NULL AND (s.written OR t.tid IS NOT NULL)
    )
    SELECT p.n,
           (SELECT count(*) FILTER (WHERE o.why = 'FUTURE_TIMESTAMP') FROM odd o),
           (SELECT count(*) FILTER (WHERE o.why = 'NO_TIMESTAMP') FROM odd o),
           (SELECT coalesce(array_agg(s.driver_id), '{}') FROM seen s WHERE s.written),
           (SELECT coalesce(array_agg(o.ctid ORDER BY o.ctid), '{}') FROM odd o),
           (SELECT coalesce(array_agg(o.xmin ORDER BY o.ctid), '{}') FROM odd o),
           p.snapshot_xmin
    INTO v_rows, v_future, v_no_time, v_changed_ids, v_odd_versions, v_odd_xmins, v_snapshot_xmin
    FROM pass p;
    v_odd_how := 'TRACKED';
  END IF;

  -- The drivers to look at (all of them on a full refresh), newest row per driver_id.
  DROP TABLE IF EXISTS pg_temp.driver_index_source;
  CREATE TEMP TABLE driver_index_source ON COMMIT DROP AS
  SELECT s.*,
         canon.driver_source_hash(s.park_id, s.phone, s.license_normalized_number, s.license_number,
                                s.car_normalized_number, s.car_number, s.full_name, s.first_name,
                                s.middle_name, s.last_name, s.hire_date) AS source_hash
  FROM (
    -- bytewise order (COLLATE "C"): the cheapest sort; the same ids are equal in every collation
    SELECT DISTINCT ON (d.driver_id COLLATE "C")
           d.driver_id, d.park_id, d.phone, d.license_normalized_number, d.license_number,
           d.car_normalized_number, d.car_number, d.full_name, d.first_name, d.middle_name, d.last_name, d.hire_date,
           coalesce(d.updated_at, d.created_at) AS changed_at
    FROM public.drivers d
    WHERE nullif(btrim(d.driver_id), '') IS NOT NULL
      AND length(d.driver_id) <= 200 -- garbage ids (10 kB) cannot be indexed: counted below
      AND (v_full OR d.driver_id = ANY (v_changed_ids)) -- by the upstream index on driver_id: no second pass
    ORDER BY d.driver_id COLLATE "C", coalesce(d.updated_at, d.created_at) DESC NULLS LAST
  ) s;
  -- The join key's statistics are all the plans below need (every column: 10x the time).
  ANALYZE pg_temp.driver_index_source (driver_id);
  v_scanned := (SELECT count(*) FROM pg_temp.driver_index_source);
  -- An empty index (the first build) has no row of a deleted driver to remove.
  v_was_empty := v_full AND NOT EXISTS (SELECT 1 FROM canon_internal.driver_index);
  -- The first build fills the bare table and creates its secondary indexes after the rows
  -- (one sort each instead of a random insert per row and index; at 1M drivers most of the
  -- build). Not when another session holds a lock on the table: then row by row.
  v_bulk := v_was_empty AND v_scanned > 0 AND canon.suspend_driver_index_indexes();

  -- Few drivers against a large index: probe it by key. The planner would rather hash the
  -- whole index (it prices each probe as a random read); on a full refresh it should.
  v_probe_by_key := NOT v_full
    AND v_scanned * 10 < (SELECT c.reltuples FROM pg_class c WHERE c.oid = 'canon_internal.driver_index'::regclass);
  IF v_probe_by_key THEN
    v_hashjoin := current_setting('enable_hashjoin');
    v_mergejoin := current_setting('enable_mergejoin');
    PERFORM set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true);
  END IF;

  -- Every written row gets indexed_at = now(): canon.mark_retries_due finds the changed
  -- drivers by it (driver_index_indexed_at_idx) and marks due the OPEN leads sharing a key.
  -- The keys a re-indexed driver no longer has are logged (driver_index_key_changes): a
  -- lead that had it as a candidate by such a key is due too. The plate and the name go
  -- together (the probabilistic tier's plate block pairs a near plate with a shared token).
  WITH changed AS (
    SELECT h.driver_id, h.park_id,
           canon.normalize_phone(h.phone) AS phone_norm,
           canon.normalize_license(coalesce(nullif(btrim(h.license_normalized_number), ''), h.license_number)) AS license_norm,
           canon.normalize_plate(coalesce(nullif(btrim(h.car_normalized_number), ''), h.car_number)) AS plate_norm,
           canon.normalize_name(coalesce(nullif(btrim(h.full_name), ''), concat_ws(' ', h.first_name, h.middle_name, h.last_name))) AS name_norm,
           h.hire_date, h.source_hash, h.changed_at,
           i.driver_id IS NOT NULL AS was_indexed,
           i.phone_norm AS old_phone_norm, i.license_norm AS old_license_norm, i.plate_norm AS old_plate_norm,
           i.name_norm AS old_name_norm
    FROM pg_temp.driver_index_source h
    LEFT JOIN canon_internal.driver_index i ON i.driver_id = h.driver_id
    WHERE i.driver_id IS NULL OR i.source_hash <> h.source_hash
  ),
  upserted AS (
    INSERT INTO canon_internal.driver_index AS i (
      driver_id, park_id, phone_norm, license_norm, plate_norm, name_norm, hire_date,
      source_hash, source_changed_at, indexed_at, indexed_run_id)
    SELECT c.driver_id, c.park_id, c.phone_norm, c.license_norm, c.plate_norm, c.name_norm,
           c.hire_date, c.source_hash, c.changed_at, now(), p_run_id
    FROM changed c
    ON CONFLICT (driver_id) DO UPDATE
      SET park_id = excluded.park_id, phone_norm = excluded.phone_norm, license_norm = excluded.license_norm,
          plate_norm = excluded.plate_norm, name_norm = excluded.name_norm, hire_date = excluded.hire_date,
          source_hash = excluded.source_hash, source_changed_at = excluded.source_changed_at,
          indexed_at = excluded.indexed_at, indexed_run_id = excluded.indexed_run_id
    RETURNING 1
  ),
  lost_keys AS (
    INSERT INTO canon_internal.driver_index_key_changes (driver_id, change, phone_norm, license_norm, plate_norm, name_norm, logged_at, run_id)
    SELECT c.driver_id, 'KEYS_CHANGED',
           CASE WHEN c.old_phone_norm IS DISTINCT FROM c.phone_norm THEN c.old_phone_norm END,
           CASE WHEN c.old_license_norm IS DISTINCT FROM c.license_norm THEN c.old_license_norm END,
           CASE WHEN c.plate_or_name_changed THEN c.old_plate_norm END,
           CASE WHEN c.plate_or_name_changed THEN c.old_name_norm END,
           now(), p_run_id
    FROM (SELECT c0.*, (c0.old_plate_norm IS DISTINCT FROM c0.plate_norm OR c0.old_name_norm IS DISTINCT FROM c0.name_norm) AS plate_or_name_changed
          FROM changed c0) c
    WHERE c.was_indexed
      AND ((c.old_phone_norm IS NOT NULL AND c.old_phone_norm IS DISTINCT FROM c.phone_norm)
           OR (c.old_license_norm IS NOT NULL AND c.old_license_norm IS DISTINCT FROM c.license_norm)
           OR (c.plate_or_name_changed AND num_nonnulls(c.old_plate_norm, c.old_name_norm) > 0))
    RETURNING 1
  )
  SELECT count(*) INTO v_upserted FROM upserted;
  IF v_bulk THEN
    v_indexes_restored := v_indexes_restored + canon.restore_driver_index_indexes();
  END IF;

  IF v_probe_by_key THEN
    PERFORM set_config('enable_hashjoin', v_hashjoin, true), set_config('enable_mergejoin', v_mergejoin, true);
  END IF;

  IF v_full AND NOT v_was_empty THEN
    -- The keys of removed drivers are logged: the leads that had one as a candidate are due.
    WITH removed AS (
      DELETE FROM canon_internal.driver_index i
      WHERE NOT EXISTS (SELECT 1 FROM public.drivers d WHERE d.driver_id = i.driver_id)
      RETURNING i.driver_id, i.phone_norm, i.license_norm, i.plate_norm, i.name_norm
    ),
    logged AS (
      INSERT INTO canon_internal.driver_index_key_changes (driver_id, change, phone_norm, license_norm, plate_norm, name_norm, logged_at, run_id)
      SELECT r.driver_id, 'REMOVED', r.phone_norm, r.license_norm, r.plate_norm, r.name_norm, now(), p_run_id
      FROM removed r
      WHERE num_nonnulls(r.phone_norm, r.license_norm, r.plate_norm, r.name_norm) > 0
      RETURNING 1
    )
    SELECT count(*) INTO v_deleted FROM removed;
  END IF;
  DROP TABLE pg_temp.driver_index_source;

  -- The index changed (reported; retries are targeted by canon.mark_retries_due).
  IF v_upserted > 0 OR v_deleted > 0 THEN
    v_changed_at := now();
  END IF;

  INSERT INTO canon_internal.driver_index_state AS s (singleton, last_full_at, last_refresh_at, last_run_id, changed_at,
                                                     odd_future_from, odd_future_rows, odd_untimed_rows,
                                                     odd_versions, odd_version_xmins, odd_relfilenode)
  VALUES (true, CASE WHEN v_full THEN now() END, now(), p_run_id, v_changed_at,
          v_future_from, v_future, v_no_time, v_odd_versions, v_odd_xmins, v_relfilenode)
  ON CONFLICT (singleton) DO UPDATE
    SET last_full_at = coalesce(excluded.last_full_at, s.last_full_at),
        last_refresh_at = excluded.last_refresh_at,
        last_run_id = excluded.last_run_id,
        changed_at = coalesce(excluded.changed_at, s.changed_at),
        odd_future_from = excluded.odd_future_from, odd_future_rows = excluded.odd_future_rows,
        odd_untimed_rows = excluded.odd_untimed_rows, odd_versions = excluded.odd_versions,
        odd_version_xmins = excluded.odd_version_xmins, odd_relfilenode = excluded.odd_relfilenode;
  UPDATE canon_internal.source_scan_state
  SET seen_xmin = v_snapshot_xmin, read_at = now(), run_id = p_run_id,
      full_read_at = CASE WHEN v_full THEN now() ELSE full_read_at END
  WHERE source_table = 'drivers';

  RETURN jsonb_build_object(
    'mode', CASE WHEN v_full THEN 'full' ELSE 'incremental' END,
    'first_build_bulk', v_bulk, -- the secondary indexes created after the rows
    'indexes_created', v_indexes_restored,
    'driver_rows', v_rows,
    'drivers_read_again', CASE WHEN v_full THEN NULL ELSE (SELECT count(DISTINCT x) FROM unnest(v_changed_ids) x) END,
    'drivers_scanned', v_scanned,
    'drivers_with_future_timestamp', v_future,
    'drivers_without_timestamp', v_no_time,
    'odd_timestamps', v_odd_how, -- COUNTED (every row) or TRACKED (the odd versions of the last count and the versions written since)
    'drivers_reindexed', v_upserted,
    'drivers_removed', v_deleted,
    'drivers_indexed', CASE WHEN v_full THEN (SELECT count(*) FROM canon_internal.driver_index) END,
    'drivers_skipped_bad_id', CASE WHEN v_full THEN v_bad_ids END,
    'index_changed', v_changed_at IS NOT NULL);
END
$$;
COMMENT ON FUNCTION canon.refresh_driver_index(bigint) IS 'Pipeline step 4: incremental (row versions written since the last read, by commit order) or full refresh of canon_internal.driver_index from public.drivers; sets driver_index_state.changed_at when rows were written or removed and logs the keys drivers lost (canon_internal.driver_index_key_changes). Returns step stats.';

-- snapshot of sql/canon/canon.refresh_lead_keys.sql
-- canon.refresh_lead_keys: brings canon_internal.lead_keys up to date for the given lead rows
-- (ids), whatever happened to them: a new or changed row is (re-)keyed when its source
-- values differ from what was keyed (source hash), a row whose key is over 200 characters
-- is listed in canon_internal.lead_rows_unkeyed instead (no index can hold a 10 kB key), a row that
-- is gone loses its key. What depends on a row's key follows in the same statement:
-- * canon_internal.lead_keys_pending (never-evaluated keys) lists a row keyed for the first time or
--   under another key or date;
-- * canon.identity_unmatched.retry_due is set for an OPEN unmatched key whose lead's phone,
--   plate, licence, name or date changed (its candidates may differ now);
-- * canon_internal.cabinet_lead_state_pending lists the row, and every row sharing its old or new
--   key (their key_rows change), when it is new, gone, re-keyed or re-dated.
-- Callers: canon.key_changed_leads (every changed row of a run), ops.explain_lead (a
-- lead's rows before explaining it). Returns the number of lead_keys rows written or removed.
CREATE OR REPLACE FUNCTION canon.refresh_lead_keys(p_lead_ids integer[] DEFAULT '{}')
RETURNS integer
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET jit = off
SET client_min_messages = warning
AS $$
DECLARE
  v_written integer;
  v_probe_by_key boolean;
  v_hashjoin text;
  v_mergejoin text;
BEGIN
  IF coalesce(cardinality(p_lead_ids), 0) = 0 THEN
    RETURN 0;
  END IF;
  -- A run's few rows against many: probed by key. The planner would rather hash both tables
  -- whole (it prices each probe as a random read): 50 ms at 200k leads for 2,000 rows.
  v_probe_by_key := cardinality(p_lead_ids) * 10
    < (SELECT c.reltuples FROM pg_class c WHERE c.oid = 'public.module_ct_cabinet_leads'::regclass);
  IF v_probe_by_key THEN
    v_hashjoin := current_setting('enable_hashjoin');
    v_mergejoin := current_setting('enable_mergejoin');
    PERFORM set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true);
  END IF;
  DROP TABLE IF EXISTS pg_temp.lead_keys_source;
  CREATE TEMP TABLE lead_keys_source ON COMMIT DROP AS
  SELECT x.lead_id, l.id IS NOT NULL AS present,
         canon.lead_source_pk(l.external_id, l.id) AS lead_source_pk,
         l.lead_created_at, l.park_phone, l.asset_plate_number, l.first_name, l.middle_name, l.last_name,
         canon.lead_source_hash(l.external_id, l.lead_created_at, l.park_phone, l.asset_plate_number,
                              l.first_name, l.middle_name, l.last_name) AS source_hash,
         k.lead_id IS NOT NULL AS was_keyed, k.source_hash AS old_hash, k.lead_source_pk AS old_key,
         k.lead_date AS old_date
  FROM (SELECT DISTINCT unnest(p_lead_ids) AS lead_id) x
  LEFT JOIN public.module_ct_cabinet_leads l ON l.id = x.lead_id
  LEFT JOIN canon_internal.lead_keys k ON k.lead_id = x.lead_id;
  IF v_probe_by_key THEN
    PERFORM set_config('enable_hashjoin', v_hashjoin, true), set_config('enable_mergejoin', v_mergejoin, true);
  END IF;

  WITH
  -- rows to key: present, a key of at most 200 characters, never keyed, or changed since
  -- (source values, or the key they give: canon.lead_source_pk may be redefined)
  to_key AS (
    SELECT s.*
    FROM pg_temp.lead_keys_source s
    WHERE s.present AND length(s.lead_source_pk) <= 200
      AND (NOT s.was_keyed OR s.old_hash <> s.source_hash OR s.old_key <> s.lead_source_pk)
  ),
  keyed AS (
    INSERT INTO canon_internal.lead_keys AS k (
      lead_id, lead_source_pk, lead_created_at, lead_date, phone_norm, plate_norm, license_norm,
      name_norm, lead_name, source_hash, indexed_at)
    SELECT s.lead_id, s.lead_source_pk, s.lead_created_at, canon.lead_date_of(s.lead_created_at),
           canon.normalize_phone(s.park_phone),
           canon.normalize_plate(s.asset_plate_number),
           NULL, -- the cabinet export carries no licence number: R2 cannot fire for leads
           canon.normalize_name(concat_ws(' ', s.first_name, s.middle_name, s.last_name)),
           nullif(left(regexp_replace(btrim(concat_ws(' ', s.first_name, s.middle_name, s.last_name)), '\s+', ' ', 'g'), 200), ''),
           s.source_hash, now()
    FROM to_key s
    ON CONFLICT (lead_id) DO UPDATE
      SET lead_source_pk = excluded.lead_source_pk, lead_created_at = excluded.lead_created_at,
          lead_date = excluded.lead_date, phone_norm = excluded.phone_norm, plate_norm = excluded.plate_norm,
          license_norm = excluded.license_norm, name_norm = excluded.name_norm, lead_name = excluded.lead_name,
          source_hash = excluded.source_hash, indexed_at = excluded.indexed_at
    RETURNING k.lead_id, k.lead_source_pk, k.lead_date, k.phone_norm, k.plate_norm, k.license_norm, k.name_norm
  ),
  -- rows that lose their key: gone, or a key too long to index
  unkeyed AS (
    DELETE FROM canon_internal.lead_keys k
    USING pg_temp.lead_keys_source s
    WHERE k.lead_id = s.lead_id AND (NOT s.present OR length(s.lead_source_pk) > 200)
    RETURNING k.lead_id, k.lead_source_pk
  ),
  oversized AS (
    INSERT INTO canon_internal.lead_rows_unkeyed AS u (lead_id, reason)
    SELECT s.lead_id, 'OVERSIZED_KEY' FROM pg_temp.lead_keys_source s
    WHERE s.present AND length(s.lead_source_pk) > 200
    ON CONFLICT (lead_id) DO NOTHING
  ),
  not_oversized AS (
    DELETE FROM canon_internal.lead_rows_unkeyed u
    USING pg_temp.lead_keys_source s
    WHERE u.lead_id = s.lead_id AND (NOT s.present OR length(s.lead_source_pk) <= 200)
  ),
  -- keyed for the first time, or under another key or date: its key may never have been evaluated
  match_pending AS (
    INSERT INTO canon_internal.lead_keys_pending AS q (lead_id, lead_date)
    SELECT w.lead_id, w.lead_date
    FROM keyed w
    JOIN pg_temp.lead_keys_source s ON s.lead_id = w.lead_id
    WHERE NOT s.was_keyed OR s.old_key <> w.lead_source_pk OR s.old_date IS DISTINCT FROM w.lead_date
    ON CONFLICT (lead_id) DO UPDATE SET lead_date = excluded.lead_date
  ),
  match_unpending AS (
    DELETE FROM canon_internal.lead_keys_pending q USING unkeyed u WHERE q.lead_id = u.lead_id
  ),
  -- an OPEN lead whose matching keys changed may match now
  retry AS (
    UPDATE canon.identity_unmatched u SET retry_due = true
    FROM keyed w
    JOIN pg_temp.lead_keys_source s ON s.lead_id = w.lead_id
    WHERE s.was_keyed
      AND u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = w.lead_source_pk
      AND u.status = 'OPEN' AND NOT u.retry_due
  ),
  -- the state of the row, and of every row of its old and new key, is to be evaluated again
  changed_keys AS (
    SELECT w.lead_id, w.lead_source_pk AS key, s.old_key
    FROM keyed w
    JOIN pg_temp.lead_keys_source s ON s.lead_id = w.lead_id
    WHERE NOT s.was_keyed OR s.old_key <> w.lead_source_pk OR s.old_date IS DISTINCT FROM w.lead_date
    UNION ALL
    SELECT u.lead_id, NULL, u.lead_source_pk FROM unkeyed u
  ),
  state_pending AS (
    INSERT INTO canon_internal.cabinet_lead_state_pending (lead_id)
    SELECT c.lead_id FROM changed_keys c
    UNION
    SELECT s.lead_id FROM pg_temp.lead_keys_source s
    WHERE NOT s.present OR length(s.lead_source_pk) > 200
    UNION
    SELECT unnest(canon.lead_ids_of_keys(ARRAY(
      SELECT c.key FROM changed_keys c WHERE c.key IS NOT NULL
      UNION SELECT c.old_key FROM changed_keys c WHERE c.old_key IS NOT NULL)))
    -- marked again: a refresh that read the earlier mark removes only that one
    ON CONFLICT (lead_id) DO UPDATE SET mark_seq = excluded.mark_seq, marked_at = excluded.marked_at
  )
  SELECT (SELECT count(*) FROM keyed) + (SELECT count(*) FROM unkeyed) INTO v_written;
  DROP TABLE pg_temp.lead_keys_source;
  RETURN v_written;
END
$$;
COMMENT ON FUNCTION canon.refresh_lead_keys(integer[]) IS
  'Keys the given lead rows (new or changed since keyed), unkeys rows gone or with an oversized key, and lists what depends on them (match pending, retry due, state pending). Returns lead_keys rows written or removed.';

-- snapshot of sql/canon/canon.refresh_lead_state.sql
-- canon.refresh_lead_state: re-evaluates the given lead rows from the live definition
-- (canon.v_cabinet_lead_status) into canon_internal.cabinet_lead_state, set-based: a row is
-- rewritten only when something in it changed (a rerun on unchanged data writes
-- nothing), and removed when its lead row is gone or has lost its lead_created_at.
-- Returns {evaluated, written, removed, trip_rows_read}. Callers: canon.generate_cabinet_claims
-- (the pipeline's step 7) and ops.refresh_cabinet_lead_state (people).
CREATE OR REPLACE FUNCTION canon.refresh_lead_state(p_run_id bigint, p_lead_ids integer[])
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET jit = off
-- its temp table is made "IF NOT EXISTS" / dropped "IF EXISTS": no NOTICE for that in psql
SET client_min_messages = warning
AS $$
DECLARE
  v_evaluated integer;
  v_written integer;
  v_removed integer;
  v_trip_rows bigint;
  v_gone integer[];
BEGIN
  IF coalesce(cardinality(p_lead_ids), 0) = 0 THEN
    RETURN jsonb_build_object('evaluated', 0, 'written', 0, 'removed', 0, 'trip_rows_read', 0);
  END IF;

  DROP TABLE IF EXISTS pg_temp.lead_state_fresh;
  CREATE TEMP TABLE lead_state_fresh ON COMMIT DROP AS
  SELECT v.*
  FROM canon.v_cabinet_lead_status v
  WHERE v.lead_id = ANY (p_lead_ids);
  GET DIAGNOSTICS v_evaluated = ROW_COUNT;
  SELECT coalesce(sum(f.trip_rows_in_window), 0) INTO v_trip_rows FROM pg_temp.lead_state_fresh f;

  INSERT INTO canon_internal.cabinet_lead_state AS s (
    lead_id, lead_source_pk, lead_date, person_key, driver_id, window_days, window_end,
    trips_in_window, trip_rows_in_window, currency,
    m1_trips_threshold, m1_amount, reached_m1, m5_trips_threshold, m5_amount, reached_m5,
    m25_trips_threshold, m25_amount, reached_m25, expected_amount,
    has_claim_m1, has_claim_m5, has_claim_m25, limbo_stage, key_rows, paid_claims, paid_amount, evaluated_at, evaluated_run_id)
  SELECT f.lead_id, f.lead_source_pk, f.lead_date, f.person_key, f.driver_id, f.window_days, f.window_end,
         f.trips_in_window, f.trip_rows_in_window, f.currency,
         f.m1_trips_threshold, f.m1_amount, f.reached_m1, f.m5_trips_threshold, f.m5_amount, f.reached_m5,
         f.m25_trips_threshold, f.m25_amount, f.reached_m25, f.expected_amount,
         f.has_claim_m1, f.has_claim_m5, f.has_claim_m25, f.limbo_stage, f.key_rows, f.paid_claims, f.paid_amount, now(), p_run_id
  FROM pg_temp.lead_state_fresh f
  ORDER BY f.lead_id
  ON CONFLICT (lead_id) DO UPDATE
    SET lead_source_pk = excluded.lead_source_pk, lead_date = excluded.lead_date,
        person_key = excluded.person_key, driver_id = excluded.driver_id,
        window_days = excluded.window_days, window_end = excluded.window_end,
        trips_in_window = excluded.trips_in_window, trip_rows_in_window = excluded.trip_rows_in_window,
        currency = excluded.currency,
        m1_trips_threshold = excluded.m1_trips_threshold, m1_amount = excluded.m1_amount, reached_m1 = excluded.reached_m1,
        m5_trips_threshold = excluded.m5_trips_threshold, m5_amount = excluded.m5_amount, reached_m5 = excluded.reached_m5,
        m25_trips_threshold = excluded.m25_trips_threshold, m25_amount = excluded.m25_amount, reached_m25 = excluded.reached_m25,
        expected_amount = excluded.expected_amount,
        has_claim_m1 = excluded.has_claim_m1, has_claim_m5 = excluded.has_claim_m5, has_claim_m25 = excluded.has_claim_m25,
        limbo_stage = excluded.limbo_stage, key_rows = excluded.key_rows,
        paid_claims = excluded.paid_claims, paid_amount = excluded.paid_amount, evaluated_at = excluded.evaluated_at, evaluated_run_id = excluded.evaluated_run_id
    WHERE (s.lead_source_pk, s.lead_date, s.person_key, s.driver_id, s.window_days, s.window_end,
           s.trips_in_window, s.trip_rows_in_window, s.currency,
           s.m1_trips_threshold, s.m1_amount, s.reached_m1, s.m5_trips_threshold, s.m5_amount, s.reached_m5,
           s.m25_trips_threshold, s.m25_amount, s.reached_m25, s.expected_amount,
           s.has_claim_m1, s.has_claim_m5, s.has_claim_m25, s.limbo_stage, s.key_rows, s.paid_claims, s.paid_amount)
          IS DISTINCT FROM
          (excluded.lead_source_pk, excluded.lead_date, excluded.person_key, excluded.driver_id, excluded.window_days, excluded.window_end,
           excluded.trips_in_window, excluded.trip_rows_in_window, excluded.currency,
           excluded.m1_trips_threshold, excluded.m1_amount, excluded.reached_m1, excluded.m5_trips_threshold, excluded.m5_amount, excluded.reached_m5,
           excluded.m25_trips_threshold, excluded.m25_amount, excluded.reached_m25, excluded.expected_amount,
           excluded.has_claim_m1, excluded.has_claim_m5, excluded.has_claim_m25, excluded.limbo_stage, excluded.key_rows,
           excluded.paid_claims, excluded.paid_amount);
  GET DIAGNOSTICS v_written = ROW_COUNT;

  -- The rows evaluated and gone, found first (few or none) and removed by key: one
  -- statement with the anti-join was planned as a pass over every stored row.
  v_gone := ARRAY(SELECT x.lead_id FROM unnest(p_lead_ids) x (lead_id)
                  EXCEPT SELECT f.lead_id FROM pg_temp.lead_state_fresh f);
  v_removed := 0;
  IF cardinality(v_gone) > 0 THEN
    DELETE FROM canon_internal.cabinet_lead_state s WHERE s.lead_id = ANY (v_gone);
    GET DIAGNOSTICS v_removed = ROW_COUNT;
  END IF;

  DROP TABLE pg_temp.lead_state_fresh;
  -- What the limbo snapshot compares with to know whether it must recount.
  IF v_written + v_removed > 0 THEN
    UPDATE canon_internal.cabinet_lead_state_meta SET changed_at = now();
  END IF;
  RETURN jsonb_build_object('evaluated', v_evaluated, 'written', v_written, 'removed', v_removed,
                            'trip_rows_read', v_trip_rows);
END
$$;
COMMENT ON FUNCTION canon.refresh_lead_state(bigint, integer[]) IS
  'Re-evaluates the given lead rows into canon_internal.cabinet_lead_state from canon.v_cabinet_lead_status (rows rewritten only when changed, removed when the lead is gone). Returns {evaluated, written, removed, trip_rows_read}.';

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

-- snapshot of sql/canon/canon.require_lead_key.sql
-- canon.require_lead_key: the first check of every operator tool that takes a lead key
-- (ops.unlink_lead, ops.resolve_lead, ops.ignore_lead): a NULL or blank key is refused
-- with 22023 and a message naming the value, before anything is locked or read.
CREATE OR REPLACE FUNCTION canon.require_lead_key(p_lead_source_pk text)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF p_lead_source_pk IS NULL OR btrim(p_lead_source_pk) = '' THEN
    RAISE EXCEPTION 'invalid lead_source_pk %: expected a lead key', coalesce(quote_literal(p_lead_source_pk), 'NULL')
      USING ERRCODE = '22023';
  END IF;
END
$$;
COMMENT ON FUNCTION canon.require_lead_key(text) IS
  'Operator tools'' first check: refuses a NULL or blank lead key (22023, naming the value).';

-- snapshot of sql/canon/canon.require_note.sql
-- canon.require_note: every operator tool and repair that changes identities or claims
-- records why (ops.unlink_lead, ops.resolve_lead, ops.ignore_lead, ops.repair_lead_keys):
-- a NULL or blank note is refused with 22023, 'a note is required: <p_ask>', p_ask saying
-- what the note should explain ('say why lead ''X'' is ignored').
CREATE OR REPLACE FUNCTION canon.require_note(p_note text, p_ask text)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF p_note IS NULL OR btrim(p_note) = '' THEN
    RAISE EXCEPTION 'a note is required: %', p_ask USING ERRCODE = '22023';
  END IF;
END
$$;
COMMENT ON FUNCTION canon.require_note(text, text) IS
  'Operator tools'' note check: refuses a NULL or blank note (22023, ''a note is required: '' followed by p_ask, what the note should say).';

-- snapshot of sql/canon/canon.restore_driver_index_indexes.sql
-- canon.restore_driver_index_indexes: creates every secondary index of
-- canon_internal.driver_index (canon.driver_index_secondary_indexes) that does not exist,
-- by one sort of the table each. Called right after the first build's rows, and at the start
-- of every build (a no-op when all exist: an index dropped by hand comes back by the next
-- run). Returns the number created. SECURITY DEFINER: creating an index needs the table's
-- owner; it takes no argument, so it can create only these.
CREATE OR REPLACE FUNCTION canon.restore_driver_index_indexes()
RETURNS integer
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- the plate keys of 1M drivers (7M) sort in memory
SET maintenance_work_mem = '256MB'
AS $$
DECLARE
  r record;
  n integer := 0;
BEGIN
  FOR r IN
    SELECT s.definition FROM canon.driver_index_secondary_indexes() s
    WHERE to_regclass(format('canon_internal.%I', s.index_name)) IS NULL
  LOOP
    EXECUTE r.definition;
    n := n + 1;
  END LOOP;
  RETURN n;
END
$$;
COMMENT ON FUNCTION canon.restore_driver_index_indexes() IS
  'Creates the secondary indexes of canon_internal.driver_index that do not exist (after the first build, or dropped by hand); returns how many. SECURITY DEFINER (the table owner''s right).';

-- snapshot of sql/canon/canon.retry_due_drift.sql
-- canon.retry_due_drift: OPEN unmatched leads a driver indexed after their last attempt
-- makes due, when the retry check has run since that driver was indexed, yet not due for a
-- retry. A driver makes a lead due as canon.mark_retries_due decides: a shared key (phone,
-- plate, licence), or a pair of the probabilistic tier's blocking (canon.fs_blocked_pairs:
-- a plate one edit away with a shared name token, a rare name key) for a lead the tier sees
-- (NO_CANDIDATES, WEAK_MATCH_ONLY, PROBABLE_MATCH). Rarity is judged now: a token that
-- became common since the check is no longer asked for. Read by ops.check_caches, repaired
-- by ops.repair_caches.
CREATE OR REPLACE FUNCTION canon.retry_due_drift()
RETURNS TABLE (lead_source_pk text, example text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH open_leads AS MATERIALIZED (
    SELECT u.source_pk, u.last_attempt_at, u.reason_code
    FROM canon.identity_unmatched u
    WHERE u.status = 'OPEN' AND NOT u.retry_due
  ),
  by_key AS (
    SELECT o.source_pk, o.last_attempt_at, i.driver_id, i.indexed_at
    FROM open_leads o
    JOIN canon_internal.lead_keys k ON k.lead_source_pk = o.source_pk
    JOIN canon_internal.driver_index i
      ON (i.phone_norm = k.phone_norm OR i.plate_norm = k.plate_norm OR i.license_norm = k.license_norm)
  ),
  by_tier AS (
    SELECT o.source_pk, o.last_attempt_at, i.driver_id, i.indexed_at
    -- the row the tier evaluates for a key: its lowest id
    FROM canon.fs_blocked_pairs(ARRAY(
           SELECT min(k.lead_id) FROM open_leads o JOIN canon_internal.lead_keys k ON k.lead_source_pk = o.source_pk
           WHERE o.reason_code IN ('NO_CANDIDATES', 'WEAK_MATCH_ONLY', 'PROBABLE_MATCH')
           GROUP BY o.source_pk)) p
    JOIN canon_internal.lead_keys k ON k.lead_id = p.lead_id
    JOIN open_leads o ON o.source_pk = k.lead_source_pk
    JOIN canon_internal.driver_index i ON i.driver_id = p.driver_id
  )
  SELECT x.source_pk,
         format('lead key %s: driver %s indexed at %s, last attempt %s', left(x.source_pk, 40), min(x.driver_id), min(x.indexed_at), x.last_attempt_at)
  FROM (SELECT * FROM by_key UNION ALL SELECT * FROM by_tier) x
  CROSS JOIN canon_internal.driver_index_state st
  WHERE x.indexed_at > x.last_attempt_at
    AND x.indexed_at <= st.retry_checked_at
  GROUP BY x.source_pk, x.last_attempt_at
$$;
COMMENT ON FUNCTION canon.retry_due_drift() IS
  'OPEN unmatched leads that a driver change since their last attempt makes due (a shared key, or a pair of the probabilistic tier''s blocking), not marked retry_due.';

-- snapshot of sql/canon/canon.schedule_lead_state.sql
-- canon.schedule_lead_state: step 7a. The lead rows whose stored state must be evaluated
-- again, into pg_temp.lead_state_todo (lead_id, the first reason that put it there)
-- (docs/change-detection.md):
-- * lead rows marked by the key refresh and keys marked by the link and claim triggers
--   (canon.take_lead_state_marks: the marks taken are removed after, and only those);
-- * every lead (any scope) of a driver with trip rows written since the last look, and,
--   when rows may have gone, every lead that had trip rows (canon.trip_drivers_changed);
-- * on a sweep (p_sweep): every lead of the scope, and lead rows that appeared, vanished
--   or changed key or date anywhere; after a change of the claim rules, every lead;
-- * with p_only_limbo, the scope's NO_DRIVER and TRIPS_NO_CLAIM leads.
-- Called by canon.generate_cabinet_claims. Returns {trips, reasons}.
CREATE OR REPLACE FUNCTION canon.schedule_lead_state(p_run_id bigint, p_scope_from date, p_only_limbo boolean, p_sweep boolean)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET client_min_messages = warning
SET jit = off
AS $$
DECLARE
  v_trips jsonb;
  v_rules_changed boolean := (SELECT m.full_refresh_needed FROM canon_internal.cabinet_lead_state_meta m);
BEGIN
  v_trips := canon.trip_drivers_changed(p_run_id);
  -- The lead rows to re-evaluate, with the first reason that put them there.
  DROP TABLE IF EXISTS pg_temp.lead_state_todo;
  CREATE TEMP TABLE lead_state_todo (lead_id integer PRIMARY KEY, reason text NOT NULL) ON COMMIT DROP;

  -- Lead rows that changed, keys whose links or claims changed (the marks taken now are
  -- removed at the end, and only those).
  INSERT INTO pg_temp.lead_state_todo
  SELECT x.lead_id, 'lead_or_links_or_claims_changed'
  FROM unnest(canon.take_lead_state_marks()) x (lead_id)
  ON CONFLICT DO NOTHING;

  INSERT INTO pg_temp.lead_state_todo
  SELECT s.lead_id, 'trips_written'
  FROM pg_temp.trip_drivers_changed d
  JOIN canon_internal.cabinet_lead_state s ON s.driver_id = d.driver_id
  ON CONFLICT DO NOTHING;

  -- Rows may have gone (deleted, or moved away by an update): only a lead that had trip
  -- rows can lose some (any scope); one without can only gain, and new rows are found.
  -- (the first look has nothing to compare with: every lead with a driver)
  IF (v_trips->>'rows_may_be_gone')::boolean THEN
    INSERT INTO pg_temp.lead_state_todo
    SELECT s.lead_id, 'trip_rows_gone'
    FROM canon_internal.cabinet_lead_state s
    WHERE s.trip_rows_in_window > 0
       OR (v_trips->>'whole_read_reason' = 'first_read' AND s.driver_id IS NOT NULL)
    ON CONFLICT DO NOTHING;
  END IF;

  IF p_sweep THEN
    INSERT INTO pg_temp.lead_state_todo
    SELECT l.id, 'sweep_scope'
    FROM public.module_ct_cabinet_leads l
    WHERE l.lead_created_at >= p_scope_from::timestamp
    ON CONFLICT DO NOTHING;
    -- Lead rows evaluated but gone, undated, re-keyed or re-dated; dated rows never evaluated.
    INSERT INTO pg_temp.lead_state_todo
    SELECT coalesce(s.lead_id, l.id), 'sweep_membership'
    FROM canon_internal.cabinet_lead_state s
    FULL JOIN (SELECT l.id, canon.lead_source_pk(l.external_id, l.id) AS lead_source_pk, canon.lead_date_of(l.lead_created_at) AS lead_date
               FROM public.module_ct_cabinet_leads l
               WHERE isfinite(l.lead_created_at)) l
      ON l.id = s.lead_id
    WHERE s.lead_id IS NULL OR l.id IS NULL
       OR s.lead_source_pk <> l.lead_source_pk OR s.lead_date <> l.lead_date
    ON CONFLICT DO NOTHING;
    IF v_rules_changed THEN
      INSERT INTO pg_temp.lead_state_todo
      SELECT s.lead_id, 'claim_rules_changed' FROM canon_internal.cabinet_lead_state s
      ON CONFLICT DO NOTHING;
    END IF;
  END IF;

  IF p_only_limbo THEN
    INSERT INTO pg_temp.lead_state_todo
    SELECT s.lead_id, 'only_limbo'
    FROM canon_internal.cabinet_lead_state s
    WHERE s.limbo_stage IN ('NO_DRIVER', 'TRIPS_NO_CLAIM') AND s.lead_date >= p_scope_from
    ON CONFLICT DO NOTHING;
  END IF;

  RETURN jsonb_build_object(
    'trips', v_trips,
    'reasons', (SELECT coalesce(jsonb_object_agg(r.reason, r.n), '{}'::jsonb)
                FROM (SELECT t.reason, count(*) AS n FROM pg_temp.lead_state_todo t GROUP BY t.reason) r));
END
$$;
COMMENT ON FUNCTION canon.schedule_lead_state(bigint, date, boolean, boolean) IS
  'Step 7a: the lead rows whose stored state is to be evaluated again, with why (pg_temp.lead_state_todo). Returns {trips, reasons}.';

-- snapshot of sql/canon/canon.select_lead_batch.sql
-- canon.select_lead_batch: pipeline step 5b. The batch of the run in pg_temp.cabinet_batch:
-- at most p_limit lead keys with lead_date >= p_scope_from that need matching, one row per
-- key (its first row stands for the key's duplicates), at the cost of the batch, not of the
-- scope:
-- * never evaluated first: among the rows listed in canon_internal.lead_keys_pending (new or
--   re-keyed rows, keys whose link or unmatched row was removed); a listed key found
--   evaluated (linked, or unmatched OPEN / IGNORED) leaves the list;
-- * then OPEN unmatched leads due for a retry (canon.mark_retries_due), the least recently
--   attempted first;
-- * with p_only_limbo, linked leads whose person has no driver (NO_DRIVER) too.
-- Returns {leads_selected, batch {...}, pending_cleared, retries_skipped_no_index_change}.
CREATE OR REPLACE FUNCTION canon.select_lead_batch(p_scope_from date, p_limit integer, p_only_limbo boolean)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET client_min_messages = warning
SET jit = off
AS $$
DECLARE
  v_window bigint;
  v_window_rows bigint;
  v_pending_cleared integer;
  v_retries_skipped integer;
  v_selected integer;
BEGIN
  -- The pending keys are read from the lowest pending lead ids of the scope, a window at
  -- a time (twice the limit, then four times wider while the keys it holds give fewer
  -- never-evaluated leads than the limit and rows remain): a backfill with a million
  -- pending rows reads what its batch needs, not every pending row each run (3 s a run
  -- at 1M). A key's first row is its lowest pending id, so it is in the window whenever
  -- the key is.
  v_window := greatest(2 * p_limit, 1000);
  LOOP
    DROP TABLE IF EXISTS pg_temp.cabinet_pending_rows;
    CREATE TEMP TABLE cabinet_pending_rows ON COMMIT DROP AS
    SELECT q.lead_id
    FROM canon_internal.lead_keys_pending q
    WHERE q.lead_date >= p_scope_from
    ORDER BY q.lead_id
    LIMIT v_window;
    GET DIAGNOSTICS v_window_rows = ROW_COUNT;
    DROP TABLE IF EXISTS pg_temp.cabinet_pending;
    CREATE TEMP TABLE cabinet_pending ON COMMIT DROP AS
    -- Every lookup is a probe per row (LATERAL ... LIMIT 1, which the planner cannot
    -- turn back into a join): as joins, a window of 20,000 rows was hashed against the
    -- whole of canon_internal.lead_keys, identity_links and identity_unmatched, whose size grows
    -- with the backfill (one lead key row per lead id, one link and one unmatched row
    -- per key: LIMIT 1 changes nothing else).
    SELECT p.lead_source_pk, p.lead_id, p.rows_with_key,
           l.source_pk IS NOT NULL AS linked, u.status, u.last_attempt_at
    FROM (SELECT k.lead_source_pk, min(k.lead_id) AS lead_id, count(*) AS rows_with_key
          FROM pg_temp.cabinet_pending_rows q
          CROSS JOIN LATERAL (
            SELECT k.lead_source_pk, k.lead_id
            FROM canon_internal.lead_keys k
            WHERE k.lead_id = q.lead_id AND k.lead_date >= p_scope_from
            LIMIT 1
          ) k
          GROUP BY k.lead_source_pk) p
    LEFT JOIN LATERAL (
      SELECT k.source_pk
      FROM canon.identity_links k
      WHERE k.source_table = 'module_ct_cabinet_leads' AND k.source_pk = p.lead_source_pk
      LIMIT 1
    ) l ON true
    LEFT JOIN LATERAL (
      SELECT u.status, u.last_attempt_at
      FROM canon.identity_unmatched u
      WHERE u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = p.lead_source_pk
      LIMIT 1
    ) u ON true;
    EXIT WHEN v_window_rows < v_window
           OR (SELECT count(*) FROM pg_temp.cabinet_pending p
               WHERE NOT p.linked AND (p.status IS NULL OR p.status = 'RESOLVED')) >= p_limit;
    v_window := v_window * 4;
  END LOOP;
  ANALYZE pg_temp.cabinet_pending;
  DELETE FROM canon_internal.lead_keys_pending q
  USING canon_internal.lead_keys k, pg_temp.cabinet_pending p
  WHERE (p.linked OR p.status IN ('OPEN', 'IGNORED'))
    AND k.lead_source_pk = p.lead_source_pk AND q.lead_id = k.lead_id;
  GET DIAGNOSTICS v_pending_cleared = ROW_COUNT;
  -- OPEN leads (of any scope) not worth retrying: not due. Counted as OPEN minus due (an
  -- index-only scan of identity_unmatched_open_idx and the small due index) rather than
  -- by reading every OPEN row. (identity_unmatched holds cabinet leads only: its CHECK.)
  SELECT (SELECT count(*) FROM canon.identity_unmatched u WHERE u.status = 'OPEN')
         - (SELECT count(*) FROM canon.identity_unmatched u WHERE u.status = 'OPEN' AND u.retry_due)
  INTO v_retries_skipped;

  DROP TABLE IF EXISTS pg_temp.cabinet_batch;
  CREATE TEMP TABLE cabinet_batch ON COMMIT DROP AS
  WITH first_candidates AS MATERIALIZED (
    -- never evaluated (or unlinked with its unmatched row left RESOLVED)
    SELECT p.lead_id, p.lead_source_pk, p.rows_with_key, 'NO_IDENTITY' AS batch_kind, NULL::uuid AS person_key,
           p.status IS NOT NULL AS evaluated_before, p.last_attempt_at
    FROM pg_temp.cabinet_pending p
    WHERE NOT p.linked AND (p.status IS NULL OR p.status = 'RESOLVED')
    UNION ALL
    SELECT m.lead_id, k.source_pk, m.rows_with_key, 'NO_DRIVER', k.person_key,
           u.source_pk IS NOT NULL, u.last_attempt_at
    FROM canon.identity_links k
    -- (the date filter inside the aggregate: the probe uses the key index alone)
    CROSS JOIN LATERAL (
      SELECT min(s.lead_id) FILTER (WHERE s.lead_date >= p_scope_from) AS lead_id,
             count(*) FILTER (WHERE s.lead_date >= p_scope_from) AS rows_with_key
      FROM canon_internal.lead_keys s
      WHERE s.lead_source_pk = k.source_pk
    ) m
    LEFT JOIN canon.identity_unmatched u
      ON u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = k.source_pk
    WHERE p_only_limbo
      AND k.source_table = 'module_ct_cabinet_leads'
      AND m.lead_id IS NOT NULL
      AND coalesce(u.status, 'OPEN') <> 'IGNORED'
      AND NOT EXISTS (SELECT 1 FROM canon.identity_links dl
                      WHERE dl.source_table = 'drivers' AND dl.person_key = k.person_key)
  ),
  retries AS (
    SELECT m.lead_id, u.source_pk AS lead_source_pk, m.rows_with_key,
           'NO_IDENTITY' AS batch_kind, NULL::uuid AS person_key,
           true AS evaluated_before, u.last_attempt_at
    FROM canon.identity_unmatched u
    CROSS JOIN LATERAL (
      SELECT min(s.lead_id) FILTER (WHERE s.lead_date >= p_scope_from) AS lead_id,
             count(*) FILTER (WHERE s.lead_date >= p_scope_from) AS rows_with_key
      FROM canon_internal.lead_keys s
      WHERE s.lead_source_pk = u.source_pk
    ) m
    WHERE u.status = 'OPEN' AND u.retry_due
      AND u.source_table = 'module_ct_cabinet_leads'
      AND m.lead_id IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM canon.identity_links k
                      WHERE k.source_table = 'module_ct_cabinet_leads' AND k.source_pk = u.source_pk)
    ORDER BY u.last_attempt_at, m.lead_id
    -- none when never-evaluated leads fill the batch
    LIMIT greatest(p_limit - (SELECT count(*) FROM first_candidates f WHERE NOT f.evaluated_before), 0)
  )
  SELECT c.*
  FROM (SELECT * FROM first_candidates UNION ALL SELECT * FROM retries) c
  ORDER BY c.evaluated_before, c.last_attempt_at NULLS FIRST, c.lead_id
  LIMIT p_limit;
  GET DIAGNOSTICS v_selected = ROW_COUNT;
  RETURN jsonb_build_object(
    'leads_selected', v_selected,
    'batch', jsonb_build_object(
      'no_identity', (SELECT count(*) FROM pg_temp.cabinet_batch WHERE batch_kind = 'NO_IDENTITY'),
      'no_driver', (SELECT count(*) FROM pg_temp.cabinet_batch WHERE batch_kind = 'NO_DRIVER'),
      'never_evaluated', (SELECT count(*) FROM pg_temp.cabinet_batch WHERE NOT evaluated_before),
      'retried', (SELECT count(*) FROM pg_temp.cabinet_batch WHERE evaluated_before),
      'duplicate_key_rows', (SELECT coalesce(sum(rows_with_key - 1), 0) FROM pg_temp.cabinet_batch)),
    'pending_cleared', v_pending_cleared,
    'retries_skipped_no_index_change', v_retries_skipped);
END
$$;
COMMENT ON FUNCTION canon.select_lead_batch(date, integer, boolean) IS
  'Pipeline step 5b: the batch (pg_temp.cabinet_batch): never-evaluated lead keys of the scope first, then OPEN leads due for a retry, at most p_limit. Returns step stats.';

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

-- snapshot of sql/canon/canon.setting.sql
-- canon.setting: the value of one product setting (canon.settings), for SQL that
-- must agree with the job (target park, business time zone). Raises on unknown keys.
CREATE OR REPLACE FUNCTION canon.setting(p_key text)
RETURNS text
LANGUAGE plpgsql
STABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_value text;
BEGIN
  SELECT s.value INTO v_value FROM canon.settings s WHERE s.key = p_key;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'unknown setting "%": known settings are listed in canon.settings', p_key
      USING ERRCODE = '22023';
  END IF;
  RETURN v_value;
END
$$;
COMMENT ON FUNCTION canon.setting(text) IS 'Value of a product setting from canon.settings; raises on an unknown key.';

-- snapshot of sql/canon/canon.show_blanks.sql
-- canon.show_blanks: a text as a person can read it on a screen, where lead keys that
-- differ only by blanks look alike: control characters (C0, DEL, C1), the blanks of
-- canon.blank_characters other than a space, and a space at either end are written as
-- \uXXXX, a backslash as \\ ('NB-1<TAB>' is shown NB-1\u0009). For examples and listings
-- (ops.check_invariants, ops.v_cabinet_claims_duplicated), never for keys.
CREATE OR REPLACE FUNCTION canon.show_blanks(p_text text)
RETURNS text
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT CASE WHEN p_text = '' THEN '' ELSE (
    SELECT string_agg(
             CASE WHEN x.c = E'\\' THEN E'\\\\'
                  WHEN x.c = ' ' AND x.n > 1 AND x.n < x.len THEN ' '
                  WHEN ascii(x.c) < 32 OR ascii(x.c) BETWEEN 127 AND 159 OR strpos(canon.blank_characters(), x.c) > 0
                    THEN E'\\u' || lpad(upper(to_hex(ascii(x.c))), 4, '0')
                  ELSE x.c
             END, '' ORDER BY x.n)
    FROM (SELECT t.c, t.n, count(*) OVER () AS len
          FROM regexp_split_to_table(p_text, '') WITH ORDINALITY t (c, n)) x) END
$$;
COMMENT ON FUNCTION canon.show_blanks(text) IS
  'A text with control characters, blanks other than an inner space, and spaces at its ends written as \uXXXX (backslash as \\): lead keys that differ only by blanks, told apart on a screen.';

-- snapshot of sql/canon/canon.source_contract_violations.sql
-- canon.source_contract_violations: every missing table, missing column or column of
-- an incompatible type among the upstream columns listed in canon.source_contract.
CREATE OR REPLACE FUNCTION canon.source_contract_violations()
RETURNS TABLE (table_name text, column_name text, problem text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH expected AS (
    SELECT c.table_name, c.column_name, c.type_family
    FROM canon.source_contract c
  ),
  actual AS (
    SELECT col.table_name::text AS table_name,
           col.column_name::text AS column_name,
           col.data_type::text AS data_type
    FROM information_schema.columns col
    WHERE col.table_schema = 'public'
      AND col.table_name IN (SELECT e.table_name FROM expected e)
  ),
  present_tables AS (
    SELECT DISTINCT e.table_name
    FROM expected e
    WHERE to_regclass(format('public.%I', e.table_name)) IS NOT NULL
  )
  SELECT t.table_name, NULL::text, 'table public.' || t.table_name || ' is missing'
  FROM (SELECT DISTINCT e.table_name FROM expected e) t
  WHERE t.table_name NOT IN (SELECT p.table_name FROM present_tables p)
  UNION ALL
  SELECT e.table_name, e.column_name,
         CASE
           WHEN a.column_name IS NULL THEN
             format('column public.%s.%s is missing', e.table_name, e.column_name)
           ELSE
             format('column public.%s.%s has type %s, expected %s', e.table_name, e.column_name, a.data_type, e.type_family)
         END
  FROM expected e
  JOIN present_tables p ON p.table_name = e.table_name
  LEFT JOIN actual a ON a.table_name = e.table_name AND a.column_name = e.column_name
  WHERE a.column_name IS NULL
     OR NOT (
       (e.type_family = 'text' AND a.data_type IN ('character varying', 'text', 'character'))
       OR (e.type_family = 'integer' AND a.data_type IN ('smallint', 'integer', 'bigint'))
       OR (e.type_family = 'timestamp' AND a.data_type IN ('timestamp without time zone'))
       OR (e.type_family = 'date' AND a.data_type IN ('date'))
       OR (e.type_family = 'boolean' AND a.data_type IN ('boolean'))
       OR (e.type_family = 'numeric' AND a.data_type IN ('smallint', 'integer', 'bigint', 'numeric', 'real', 'double precision'))
     )
  ORDER BY 1, 2
$$;
COMMENT ON FUNCTION canon.source_contract_violations() IS 'Rows describing every violation of the upstream source contract; empty when the contract holds.';

-- snapshot of sql/canon/canon.step_done.sql
-- canon.step_done: the log entry of a pipeline step that has just finished, as a one-element
-- jsonb array to append to the run's stats.steps: [{"step", "status": "done", "ms"}], ms
-- measured from p_started. The one place a step's timing is written.
CREATE OR REPLACE FUNCTION canon.step_done(p_step text, p_started timestamptz)
RETURNS jsonb
LANGUAGE sql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT jsonb_build_array(jsonb_build_object(
    'step', p_step, 'status', 'done',
    'ms', round((extract(epoch FROM clock_timestamp() - p_started) * 1000)::numeric, 1)))
$$;
COMMENT ON FUNCTION canon.step_done(text, timestamptz) IS
  'Log entry of a finished pipeline step for stats.steps: [{step, status done, ms since p_started}].';

-- snapshot of sql/canon/canon.summary_daily_writes.sql
-- canon.summary_daily_writes: what the statistics system says of public.summary_daily,
-- without a trigger on the upstream table: its file node (changed by TRUNCATE or a
-- rewrite), the cumulative counts of rows inserted, updated and deleted, its size in
-- pages, and the epoch of the counts (when they were last reset: pg_stat_reset, a crash).
-- canon.trip_drivers_changed compares them with what it last acted on. A write's counts
-- reach shared memory after its commit (seconds later, at once when its session ends);
-- inserted/updated/deleted are NULL when track_counts is off.
CREATE OR REPLACE FUNCTION canon.summary_daily_writes()
RETURNS canon.summary_daily_write_counts
LANGUAGE sql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT ROW(c.relfilenode,
             CASE WHEN current_setting('track_counts')::boolean THEN pg_stat_get_tuples_inserted(c.oid) END,
             CASE WHEN current_setting('track_counts')::boolean THEN pg_stat_get_tuples_updated(c.oid) END,
             CASE WHEN current_setting('track_counts')::boolean THEN pg_stat_get_tuples_deleted(c.oid) END,
             pg_relation_size(c.oid) / current_setting('block_size')::bigint,
             concat_ws(' ', pg_stat_get_bgwriter_stat_reset_time(),
                       pg_stat_get_db_stat_reset_time((SELECT d.oid FROM pg_database d WHERE d.datname = current_database()))))
         ::canon.summary_daily_write_counts
  FROM pg_class c
  WHERE c.oid = 'public.summary_daily'::regclass
$$;
COMMENT ON FUNCTION canon.summary_daily_writes() IS
  'File node, cumulative inserted / updated / deleted row counts (NULL when track_counts is off), size in pages and statistics epoch of public.summary_daily: how step 7 notices trips written anywhere in the table.';

-- snapshot of sql/canon/canon.suspend_driver_index_indexes.sql
-- canon.suspend_driver_index_indexes: for the first build of the driver index only. When
-- canon_internal.driver_index is empty and no other session holds a lock on it, drops its
-- secondary indexes (canon.driver_index_secondary_indexes) in the caller's transaction, so
-- that the build inserts its rows into the bare table; canon.restore_driver_index_indexes
-- creates them again, in the same transaction (a failure rolls the drops back). Returns
-- false, dropping nothing, when the table has rows or is in use: the build then inserts as
-- every later run does. SECURITY DEFINER: dropping an index needs the table's owner, and
-- the job role changes no schema; it takes no argument, so it can do nothing else.
CREATE OR REPLACE FUNCTION canon.suspend_driver_index_indexes()
RETURNS boolean
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  r record;
BEGIN
  BEGIN
    -- readers of the index would wait for the whole build: only when none is there
    LOCK TABLE canon_internal.driver_index IN ACCESS EXCLUSIVE MODE NOWAIT;
  EXCEPTION WHEN lock_not_available THEN
    RETURN false;
  END;
  IF EXISTS (SELECT 1 FROM canon_internal.driver_index) THEN
    RETURN false;
  END IF;
  FOR r IN SELECT s.index_name FROM canon.driver_index_secondary_indexes() s LOOP
    EXECUTE format('DROP INDEX IF EXISTS canon_internal.%I', r.index_name);
  END LOOP;
  RETURN true;
END
$$;
COMMENT ON FUNCTION canon.suspend_driver_index_indexes() IS
  'First build only: drops the secondary indexes of an empty, unused canon_internal.driver_index in the caller''s transaction (restored by canon.restore_driver_index_indexes); false when it did nothing. SECURITY DEFINER (the table owner''s right).';

-- snapshot of sql/canon/canon.sync_driver_name_roles.sql
-- canon.sync_driver_name_roles: statement-level trigger function on canon_internal.driver_index
-- (INSERT, UPDATE, DELETE with transition tables new_rows / old_rows; TRUNCATE). Keeps
-- canon_internal.driver_name_roles one row per indexed driver, written in the same statement as the
-- index row: the tokens (canon.name_field_tokens) of the driver's given-name fields
-- (first and middle name) and of its last-name field, from the public.drivers row the
-- index was built from (its hash is the row's source_hash; the newest row when none has
-- it, e.g. changed since: the next run re-indexes it): the same choice as
-- canon.driver_name_roles_live, also between two rows of one driver_id and one timestamp.
-- Whatever writes the index (the run's incremental or full refresh, a repair, a test),
-- the roles follow it.
CREATE OR REPLACE FUNCTION canon.sync_driver_name_roles()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    TRUNCATE canon_internal.driver_name_roles;
    RETURN NULL;
  END IF;
  IF TG_OP = 'DELETE' THEN
    DELETE FROM canon_internal.driver_name_roles r USING old_rows o WHERE r.driver_id = o.driver_id;
    RETURN NULL;
  END IF;
  IF TG_OP = 'UPDATE' THEN
    -- (a driver_id changed in place: the old id is no longer indexed)
    DELETE FROM canon_internal.driver_name_roles r
    USING old_rows o
    WHERE r.driver_id = o.driver_id
      AND NOT EXISTS (SELECT 1 FROM new_rows n WHERE n.driver_id = o.driver_id);
  END IF;
  -- Set-based: one join of the written rows with their source rows, the planner's choice
  -- of probes (a run's few drivers) or one hash join (a full build).
  INSERT INTO canon_internal.driver_name_roles AS r (driver_id, given_names, surnames, indexed_at)
  SELECT s.driver_id,
         canon.name_field_tokens(concat_ws(' ', s.first_name, s.middle_name)),
         canon.name_field_tokens(s.last_name),
         s.indexed_at
  FROM (
    SELECT DISTINCT ON (n.driver_id) n.driver_id, n.indexed_at, d.first_name, d.middle_name, d.last_name
    FROM new_rows n
    LEFT JOIN public.drivers d ON d.driver_id = n.driver_id
    ORDER BY n.driver_id,
             -- the same hash as canon.refresh_driver_index (driver_index.source_hash)
             canon.driver_source_hash(d.park_id, d.phone, d.license_normalized_number, d.license_number,
                                d.car_normalized_number, d.car_number, d.full_name, d.first_name,
                                d.middle_name, d.last_name, d.hire_date) = n.source_hash DESC,
             coalesce(d.updated_at, d.created_at) DESC NULLS LAST
  ) s
  ORDER BY s.driver_id
  ON CONFLICT (driver_id) DO UPDATE
    SET given_names = excluded.given_names, surnames = excluded.surnames, indexed_at = excluded.indexed_at;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION canon.sync_driver_name_roles() IS
  'Statement trigger on canon_internal.driver_index: keeps canon_internal.driver_name_roles (given-name and last-name tokens of each indexed driver''s source row) equal to the index, row for row, in the same statement.';

-- snapshot of sql/canon/canon.take_job_lock.sql
-- canon.take_job_lock: takes the job lock (canon.job_lock) for this transaction, waiting
-- at most lock_timeout: what the operator tools (ops.resolve_lead, ops.ignore_lead,
-- ops.unlink_lead, through canon.begin_lead_change) and the repairs do, so that they never
-- run inside a pipeline run. A wait that times out raises 55P03 with a sentence saying
-- what to do.
CREATE OR REPLACE FUNCTION canon.take_job_lock()
RETURNS void
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(k.classid, k.objid) FROM canon.job_lock() k;
EXCEPTION WHEN lock_not_available THEN
  RAISE EXCEPTION 'a pipeline run (or another identity change) holds the job lock for more than %: try again when it has finished',
                  current_setting('lock_timeout')
    USING ERRCODE = '55P03';
END
$$;
COMMENT ON FUNCTION canon.take_job_lock() IS
  'Takes the job lock for this transaction, waiting at most lock_timeout (then 55P03): the prologue of the operator tools and repairs.';

-- snapshot of sql/canon/canon.take_lead_state_marks.sql
-- canon.take_lead_state_marks: the marks a lead state evaluation consumes, as visible now,
-- into pg_temp.lead_state_marks (lead rows of canon_internal.cabinet_lead_state_pending, keys of
-- canon_internal.cabinet_lead_state_dirty and of canon_internal.cabinet_lead_state_paid_dirty
-- (paid), each with its mark_seq); adds those not read yet when
-- called again in the same transaction. Returns the lead rows newly taken (marked rows
-- and the rows of marked keys). canon.clear_lead_state_marks removes exactly these marks
-- afterwards: a row or key marked again meanwhile has a new mark_seq and stays.
-- Callers: canon.generate_cabinet_claims (step 7), ops.refresh_cabinet_lead_state.
CREATE OR REPLACE FUNCTION canon.take_lead_state_marks()
RETURNS integer[]
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
-- its temp table is made "IF NOT EXISTS" / dropped "IF EXISTS": no NOTICE for that in psql
SET client_min_messages = warning
AS $$
DECLARE
  v_ids integer[];
BEGIN
  CREATE TEMP TABLE IF NOT EXISTS lead_state_marks (lead_id integer, lead_source_pk text, mark_seq bigint NOT NULL,
                                                   paid boolean NOT NULL DEFAULT false)
    ON COMMIT DROP;
  -- Probed per mark when called again (the marks' statistics are rarely current: a plan of
  -- one row, then a scan of the marks taken per mark, 250 ms for 2,000 marks).
  CREATE INDEX IF NOT EXISTS lead_state_marks_row_idx ON pg_temp.lead_state_marks (lead_id, mark_seq);
  CREATE INDEX IF NOT EXISTS lead_state_marks_key_idx ON pg_temp.lead_state_marks (lead_source_pk, mark_seq);
  WITH taken AS (
    INSERT INTO pg_temp.lead_state_marks
    SELECT p.lead_id, NULL, p.mark_seq, false
    FROM canon_internal.cabinet_lead_state_pending p
    WHERE NOT EXISTS (SELECT 1 FROM pg_temp.lead_state_marks m WHERE m.lead_id = p.lead_id AND m.mark_seq = p.mark_seq)
    UNION ALL
    SELECT NULL, d.lead_source_pk, d.mark_seq, false
    FROM canon_internal.cabinet_lead_state_dirty d
    WHERE NOT EXISTS (SELECT 1 FROM pg_temp.lead_state_marks m
                      WHERE m.lead_source_pk = d.lead_source_pk AND m.mark_seq = d.mark_seq AND NOT m.paid)
    UNION ALL
    SELECT NULL, d.lead_source_pk, d.mark_seq, true
    FROM canon_internal.cabinet_lead_state_paid_dirty d
    WHERE NOT EXISTS (SELECT 1 FROM pg_temp.lead_state_marks m
                      WHERE m.lead_source_pk = d.lead_source_pk AND m.mark_seq = d.mark_seq AND m.paid)
    RETURNING lead_id, lead_source_pk
  )
  SELECT ARRAY(
    SELECT t.lead_id FROM taken t WHERE t.lead_id IS NOT NULL
    UNION
    SELECT unnest(canon.lead_ids_of_keys(ARRAY(SELECT t.lead_source_pk FROM taken t WHERE t.lead_source_pk IS NOT NULL))))
  INTO v_ids;
  RETURN v_ids;
END
$$;
COMMENT ON FUNCTION canon.take_lead_state_marks() IS
  'Reads the lead state marks (pending rows, dirty keys, keys whose paid claims changed) visible now into pg_temp.lead_state_marks and returns the lead rows they name; canon.clear_lead_state_marks removes exactly those marks.';

-- snapshot of sql/canon/canon.token_similarity.sql
-- canon.token_similarity: the score of canon.name_similarity on two token sets as
-- canon.name_tokens returns them (sorted, de-duplicated). The matcher compares names it
-- has already normalised (lead_keys.name_norm, driver_index.name_norm): their tokens are
-- string_to_array(name_norm, ' ') (normalize_name is idempotent), so it calls this
-- directly and does not normalise each name again for every pair (2 of the 3 parts of a
-- pair's cost).
CREATE OR REPLACE FUNCTION canon.token_similarity(a text[], b text[])
RETURNS numeric
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
AS $$
-- Token score on the canon.name_tokens sets A and B (raw or normalised names alike):
--   shared  = LEAST(tokens of A with a partner in B, tokens of B with a partner in A)
--   partner = the same token, or one typo apart when both have 5+ letters: edit
--             distance 1 (levenshtein) or two adjacent letters swapped (VINCENT/VINCNET)
--   jaccard = shared / (|A| + |B| - shared)
--   overlap = shared / min(|A|, |B|) when the shorter name has 2+ tokens (JUAN PEREZ is
--             all of PEREZ GOMEZ JUAN CARLOS), else shared / max(|A|, |B|) (JUAN alone
--             is not JUAN PEREZ)
--   score   = round((jaccard + overlap) / 2, 4); 1 for equal sets; 0 when either name
--             is NULL or has no token. Never below the SPEC 5 token score.
-- Tokens are at most 200 characters (canon.normalize_name), under levenshtein's 255
-- (longer ones are never compared by edit distance).
DECLARE
  na     integer := COALESCE(pg_catalog.cardinality(a), 0);
  nb     integer := COALESCE(pg_catalog.cardinality(b), 0);
  hit_a  integer := 0;
  hit_b  boolean[];
  shared numeric;
  x      text;
  y      text;
  lx     integer;
  ly     integer;
  d      integer;
  k      integer;
  hit    boolean;
  pair   boolean;
BEGIN
  IF na = 0 OR nb = 0 THEN
    RETURN 0.0000;
  END IF;
  IF a = b THEN
    RETURN 1.0000;
  END IF;
  hit_b := pg_catalog.array_fill(false, ARRAY[nb]);
  FOR i IN 1 .. na LOOP
    x := a[i];
    lx := pg_catalog.length(x);
    hit := false;
    FOR j IN 1 .. nb LOOP
      y := b[j];
      ly := pg_catalog.length(y);
      pair := x = y;
      IF NOT pair AND lx >= 5 AND ly >= 5 AND lx <= 255 AND ly <= 255 AND pg_catalog.abs(lx - ly) <= 1 THEN
        d := public.levenshtein_less_equal(x, y, 2);
        IF d <= 1 THEN
          pair := true;
        ELSIF d = 2 AND lx = ly THEN
          -- one adjacent transposition: first difference at k, swapped, rest equal
          k := 1;
          WHILE k <= lx AND pg_catalog.substr(x, k, 1) = pg_catalog.substr(y, k, 1) LOOP
            k := k + 1;
          END LOOP;
          pair := k < lx
            AND pg_catalog.substr(x, k, 1) = pg_catalog.substr(y, k + 1, 1)
            AND pg_catalog.substr(x, k + 1, 1) = pg_catalog.substr(y, k, 1)
            AND pg_catalog.substr(x, k + 2) = pg_catalog.substr(y, k + 2);
        END IF;
      END IF;
      IF pair THEN
        hit := true;
        hit_b[j] := true;
      END IF;
    END LOOP;
    IF hit THEN
      hit_a := hit_a + 1;
    END IF;
  END LOOP;
  shared := LEAST(hit_a, pg_catalog.cardinality(pg_catalog.array_positions(hit_b, true)));
  RETURN pg_catalog.round(
    (shared / (na + nb - shared)
     + shared / CASE WHEN LEAST(na, nb) >= 2 THEN LEAST(na, nb) ELSE GREATEST(na, nb) END) / 2,
    4);
END
$$;
COMMENT ON FUNCTION canon.token_similarity(text[], text[]) IS
  'Name similarity 0..1 of two token sets as canon.name_tokens returns them (the score of canon.name_similarity, without normalising again). 0 when either set is NULL or empty.';

-- snapshot of sql/canon/canon.trip_drivers_changed.sql
-- canon.trip_drivers_changed: the drivers with trip rows written into public.summary_daily
-- since the last look, whatever page they went to, into pg_temp.trip_drivers_changed;
-- without a trigger on the upstream table (docs/change-detection.md):
-- * every run reads the pages appended since the last look (a TID range from the last page
--   then) for row versions that look's snapshot did not show: exact, whatever the
--   statistics say;
-- * a row version anywhere else (an insert into space freed by DELETE + VACUUM, an update
--   in place, a late commit in an earlier page) shows in the statistics system: inserts it
--   counted that the appended pages do not account for, or any update or delete, make the
--   run read the whole table for row versions written since the last whole read (by
--   commit order: canon.xmin_age_limit). So does a reset of the statistics, a rewrite of
--   the table, statistics turned off, and, as a bound on counts lost in a crash, a whole
--   read every source_full_read_hours.
-- A deleted row, or the old side of an update, leaves no row to find: then the caller
-- re-reads the leads that had trip rows (rows_may_be_gone). Returns what it read and why.
CREATE OR REPLACE FUNCTION canon.trip_drivers_changed(p_run_id bigint)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET jit = off
SET client_min_messages = warning
AS $$
DECLARE
  v_foreign bigint[];
  v_state canon_internal.source_scan_state%ROWTYPE;
  v_writes canon.summary_daily_write_counts;
  v_whole_reason text;
  v_rows_may_be_gone boolean;
  v_limit integer;
  v_blocks bigint;
  v_drivers text[];
  v_found bigint := 0;
  v_rows_read bigint := 0;
  v_snapshot pg_snapshot;
  v_local_xmin xid8;
BEGIN
  SELECT * INTO v_state FROM canon_internal.source_scan_state s WHERE s.source_table = 'summary_daily' FOR UPDATE;
  -- counts as of now, not as cached earlier in this transaction
  PERFORM pg_stat_clear_snapshot();
  v_writes := canon.summary_daily_writes();
  v_foreign := canon.foreign_xids(); -- before the reads' snapshots (canon.local_snapshot_xmin)
  -- the pages to read from next time: measured before the read, so that rows appended
  -- while it runs are read again rather than skipped
  v_blocks := v_writes.blocks;

  v_whole_reason := CASE
    WHEN v_state.seen_snapshot IS NULL OR v_state.seen_xmin IS NULL OR v_state.full_seen_xmin IS NULL THEN 'first_read'
    WHEN v_writes.inserted IS NULL THEN 'statistics_off'
    WHEN v_writes.relfilenode IS DISTINCT FROM v_state.relfilenode THEN 'table_rewritten'
    WHEN v_writes.stats_epoch IS DISTINCT FROM v_state.stats_epoch THEN 'statistics_reset'
    WHEN v_writes.updated <> v_state.tuples_updated OR v_writes.deleted <> v_state.tuples_deleted THEN 'rows_updated_or_deleted'
    WHEN v_writes.blocks < v_state.blocks THEN 'table_shrank'
    WHEN v_writes.inserted < v_state.tuples_accounted THEN 'statistics_reset'
    WHEN v_state.full_read_at < now() - make_interval(hours => canon.setting('source_full_read_hours')::integer) THEN 'periodic'
    WHEN canon.xmin_age_limit(v_state.full_seen_xmin) IS NULL
      OR canon.xmin_age_limit(v_state.seen_xmin) IS NULL THEN 'periodic'
  END;
  -- Rows may have gone (deleted, or moved by an update): their leads cannot be found from
  -- the rows that are there. (No reason yet, the appended pages: false, not NULL.)
  v_rows_may_be_gone := coalesce(v_whole_reason IN ('first_read', 'statistics_off', 'table_rewritten', 'statistics_reset',
                                                    'rows_updated_or_deleted', 'table_shrank'), false);

  IF v_whole_reason IS NULL THEN
    -- The appended pages: row versions not older than the last look's snapshot; those it
    -- did not show are counted against the inserts the statistics report.
    v_limit := canon.xmin_age_limit(v_state.seen_xmin);
    SELECT coalesce(array_agg(DISTINCT t.driver_id::text) FILTER (WHERE t.driver_id IS NOT NULL), '{}'),
           count(*) FILTER (WHERE NOT pg_visible_in_snapshot(
             canon.xid8_of_recent(t.xmin, pg_snapshot_xmax(v_state.seen_snapshot)), v_state.seen_snapshot)),
           count(*),
           pg_current_snapshot(),
           canon.local_snapshot_xmin(pg_current_snapshot(), v_foreign)
    INTO v_drivers, v_found, v_rows_read, v_snapshot, v_local_xmin
    FROM public.summary_daily t
    WHERE t.ctid >= format('(%s,0)', greatest(v_state.blocks - 1, 0))::tid
      AND age(t.xmin) <= v_limit;
    IF v_writes.inserted - v_state.tuples_accounted > v_found THEN
      v_whole_reason := 'inserts_elsewhere';
    END IF;
  END IF;

  IF v_whole_reason IS NOT NULL AND v_whole_reason <> 'first_read' THEN
    -- The whole table: row versions written since the last whole read.
    v_limit := canon.xmin_age_limit(v_state.full_seen_xmin);
    SELECT coalesce(array_agg(DISTINCT t.driver_id::text) FILTER (WHERE t.driver_id IS NOT NULL), '{}'),
           count(*),
           pg_current_snapshot(),
           canon.local_snapshot_xmin(pg_current_snapshot(), v_foreign)
    INTO v_drivers, v_rows_read, v_snapshot, v_local_xmin
    FROM public.summary_daily t
    WHERE v_limit IS NULL OR age(t.xmin) <= v_limit;
  ELSIF v_whole_reason = 'first_read' THEN
    -- No earlier look to compare with: the caller re-reads every lead with a driver instead.
    v_drivers := '{}';
    SELECT pg_current_snapshot(), canon.local_snapshot_xmin(pg_current_snapshot(), v_foreign) INTO v_snapshot, v_local_xmin;
  END IF;

  DROP TABLE IF EXISTS pg_temp.trip_drivers_changed;
  CREATE TEMP TABLE trip_drivers_changed (driver_id text PRIMARY KEY) ON COMMIT DROP;
  INSERT INTO pg_temp.trip_drivers_changed SELECT DISTINCT unnest(v_drivers);
  ANALYZE pg_temp.trip_drivers_changed;

  UPDATE canon_internal.source_scan_state
  SET seen_snapshot = v_snapshot,
      seen_xmin = v_local_xmin,
      blocks = v_blocks,
      relfilenode = v_writes.relfilenode,
      stats_epoch = v_writes.stats_epoch,
      tuples_updated = v_writes.updated,
      tuples_deleted = v_writes.deleted,
      tuples_accounted = CASE WHEN v_whole_reason IS NOT NULL THEN v_writes.inserted
                              ELSE v_state.tuples_accounted + v_found END,
      full_seen_xmin = CASE WHEN v_whole_reason IS NOT NULL THEN v_local_xmin ELSE full_seen_xmin END,
      full_read_at = CASE WHEN v_whole_reason IS NOT NULL THEN now() ELSE full_read_at END,
      read_at = now(),
      run_id = p_run_id
  WHERE source_table = 'summary_daily';

  RETURN jsonb_build_object(
    'read', CASE WHEN v_whole_reason IS NULL THEN 'appended_pages' WHEN v_whole_reason = 'first_read' THEN 'none' ELSE 'whole_table' END,
    'whole_read_reason', v_whole_reason,
    'rows_may_be_gone', v_rows_may_be_gone,
    'rows_read', v_rows_read,
    'rows_new_in_appended_pages', v_found,
    'drivers', cardinality(v_drivers));
END
$$;
COMMENT ON FUNCTION canon.trip_drivers_changed(bigint) IS
  'Drivers with trip rows written since the last look (appended pages every run; the whole table when the statistics show writes elsewhere, updates or deletes), into pg_temp.trip_drivers_changed. Returns {read, whole_read_reason, rows_may_be_gone, rows_read, ...}.';

-- snapshot of sql/canon/canon.try_job_lock.sql
-- canon.try_job_lock: takes the job lock (canon.job_lock) for this transaction if it is
-- free, without waiting: what a pipeline run does (a run that finds it taken is SKIPPED).
CREATE OR REPLACE FUNCTION canon.try_job_lock()
RETURNS boolean
LANGUAGE sql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT pg_try_advisory_xact_lock(k.classid, k.objid) FROM canon.job_lock() k
$$;
COMMENT ON FUNCTION canon.try_job_lock() IS
  'Takes the job lock for this transaction if free (true), else false at once: the pipeline''s step 2.';

-- snapshot of sql/canon/canon.write_lead_links.sql
-- canon.write_lead_links: the one writer of the links a run decides, for the rules
-- (canon.link_decisions) and the probabilistic tier (canon.link_probabilistic) alike. It
-- reads pg_temp.cabinet_links_to_write, one row per lead to link (lead_source_pk,
-- lead_created_at, driver_id, driver_person_key: the driver's person if it has one,
-- match_rule, match_score, confidence_level, evidence, driver_evidence: what the driver's
-- link records besides the lead it came with), and writes set-based: a person per driver
-- that has none (created only with its links, from the driver's earliest lead), the
-- driver links of those persons and the lead links in one statement (the statement
-- triggers of identity_links run once), and the origin of each person the leads brought.
-- The unmatched rows are the callers' (each keeps its own attempt bookkeeping). Returns
-- the counts written.
CREATE OR REPLACE FUNCTION canon.write_lead_links(p_run_id bigint)
RETURNS TABLE (new_persons integer, driver_links integer, lead_links integer, origins integer)
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET client_min_messages = warning
SET jit = off
AS $$
DECLARE
  v_new_persons integer;
  v_driver_links integer;
  v_lead_links integer;
  v_origins integer;
BEGIN
  DROP TABLE IF EXISTS pg_temp.cabinet_links_new_persons;
  CREATE TEMP TABLE cabinet_links_new_persons ON COMMIT DROP AS
  SELECT DISTINCT ON (w.driver_id)
         w.driver_id, canon.new_person_key() AS person_key, w.lead_source_pk AS first_lead_source_pk,
         w.match_rule, w.match_score, w.confidence_level, w.driver_evidence
  FROM pg_temp.cabinet_links_to_write w
  WHERE w.driver_person_key IS NULL
  ORDER BY w.driver_id, w.lead_created_at, w.lead_source_pk;

  INSERT INTO canon.identity_registry (person_key, confidence_level, primary_phone, primary_license, primary_name, created_run_id)
  SELECT np.person_key, np.confidence_level, i.phone_norm, i.license_norm, i.name_norm, p_run_id
  FROM pg_temp.cabinet_links_new_persons np
  JOIN canon_internal.driver_index i ON i.driver_id = np.driver_id;
  GET DIAGNOSTICS v_new_persons = ROW_COUNT;

  WITH inserted AS (
    INSERT INTO canon.identity_links (source_table, source_pk, person_key, match_rule, match_score, confidence_level, evidence, run_id)
    SELECT 'drivers', np.driver_id, np.person_key, np.match_rule, np.match_score, np.confidence_level,
           jsonb_build_object('linked_with_lead', np.first_lead_source_pk) || coalesce(np.driver_evidence, '{}'), p_run_id
    FROM pg_temp.cabinet_links_new_persons np
    UNION ALL
    SELECT 'module_ct_cabinet_leads', w.lead_source_pk, coalesce(w.driver_person_key, np.person_key),
           w.match_rule, w.match_score, w.confidence_level, w.evidence, p_run_id
    FROM pg_temp.cabinet_links_to_write w
    LEFT JOIN pg_temp.cabinet_links_new_persons np ON np.driver_id = w.driver_id
    RETURNING source_table
  )
  SELECT count(*) FILTER (WHERE i.source_table = 'drivers'), count(*) FILTER (WHERE i.source_table <> 'drivers')
  INTO v_driver_links, v_lead_links
  FROM inserted i;

  -- The origin of a person is the earliest lead that brought it.
  INSERT INTO canon.identity_origin (person_key, origin_tag, origin_source_id, confidence_level, origin_created_at, decided_by, run_id)
  SELECT DISTINCT ON (m.person_key) m.person_key, 'cabinet_lead', m.lead_source_pk, m.confidence_level, m.lead_created_at, 'system', p_run_id
  FROM (
    SELECT coalesce(w.driver_person_key, np.person_key) AS person_key, w.lead_source_pk, w.confidence_level, w.lead_created_at
    FROM pg_temp.cabinet_links_to_write w
    LEFT JOIN pg_temp.cabinet_links_new_persons np ON np.driver_id = w.driver_id
  ) m
  ORDER BY m.person_key, m.lead_created_at, m.lead_source_pk
  ON CONFLICT (person_key) DO NOTHING;
  GET DIAGNOSTICS v_origins = ROW_COUNT;

  DROP TABLE pg_temp.cabinet_links_new_persons;
  RETURN QUERY SELECT v_new_persons, v_driver_links, v_lead_links, v_origins;
END
$$;
COMMENT ON FUNCTION canon.write_lead_links(bigint) IS
  'The one writer of the links a run decides (rules and probabilistic tier): persons for drivers without one, driver and lead links in one statement, origins, from pg_temp.cabinet_links_to_write. Returns the counts written.';

-- snapshot of sql/canon/canon.xid8_of_recent.sql
-- canon.xid8_of_recent: the full 64-bit transaction id of a row's 32-bit xmin, given a
-- reference xid8 taken now (pg_snapshot_xmax of the current snapshot), for rows written
-- since the last wraparound of the 32-bit counter. Used to compare a row's xmin with a
-- stored pg_snapshot (pg_visible_in_snapshot takes xid8). For an older row the result
-- may name a later transaction than the true one: it then counts as not visible to an
-- old snapshot, which costs a re-read and never skips a row. One expression, so that it
-- is inlined (not STRICT either, which would prevent it): it is evaluated for every row
-- of the driver index refresh's overlap.
CREATE OR REPLACE FUNCTION canon.xid8_of_recent(p_xid xid, p_now xid8)
RETURNS xid8
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
  SELECT ((CASE WHEN p_xid::text::bigint <= (p_now::text::bigint & 4294967295)
                THEN (p_now::text::bigint >> 32) << 32
                ELSE ((p_now::text::bigint >> 32) - 1) << 32
           END) | p_xid::text::bigint)::text::xid8
$$;
COMMENT ON FUNCTION canon.xid8_of_recent(xid, xid8) IS
  'xid8 of a 32-bit xid written since the last wraparound, given an xid8 of now (pg_snapshot_xmax(pg_current_snapshot())); an older xid maps to a later xid8, never an earlier one.';

-- snapshot of sql/canon/canon.xmin_age_limit.sql
-- canon.xmin_age_limit: the largest age(xmin) of a row version written by a transaction
-- not older than p_seen (the oldest transaction in progress when a table was last read,
-- canon_internal.source_scan_state.seen_xmin): `age(t.xmin) <= limit` selects the row versions that
-- read may not have seen, whatever their id, page or timestamp, with one builtin call per
-- row. Subtransactions are covered (their xids follow their parent's), which a test by
-- pg_visible_in_snapshot would get wrong. NULL (read every row) when p_seen is NULL or so
-- old that 32-bit ages no longer order it; rows older than the 32-bit horizon may be
-- read again, never skipped.
CREATE OR REPLACE FUNCTION canon.xmin_age_limit(p_seen xid8)
RETURNS integer
LANGUAGE sql
STABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT CASE
           WHEN p_seen IS NULL THEN NULL
           WHEN pg_snapshot_xmax(pg_current_snapshot())::text::bigint - p_seen::text::bigint > 1000000000 THEN NULL
           ELSE age((p_seen::text::bigint % 4294967296)::text::xid)
         END
$$;
COMMENT ON FUNCTION canon.xmin_age_limit(xid8) IS
  'age(xmin) bound of the row versions written by transactions not older than p_seen (NULL: read every row). Used as WHERE age(t.xmin) <= canon.xmin_age_limit(seen).';

-- snapshot of sql/ops/ops.check_caches.sql
-- ops.check_caches: every cache the product keeps, against its live definition
-- (docs/change-detection.md): the lead keys, the lead state, the marks that schedule its
-- re-evaluation, the never-evaluated list, the retry marks, the driver index and its odd-timestamp counts. One row
-- per cache with the rows that drifted and up to 5 examples; the next run's work (rows
-- written upstream since the last read, marks, trips to read) is not drift. The detail of
-- each is a function of its own (canon.*_drift), which ops.repair_caches() repairs from.
-- Part of ops.check_invariants (ord 10-16, doctor). Read-only. Cost: a pass over the lead
-- rows, the lead keys, the drivers and the stored state, and the live chain of the leads
-- of the last doctor_lead_state_days days (see docs/operations.md).
CREATE OR REPLACE FUNCTION ops.check_caches()
RETURNS TABLE (ord integer, invariant text, violations bigint, examples jsonb, description text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
  WITH drift (ord, invariant, description, example) AS (
    SELECT 10, 'LEAD_KEYS_CURRENT', NULL::text, d.example FROM canon.lead_keys_drift() d
    UNION ALL
    SELECT 11, 'LEAD_STATE_CURRENT', NULL, d.example FROM canon.lead_state_drift() d
    UNION ALL
    SELECT 12, 'LEAD_STATE_MARKS_CONSUMED', NULL, d.example FROM canon.lead_state_marks_drift() d
    UNION ALL
    SELECT 13, 'NEVER_EVALUATED_LISTED', NULL, d.example FROM canon.never_evaluated_drift() d
    UNION ALL
    SELECT 14, 'RETRY_DUE_MARKED', NULL, d.example FROM canon.retry_due_drift() d
    UNION ALL
    SELECT 15, 'DRIVER_INDEX_CURRENT', NULL, d.example FROM canon.driver_index_drift() d
    UNION ALL
    SELECT 16, 'DRIVER_ODD_COUNTS', NULL, d.example FROM canon.driver_odd_counts_drift() d
  ),
  caches (ord, invariant, description) AS (
    VALUES
      (10, 'LEAD_KEYS_CURRENT', 'every lead row keyed in canon_internal.lead_keys with its current values (or listed unkeyed), no key of a row gone; rows written since the last read excepted'),
      (11, 'LEAD_STATE_CURRENT', 'one stored state row per dated lead row, equal to the live definition (values checked for the last doctor_lead_state_days days); marked rows and trips written or deleted since the last look excepted'),
      (12, 'LEAD_STATE_MARKS_CONSUMED', 'no pending row or dirty key marked before the start of the last completed run (every run evaluates and clears the marks it reads)'),
      (13, 'NEVER_EVALUATED_LISTED', 'every dated lead key neither linked nor unmatched has a row in canon_internal.lead_keys_pending (else no batch selects it)'),
      (14, 'RETRY_DUE_MARKED', 'every OPEN unmatched lead sharing a key with a driver indexed after its last attempt (and checked since), or that the probabilistic tier would pair with such a driver (a plate one edit away with a shared name token, a rare name key), is due for a retry'),
      (15, 'DRIVER_INDEX_CURRENT', 'every driver indexed in canon_internal.driver_index with the values of its newest row; drivers written since the last read excepted'),
      (16, 'DRIVER_ODD_COUNTS', 'the odd driver timestamps a run counts from the versions it tracks and those written since its last read equal every row counted now')
  )
  SELECT c.ord, c.invariant,
         (SELECT count(*) FROM drift d WHERE d.ord = c.ord),
         coalesce((SELECT jsonb_agg(x.example) FROM (SELECT d.example FROM drift d WHERE d.ord = c.ord ORDER BY d.example LIMIT 5) x), '[]'::jsonb),
         c.description
  FROM caches c
  ORDER BY c.ord
$$;
COMMENT ON FUNCTION ops.check_caches() IS
  'Each cache (lead keys, lead state, its marks, the never-evaluated list, retry marks, driver index, odd-timestamp counts) against its live definition: rows drifted and examples (ord 10-16 of ops.check_invariants). ops.repair_caches() repairs.';

-- snapshot of sql/ops/ops.check_invariants.sql
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

-- snapshot of sql/ops/ops.check_limbo_alerts.sql
-- ops.check_limbo_alerts: the alerts that fire (ops.firing_limbo_alerts) with their
-- history in ops.alerts (SPEC 9). Called by the CLI (cabinet-leads alerts), by the worker
-- after each run, at step 8 of each run (through ops.snapshot_limbo, p_run_id = that run),
-- and from psql:
--   SELECT * FROM ops.check_limbo_alerts();
-- p_run_id NULL reads live counts; a run id reads that run's snapshot (see the metrics).
-- With p_record (default) it records the alerts in ops.alerts: a new row the first time a
-- rule fires for a subject (first_seen_at), the same row updated while it keeps firing
-- (last_seen_at, values, times_seen), resolved_at set when it stops firing (also when its
-- rule is disabled or deleted). p_record => false only reads (reports, status, and
-- cabinet_leads_reader, who may not write ops.alerts: that statement is then never run).
-- notified_at is set by the worker when the alert webhook accepted the alert.
CREATE OR REPLACE FUNCTION ops.check_limbo_alerts(p_run_id bigint DEFAULT NULL, p_record boolean DEFAULT true)
RETURNS TABLE (
  rule_code       text,
  severity        text,
  metric          text,
  measure         text,
  comparison      text,
  threshold       numeric,
  current_value   numeric,
  previous_value  numeric,
  change_pct      numeric,
  subject         text,
  message         text,
  first_seen_at   timestamptz,
  last_seen_at    timestamptz,
  is_new          boolean,
  alert_id        bigint,
  notified_at     timestamptz
)
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
  IF p_record IS NOT TRUE THEN
    -- READ ONLY: the open alerts say what is new and what was notified.
    RETURN QUERY
      SELECT f.rule_code, f.severity, f.metric, f.measure, f.comparison, f.threshold,
             f.current_value, f.previous_value, f.change_pct, f.subject, f.message,
             coalesce(o.first_seen_at, now()), now(), o.id IS NULL, o.id, o.notified_at
      FROM ops.firing_limbo_alerts(p_run_id) f
      LEFT JOIN ops.alerts o ON o.rule_code = f.rule_code AND o.subject = f.subject AND o.resolved_at IS NULL
      ORDER BY CASE f.severity WHEN 'CRITICAL' THEN 0 ELSE 1 END, f.rule_code, f.subject;
    RETURN;
  END IF;

  -- RECORD: one statement, so that "opened" is the state before this check.
  RETURN QUERY
    WITH worded AS MATERIALIZED (
      SELECT f.* FROM ops.firing_limbo_alerts(p_run_id) f
    ),
    opened AS (
      SELECT a.id, a.rule_code, a.subject, a.first_seen_at, a.notified_at
      FROM ops.alerts a
      WHERE a.resolved_at IS NULL
    ),
    upserted AS (
      INSERT INTO ops.alerts AS a (
        rule_code, subject, severity, metric, measure, comparison, threshold, first_value, current_value,
        previous_value, change_pct, message, first_seen_at, last_seen_at, first_run_id, last_run_id)
      SELECT w.rule_code, w.subject, w.severity, w.metric, w.measure, w.comparison, w.threshold, w.current_value,
             w.current_value, w.previous_value, w.change_pct, w.message, now(), now(), p_run_id, p_run_id
      FROM worded w
      ON CONFLICT (rule_code, subject) WHERE resolved_at IS NULL
      DO UPDATE SET severity = EXCLUDED.severity,
                    metric = EXCLUDED.metric,
                    measure = EXCLUDED.measure,
                    comparison = EXCLUDED.comparison,
                    threshold = EXCLUDED.threshold,
                    current_value = EXCLUDED.current_value,
                    previous_value = EXCLUDED.previous_value,
                    change_pct = EXCLUDED.change_pct,
                    message = EXCLUDED.message,
                    last_seen_at = greatest(a.last_seen_at, EXCLUDED.last_seen_at),
                    last_run_id = coalesce(EXCLUDED.last_run_id, a.last_run_id),
                    times_seen = a.times_seen + 1
      RETURNING a.id, a.rule_code, a.subject, a.first_seen_at, a.last_seen_at
    ),
    resolved AS (
      UPDATE ops.alerts a
      SET resolved_at = greatest(now(), a.last_seen_at)
      WHERE a.resolved_at IS NULL
        AND NOT EXISTS (SELECT 1 FROM worded w WHERE w.rule_code = a.rule_code AND w.subject = a.subject)
      RETURNING a.id
    )
    SELECT w.rule_code, w.severity, w.metric, w.measure, w.comparison, w.threshold,
           w.current_value, w.previous_value, w.change_pct, w.subject, w.message,
           coalesce(u.first_seen_at, o.first_seen_at, now()),
           coalesce(u.last_seen_at, now()),
           o.id IS NULL,
           coalesce(u.id, o.id),
           o.notified_at
    FROM worded w
    LEFT JOIN opened o ON o.rule_code = w.rule_code AND o.subject = w.subject
    LEFT JOIN upserted u ON u.rule_code = w.rule_code AND u.subject = w.subject
    ORDER BY CASE w.severity WHEN 'CRITICAL' THEN 0 ELSE 1 END, w.rule_code, w.subject;
END
$$;
COMMENT ON FUNCTION ops.check_limbo_alerts(bigint, boolean) IS
  'Firing alerts of ops.alert_rules (rule_code, metric, threshold, current and previous value, change_pct, message, first/last seen, is_new, notified_at). Records them in ops.alerts unless p_record => false (read only: what cabinet_leads_reader may call). SELECT * FROM ops.check_limbo_alerts();';

-- snapshot of sql/ops/ops.estimate_fs_version.sql
-- ops.estimate_fs_version: a person estimates the m of the probabilistic tier from the leads
-- it has seen, by expectation-maximisation (canon.estimate_fs_m, no labels), from psql:
--   SELECT * FROM ops.estimate_fs_version('EM on the leads of March');
-- The leads: p_lead_ids, or every lead row the rules left NO_CANDIDATES or WEAK_MATCH_ONLY
-- (the tier's leads: also those it linked or sent to review), one row per lead key. Writes
-- the estimate as a new, INACTIVE version of canon.match_fs_versions / match_fs_levels: m
-- from EM, u, prior, bands and guards copied from the active version, the note and the EM's
-- figures in notes. Returns per level the new m beside the active one's, so a person
-- compares and activates it deliberately (docs/matching.md, "Where the m and u come from");
-- activating marks every OPEN unmatched lead due. Changes nothing of the active version nor
-- of any lead. Refuses a blank note (22023) and too few pairs (CL026).
CREATE OR REPLACE FUNCTION ops.estimate_fs_version(
  p_note text,
  p_lead_ids integer[] DEFAULT NULL,
  p_max_iterations integer DEFAULT 100,
  p_epsilon numeric DEFAULT 0.00001,
  p_min_pairs integer DEFAULT 1000)
RETURNS TABLE (
  version integer,
  comparison text,
  level text,
  m numeric,
  active_m numeric,
  u numeric,
  u_kind text,
  occurrences bigint,
  in_matches numeric,
  pairs integer,
  leads integer,
  iterations integer,
  converged boolean
)
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '30s'
SET client_min_messages = warning
AS $$
DECLARE
  v_active integer;
  v_new integer;
  v_t timestamptz := clock_timestamp();
  v_ms numeric;
  r record;
BEGIN
  PERFORM canon.require_note(p_note, 'say what the estimate is for (the period, the reason)');
  SELECT fv.version INTO v_active FROM canon.match_fs_versions fv WHERE fv.active;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'ops.estimate_fs_version: no active version of canon.match_fs_versions to start from' USING ERRCODE = 'P0002';
  END IF;

  -- THE ESTIMATE --------------------------------------------------------------------------
  DROP TABLE IF EXISTS pg_temp.fs_em_estimate;
  CREATE TEMP TABLE fs_em_estimate ON COMMIT DROP AS
  SELECT e.*
  FROM canon.estimate_fs_m(
         coalesce(p_lead_ids, ARRAY(
           SELECT min(k.lead_id)
           FROM (SELECT u.source_pk FROM canon.identity_unmatched u
                 WHERE u.source_table = 'module_ct_cabinet_leads' AND u.reason_code IN ('NO_CANDIDATES', 'WEAK_MATCH_ONLY', 'PROBABLE_MATCH')
                 UNION
                 SELECT l.source_pk FROM canon.identity_links l
                 WHERE l.source_table = 'module_ct_cabinet_leads' AND l.match_rule = 'R4_PROBABILISTIC') t
           JOIN canon_internal.lead_keys k ON k.lead_source_pk = t.source_pk
           GROUP BY t.source_pk)),
         v_active, p_max_iterations, p_epsilon, p_min_pairs) e;
  v_ms := round((extract(epoch FROM clock_timestamp() - v_t) * 1000)::numeric);
  SELECT e.pairs, e.leads, e.matches, e.iterations, e.converged, e.max_change INTO r FROM pg_temp.fs_em_estimate e LIMIT 1;

  -- THE NEW VERSION (inactive) --------------------------------------------------------------
  LOCK TABLE canon.match_fs_versions IN SHARE ROW EXCLUSIVE MODE;
  SELECT max(fv.version) + 1 INTO v_new FROM canon.match_fs_versions fv;
  INSERT INTO canon.match_fs_versions (version, active, prior_match_share, link_probability_min, review_probability_min,
                                       margin_bits_min, rare_token_max_share, name_block_max_drivers, token_share_min, notes)
  SELECT v_new, false, fv.prior_match_share, fv.link_probability_min, fv.review_probability_min,
         fv.margin_bits_min, fv.rare_token_max_share, fv.name_block_max_drivers, fv.token_share_min,
         format('%s. m by EM (ops.estimate_fs_version, %s ms): %s pairs of %s leads, %s expected matches, %s iterations, %s (last change %s); u, prior, bands and guards of version %s.',
                btrim(p_note), v_ms, r.pairs, r.leads, r.matches, r.iterations,
                CASE WHEN r.converged THEN 'converged' ELSE 'NOT converged' END, r.max_change, v_active)
  FROM canon.match_fs_versions fv
  WHERE fv.version = v_active;
  INSERT INTO canon.match_fs_levels (version, comparison, level, m, u, u_kind, note)
  SELECT v_new, l.comparison, l.level, greatest(e.m, 0.0000001), l.u, l.u_kind, l.note
  FROM canon.match_fs_levels l
  JOIN pg_temp.fs_em_estimate e ON e.comparison = l.comparison AND e.level = l.level
  WHERE l.version = v_active;

  RETURN QUERY
  SELECT v_new, e.comparison, e.level, greatest(e.m, 0.0000001), e.m_start, e.u, e.u_kind, e.occurrences, e.in_matches,
         e.pairs, e.leads, e.iterations, e.converged
  FROM pg_temp.fs_em_estimate e
  ORDER BY e.comparison, e.m_start DESC, e.level;
END
$$;
COMMENT ON FUNCTION ops.estimate_fs_version(text, integer[], integer, numeric, integer) IS
  'Operator: m of the probabilistic tier by EM (canon.estimate_fs_m) on the tier''s leads (or p_lead_ids), written as a new INACTIVE version (u, prior, bands and guards of the active one; the note and the EM figures in notes). Returns per level the new m beside the active m. Activate it by hand. Refuses a blank note (22023), too few pairs (CL026).';

-- snapshot of sql/ops/ops.explain_lead.sql
-- ops.explain_lead: "why is this lead (not) matched?" for one lead key: its normalised
-- keys, its current state (link or unmatched row), every candidate with rule, score and
-- why it was kept or rejected, and the decision the matcher would take now (with the
-- probabilistic tier's, probabilistic_now, for a lead the rules leave behind).
--   SELECT jsonb_pretty(ops.explain_lead('9f3a...'));
-- It keys the lead's rows first (canon_internal.lead_keys), so it works on leads never run yet;
-- candidates come from the driver index as of its last refresh (shown in the result),
-- with the driver's name, phone and plate as public.drivers holds them. `scope` says
-- whether the runs still evaluate the lead (canon.last_run_scope): one dated before their
-- days_back is not retried, and the explanation says so. `explanation` is the sentence
-- for people (`cabinet-leads explain KEY` prints it first).
-- SECURITY DEFINER (its owner's rights, a fixed search_path, every name qualified): a
-- cabinet_leads_reader may call it, who may neither read the canon tables nor write the
-- lead keys it refreshes; the keys are a cache of the lead row (what the next run writes
-- anyway), and the lead key is only ever compared, never run as SQL. EXECUTE is granted
-- to the product's roles only (canon.grant_product_roles).
CREATE OR REPLACE FUNCTION ops.explain_lead(p_lead_source_pk text)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- keying the lead's rows drops temp tables "IF EXISTS": no NOTICE for that in psql
SET client_min_messages = warning
AS $$
DECLARE
  v_ids integer[];
  v_rep integer;
  v_decision record;
  v_fs record;
  v_scope record;
  v_lead_date date;
  v_result jsonb;
BEGIN
  SELECT array_agg(l.id ORDER BY l.id) INTO v_ids
  FROM public.module_ct_cabinet_leads l
  WHERE canon.lead_source_pk(l.external_id, l.id) = p_lead_source_pk;
  IF v_ids IS NULL THEN
    RAISE EXCEPTION 'unknown lead %: no row of public.module_ct_cabinet_leads has this lead_source_pk', quote_literal(coalesce(p_lead_source_pk, 'NULL'))
      USING ERRCODE = 'P0002';
  END IF;
  v_rep := v_ids[1];
  PERFORM canon.refresh_lead_keys(v_ids);
  SELECT * INTO v_decision FROM canon.lead_decisions(ARRAY[v_rep]);
  -- the probabilistic tier, on the leads the rules leave behind (as the run does)
  SELECT * INTO v_fs FROM canon.probabilistic_decisions(
    CASE WHEN v_decision.decision IN ('NO_CANDIDATES', 'WEAK_MATCH_ONLY') THEN ARRAY[v_rep] ELSE '{}'::integer[] END);
  SELECT * INTO v_scope FROM canon.last_run_scope();
  SELECT k.lead_date INTO v_lead_date FROM canon_internal.lead_keys k WHERE k.lead_id = v_rep;

  SELECT jsonb_build_object(
    'lead_source_pk', p_lead_source_pk,
    'lead_rows', to_jsonb(v_ids),
    'driver_index_refreshed_at', (SELECT st.last_refresh_at FROM canon_internal.driver_index_state st),
    'keys', (SELECT jsonb_build_object('lead_date', k.lead_date, 'lead_name', k.lead_name, 'phone_norm', k.phone_norm,
                                       'plate_norm', k.plate_norm, 'license_norm', k.license_norm, 'name_norm', k.name_norm)
             FROM canon_internal.lead_keys k WHERE k.lead_id = v_rep),
    'link', (SELECT jsonb_build_object('person_key', k.person_key, 'match_rule', k.match_rule, 'match_score', k.match_score,
                                       'linked_at', k.linked_at, 'run_id', k.run_id,
                                       'driver_id', (SELECT pd.driver_id FROM canon.v_person_driver pd WHERE pd.person_key = k.person_key))
             FROM canon.identity_links k
             WHERE k.source_table = 'module_ct_cabinet_leads' AND k.source_pk = p_lead_source_pk),
    'unmatched', (SELECT jsonb_build_object('reason_code', u.reason_code, 'status', u.status, 'attempts', u.attempts,
                                            'first_attempt_at', u.first_attempt_at, 'last_attempt_at', u.last_attempt_at,
                                            'note', u.note)
                  FROM canon.identity_unmatched u
                  WHERE u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = p_lead_source_pk),
    'scope', jsonb_build_object('days_back', v_scope.days_back, 'scope_from', v_scope.scope_from,
                               'as_of_run', v_scope.run_id, 'in_scope', v_lead_date >= v_scope.scope_from),
    'decision_now', jsonb_build_object('decision', v_decision.decision, 'driver_id', v_decision.driver_id,
                                       'match_rule', v_decision.match_rule, 'match_score', v_decision.match_score,
                                       'confidence_level', v_decision.confidence_level, 'evidence', v_decision.evidence),
    'probabilistic_now', CASE WHEN v_fs.lead_id IS NOT NULL THEN jsonb_build_object(
                           'outcome', v_fs.outcome, 'why_not_linked', v_fs.why, 'driver_id', v_fs.driver_id,
                           'probability', v_fs.probability, 'match_weight', v_fs.match_weight, 'margin_bits', v_fs.margin_bits,
                           'fs_version', v_fs.fs_version, 'in_words', v_fs.evidence->>'in_words', 'candidates', v_fs.candidates) END,
    'candidates', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                      'driver_id', c.driver_id, 'park_id', c.park_id, 'in_target_park', c.in_target_park,
                      'rule', c.rule, 'score', c.score, 'name_similarity', c.name_similarity,
                      'hire_date', c.hire_date, 'hire_in_window', c.hire_in_window,
                      'kept', c.kept, 'reject_reason', c.reject_reason, 'name_veto', c.name_veto,
                      'driver_name', d.driver_name, 'phone', d.phone, 'plate', d.plate)
                    ORDER BY c.kept DESC, c.score DESC, c.name_similarity DESC, c.driver_id), '[]'::jsonb)
                   FROM canon.lead_candidates(ARRAY[v_rep]) c
                   LEFT JOIN LATERAL (
                     SELECT coalesce(nullif(btrim(x.full_name), ''),
                                     nullif(btrim(concat_ws(' ', x.first_name, x.middle_name, x.last_name)), '')) AS driver_name,
                            x.phone, coalesce(x.car_number, x.car_normalized_number) AS plate
                     FROM public.drivers x
                     WHERE x.driver_id = c.driver_id
                     LIMIT 1
                   ) d ON true),
    'explanation', CASE v_decision.decision
      WHEN 'MATCH' THEN format('Matches driver %s by %s (score %s).', v_decision.driver_id, v_decision.match_rule, v_decision.match_score)
      WHEN 'MISSING_KEYS' THEN 'No usable phone, plate or licence: nothing to match on; fix the lead data or resolve it by hand (ops.resolve_lead).'
      WHEN 'SHARED_KEY' THEN 'Its only key is a phone shared by several people (an office phone): not evidence; needs a plate or a manual resolution.'
      WHEN 'WEAK_MATCH_ONLY' THEN 'Its plate is known but no driver of that plate has a similar name (>= 0.66), or the similar one differs by a given name or a surname (a relative: name_veto): check the candidates and resolve by hand if one is right.'
      WHEN 'AMBIGUOUS' THEN 'Several drivers fit equally well: never resolved automatically; pick one with ops.resolve_lead.'
      WHEN 'CONFLICT' THEN 'Different rules point to different drivers: check the candidates and resolve by hand.'
      ELSE CASE
        WHEN v_lead_date >= v_scope.scope_from THEN
          'No driver has its phone or plate yet: the next run after a driver with that phone or plate arrives tries it again.'
        WHEN v_lead_date IS NULL THEN
          'No driver has its phone or plate yet, and the lead has no lead date (lead_created_at): no run selects it; fix the lead row or resolve it by hand (ops.resolve_lead).'
        ELSE format('No driver has its phone or plate yet, and its lead date %s is before the runs'' scope (days_back %s: from %s): it is not retried. To retry it once: cabinet-leads reconcile --days-back %s (CALL ops.reconcile_cabinet_leads_pipeline(p_days_back => %s)).',
                    v_lead_date, v_scope.days_back, v_scope.scope_from,
                    canon.business_today() - v_lead_date, canon.business_today() - v_lead_date)
      END
    END
    || CASE v_fs.outcome
         WHEN 'LINK' THEN format(' The probabilistic tier links driver %s (R4_PROBABILISTIC, probability %s): %s.',
                                 v_fs.driver_id, v_fs.probability, v_fs.evidence->>'in_words')
         WHEN 'REVIEW' THEN format(' The probabilistic tier finds a probable driver %s (probability %s, not linked: %s): a person decides (PROBABLE_MATCH, cabinet-leads review): %s.',
                                   v_fs.driver_id, v_fs.probability, v_fs.why, v_fs.evidence->>'in_words')
         ELSE '' END)
  INTO v_result;
  RETURN v_result;
END
$$;
COMMENT ON FUNCTION ops.explain_lead(text) IS 'Why a lead is (not) matched: normalised keys, state, every candidate with rule, score, kept or reject reason, and the decision now. SECURITY DEFINER: readers may call it.';

-- snapshot of sql/ops/ops.firing_limbo_alerts.sql
-- ops.firing_limbo_alerts: the alerts that fire now, in plain words (SPEC 9): the enabled
-- rules of ops.alert_rules evaluated on ops.limbo_alert_metrics. Reads only: the part of
-- ops.check_limbo_alerts that decides, so that its read-only form needs no right to write
-- ops.alerts (a reader may call it: docs/security.md).
--   SELECT * FROM ops.firing_limbo_alerts();
-- p_run_id NULL reads live counts; a run id reads that run's snapshot (see the metrics).
-- Week over week: change_pct = 100 * (last - previous) / previous over the last two
-- complete lead weeks; previous 0 and last 0 is no change; previous 0 and last > 0 is an
-- unbounded rise (fires for '>' and '>=', change_pct NULL). A stale-run rule fires when
-- no COMPLETED run exists at all. min_current_value, when set, must be reached too.
CREATE OR REPLACE FUNCTION ops.firing_limbo_alerts(p_run_id bigint DEFAULT NULL)
RETURNS TABLE (
  rule_code       text,
  severity        text,
  metric          text,
  measure         text,
  comparison      text,
  threshold       numeric,
  current_value   numeric,
  previous_value  numeric,
  change_pct      numeric,
  subject         text,
  message         text
)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH settings AS (
    SELECT canon.setting('business_timezone') AS tz
  ),
  evaluated AS (
    SELECT r.rule_code, r.severity, r.metric, r.measure, r.comparison, r.threshold, r.min_current_value,
           CASE WHEN r.measure = 'WEEK_OVER_WEEK_PCT' THEN m.last_week_value ELSE m.current_value END AS cur,
           CASE WHEN r.measure = 'WEEK_OVER_WEEK_PCT' THEN m.previous_week_value ELSE m.previous_value END AS prev,
           m.previous_run_id, m.last_week, m.previous_week, m.context
    FROM ops.alert_rules r
    JOIN ops.limbo_alert_metrics(p_run_id) m ON m.metric = r.metric
    WHERE r.enabled
  ),
  tested AS (
    SELECT e.*,
           CASE
             WHEN e.measure = 'WEEK_OVER_WEEK_PCT' THEN
               CASE WHEN e.prev = 0 AND e.cur = 0 THEN 0::float8
                    WHEN e.prev = 0 THEN 'Infinity'::float8
                    ELSE ((e.cur - e.prev) * 100 / e.prev)::float8 END
             -- no COMPLETED run at all: infinitely stale
             WHEN e.metric = 'HOURS_SINCE_LAST_COMPLETED_RUN' AND e.cur IS NULL THEN 'Infinity'::float8
             ELSE e.cur::float8
           END AS value_tested,
           CASE e.metric
             WHEN 'LEADS' THEN 'Leads'
             WHEN 'NO_IDENTITY' THEN 'Leads in NO_IDENTITY (no person matched)'
             WHEN 'NO_DRIVER' THEN 'Leads in NO_DRIVER (person without a driver)'
             WHEN 'NO_TRIPS_14D' THEN 'Leads in NO_TRIPS_14D (no trips in the 14-day window)'
             WHEN 'TRIPS_NO_CLAIM' THEN 'Leads in TRIPS_NO_CLAIM (milestone reached, claim missing)'
             WHEN 'OK' THEN 'Leads OK'
             WHEN 'PCT_WITH_IDENTITY' THEN 'Share of leads with an identity'
             WHEN 'PCT_WITH_DRIVER' THEN 'Share of leads with a driver'
             ELSE e.metric
           END AS label,
           CASE WHEN e.metric LIKE 'PCT%' THEN ' %' ELSE '' END AS unit,
           CASE e.comparison
             WHEN '>' THEN 'above' WHEN '>=' THEN 'at or above' WHEN '<' THEN 'below'
             WHEN '<=' THEN 'at or below' ELSE 'equal to'
           END AS word
    FROM evaluated e
  ),
  firing AS (
    SELECT t.*,
           CASE WHEN t.measure = 'WEEK_OVER_WEEK_PCT' THEN 'lead week ' || t.last_week ELSE '' END AS subject,
           CASE
             WHEN t.measure = 'WEEK_OVER_WEEK_PCT' THEN
               CASE WHEN t.value_tested = 'Infinity'::float8 THEN NULL ELSE round(t.value_tested::numeric, 2) END
             WHEN t.prev > 0 THEN round((t.cur - t.prev) * 100 / t.prev, 2)
           END AS change_pct
    FROM tested t
    WHERE t.value_tested IS NOT NULL
      AND CASE t.comparison
            WHEN '>' THEN t.value_tested > t.threshold::float8
            WHEN '>=' THEN t.value_tested >= t.threshold::float8
            WHEN '<' THEN t.value_tested < t.threshold::float8
            WHEN '<=' THEN t.value_tested <= t.threshold::float8
            ELSE t.value_tested = t.threshold::float8
          END
      AND (t.min_current_value IS NULL OR t.cur IS NULL OR t.cur >= t.min_current_value)
  ),
  worded AS (
    SELECT f.*,
      CASE
        WHEN f.measure = 'WEEK_OVER_WEEK_PCT' AND f.prev = 0 THEN
          format('%s of lead week %s: %s, up from 0 in lead week %s (a rise from 0 exceeds any percentage; threshold: change %s %s %%; only complete lead weeks are compared).',
                 f.label, f.last_week, f.cur::float8, f.previous_week, f.word, f.threshold::float8)
        WHEN f.measure = 'WEEK_OVER_WEEK_PCT' THEN
          format('%s of lead week %s: %s, %s %s %% from %s in lead week %s (threshold: change %s %s %%; only complete lead weeks are compared).',
                 f.label, f.last_week, f.cur::float8, CASE WHEN f.change_pct >= 0 THEN 'up' ELSE 'down' END,
                 abs(f.change_pct)::float8, f.prev::float8, f.previous_week, f.word, f.threshold::float8)
        WHEN f.metric = 'HOURS_SINCE_LAST_COMPLETED_RUN' AND f.cur IS NULL THEN
          format('No COMPLETED run yet (threshold: %s hours): run cabinet-leads reconcile or start the worker.', f.threshold::float8)
        WHEN f.metric = 'HOURS_SINCE_LAST_COMPLETED_RUN' THEN
          format('The last COMPLETED run (#%s) finished %s hours ago, at %s (%s): %s the threshold of %s hours; check that the worker or the cron job is running.',
                 f.context->>'run_id', f.cur::float8,
                 to_char((f.context->>'completed_at')::timestamptz AT TIME ZONE s.tz, 'YYYY-MM-DD HH24:MI'), s.tz,
                 f.word, f.threshold::float8)
        WHEN f.metric = 'LAST_RUN_FAILED' THEN
          format('The last run (#%s, finished %s %s) %s: %s. Details: SELECT * FROM canon.ingestion_runs WHERE id = %s;',
                 f.context->>'run_id',
                 to_char((f.context->>'completed_at')::timestamptz AT TIME ZONE s.tz, 'YYYY-MM-DD HH24:MI'), s.tz,
                 f.context->>'status',
                 coalesce(left(split_part(f.context->>'error_message', E'\n', 1), 300), 'no error message'),
                 f.context->>'run_id')
        ELSE
          format('%s: %s%s, %s the threshold of %s%s%s.',
                 f.label, f.cur::float8, f.unit, f.word, f.threshold::float8, f.unit,
                 CASE WHEN f.prev IS NOT NULL
                      THEN format(' (%s%s at the previous snapshot, run #%s)', f.prev::float8, f.unit, f.previous_run_id)
                      ELSE '' END)
      END AS message
    FROM firing f
    CROSS JOIN settings s
  )
  SELECT w.rule_code, w.severity, w.metric, w.measure, w.comparison, w.threshold,
         w.cur, w.prev, w.change_pct, w.subject, w.message
  FROM worded w
  ORDER BY CASE w.severity WHEN 'CRITICAL' THEN 0 ELSE 1 END, w.rule_code, w.subject
$$;
COMMENT ON FUNCTION ops.firing_limbo_alerts(bigint) IS
  'Alerts of ops.alert_rules that fire now (live, or on the snapshot of run p_run_id), with metric, threshold, current and previous value, change_pct and message; reads only. ops.check_limbo_alerts records them.';

-- snapshot of sql/ops/ops.funnel_week_counts.sql
-- ops.funnel_week_counts: the counts of the weekly funnel per lead week (what
-- ops.v_cabinet_14d_funnel_weekly shows) without a pass over every lead: the stored
-- state's counters corrected for the rows whose stored state may not be current
-- (canon.lead_ids_maybe_not_current: marked, or written since the last read of the lead
-- rows; every row when the counts do not add up), canon.funnel_week_counts_of. Equal to
-- the aggregates of ops.v_cabinet_leads_limbo and ops.v_cabinet_claims_expected_14d
-- (test/sql/ops.funnel_week_counts.test.ts). SECURITY DEFINER (it only reads; a fixed
-- search_path): the counters and the lead rows are not a reader's, the funnel view is.
CREATE OR REPLACE FUNCTION ops.funnel_week_counts()
RETURNS TABLE (
  week_start             date,
  leads                  bigint,
  leads_with_identity    bigint,
  leads_with_driver      bigint,
  leads_with_trips_14d   bigint,
  leads_window_open      bigint,
  reached_m1_14d         bigint,
  reached_m5_14d         bigint,
  reached_m25_14d        bigint,
  trips_14d              numeric,
  claims_expected        bigint,
  claims_expected_amount numeric,
  claims_present         bigint,
  claims_present_amount  numeric,
  claims_paid            bigint,
  claims_paid_amount     numeric,
  limbo_no_identity      bigint,
  limbo_no_driver        bigint,
  limbo_no_trips_14d     bigint,
  limbo_trips_no_claim   bigint,
  limbo_ok               bigint
)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
  SELECT * FROM canon.funnel_week_counts_of(canon.lead_ids_maybe_not_current(true))
$$;
COMMENT ON FUNCTION ops.funnel_week_counts() IS
  'Counts of the weekly 14-day funnel per lead week (leads, flags, milestones, claims expected / present / paid with amounts, stages), from the stored state''s counters corrected for the rows that may not be current; what ops.v_cabinet_14d_funnel_weekly shows.';

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

-- snapshot of sql/ops/ops.job_lock_holders.sql
-- ops.job_lock_holders: who holds the job lock (the advisory lock
-- (hashtext('cabinet_leads'), hashtext('reconcile_cabinet_leads_pipeline')) that keeps
-- runs from overlapping), since when, and whether longer than a run can last (setting
-- job_lock_held_max_minutes). Any session of the database may take that lock (psql,
-- a hung client); while it holds it every run is SKIPPED. Read by `status`, `doctor`
-- (JOB_LOCK_HELD_TOO_LONG) and the log line of a SKIPPED run:
--   SELECT * FROM ops.job_lock_holders();
--   SELECT pg_terminate_backend(pid) FROM ops.job_lock_holders() WHERE too_long;  -- frees it
-- held_since: the start of the holder's run when it runs one of ours. Any other session:
-- the start of its open transaction, else when it went idle (a session lock was taken by
-- then), or, when earlier (or its activity is not visible), the start of the oldest
-- SKIPPED run since the last run that got the lock: since then the job has been kept out.
-- SECURITY DEFINER: pg_stat_activity shows the times of other roles' sessions to its
-- owner only (a superuser, or a member of pg_read_all_stats, sees all).
CREATE OR REPLACE FUNCTION ops.job_lock_holders()
RETURNS TABLE (
  pid               integer,
  usename           text,
  application_name  text,
  client_addr       text,
  state             text,
  run_id            bigint,
  held_since        timestamptz,
  held_for          interval,
  too_long          boolean
)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  WITH params AS (
    SELECT make_interval(mins => canon.setting('job_lock_held_max_minutes')::integer) AS max_held
  ),
  holders AS (
    SELECT l.pid
    FROM pg_catalog.pg_locks l
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
      AND l.classid = hashtext('cabinet_leads')::oid
      AND l.objid = hashtext('reconcile_cabinet_leads_pipeline')::oid
      AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = current_database())
  ),
  -- Runs kept out since: the oldest SKIPPED run after the last run that got the lock.
  skipping AS (
    SELECT min(r.started_at) AS since
    FROM canon.ingestion_runs r
    WHERE r.job_name = 'reconcile_cabinet_leads_pipeline' AND r.status = 'SKIPPED'
      AND r.id > coalesce((SELECT max(x.id) FROM canon.ingestion_runs x
                           WHERE x.job_name = 'reconcile_cabinet_leads_pipeline' AND x.status IN ('COMPLETED', 'FAILED', 'RUNNING')), 0)
  ),
  described AS (
    SELECT h.pid, a.usename::text AS usename, a.application_name, host(a.client_addr) AS client_addr, a.state, r.id AS run_id,
           coalesce(r.started_at, least(coalesce(a.xact_start, a.state_change), (SELECT s.since FROM skipping s))) AS held_since
    FROM holders h
    LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = h.pid
    LEFT JOIN LATERAL (
      SELECT x.id, x.started_at
      FROM canon.ingestion_runs x
      WHERE x.status = 'RUNNING' AND x.backend_pid = h.pid
        AND (x.backend_start IS NULL OR a.backend_start IS NULL OR x.backend_start = a.backend_start)
      ORDER BY x.id DESC
      LIMIT 1) r ON true
  )
  SELECT d.pid, d.usename, d.application_name, d.client_addr, d.state, d.run_id, d.held_since,
         date_trunc('second', now() - d.held_since), now() - d.held_since > p.max_held
  FROM described d
  CROSS JOIN params p
  ORDER BY d.held_since NULLS LAST, d.pid
$$;
COMMENT ON FUNCTION ops.job_lock_holders() IS
  'Sessions holding the job lock (every run is SKIPPED meanwhile): pid, user, application_name, state, the run it runs (if ours), held since, for how long, and too_long (over setting job_lock_held_max_minutes; free it with pg_terminate_backend(pid)).';

-- snapshot of sql/ops/ops.last_complete_lead_week.sql
-- ops.last_complete_lead_week: the Monday of the most recent lead week (ISO, Monday to
-- Sunday) that is complete on p_today, i.e. ended at least p_after_days days ago:
-- the largest Monday W with W + 7 + p_after_days <= p_today. The current, partial week
-- is never returned. Used by the week-over-week alert rules (ops.limbo_alert_metrics)
-- with p_after_days = setting alert_week_complete_after_days (2: leads arrive late).
CREATE OR REPLACE FUNCTION ops.last_complete_lead_week(p_today date, p_after_days integer DEFAULT 0)
RETURNS date
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT date_trunc('week', (p_today - 7 - greatest(coalesce(p_after_days, 0), 0))::timestamp)::date
$$;
COMMENT ON FUNCTION ops.last_complete_lead_week(date, integer) IS
  'Monday of the last lead week complete on p_today (ended at least p_after_days days before): date_trunc(''week'', p_today - 7 - p_after_days). Never the current partial week.';

-- snapshot of sql/ops/ops.limbo_alert_metrics.sql
-- ops.limbo_alert_metrics: every value the alert rules can test, one row per metric, for
-- ops.check_limbo_alerts (and for people: SELECT * FROM ops.limbo_alert_metrics()).
--   p_run_id NULL: live limbo counts (ops.limbo_week_counts: one pass over the limbo
--     view) and the run log as it is now;
--   p_run_id = a run at step 8: that run's snapshot rows (no second pass over the view),
--     and that run counted as the last COMPLETED one (if it fails, everything rolls back).
-- previous_value = the same metric in the snapshot before the latest one (before p_run_id's).
-- last_week / previous_week = the last two complete lead weeks (ops.last_complete_lead_week
-- with setting alert_week_complete_after_days), never the current partial week; their
-- values count the leads of that lead week in the stage (0 when the week has none).
CREATE OR REPLACE FUNCTION ops.limbo_alert_metrics(p_run_id bigint DEFAULT NULL)
RETURNS TABLE (
  metric               text,
  current_value        numeric,
  previous_value       numeric,
  previous_run_id      bigint,
  last_week            date,
  last_week_value      numeric,
  previous_week        date,
  previous_week_value  numeric,
  context              jsonb
)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH params AS (
    SELECT ops.last_complete_lead_week(canon.business_today(),
                                       canon.setting('alert_week_complete_after_days')::integer) AS last_week
  ),
  weeks AS (
    SELECT w.* FROM ops.limbo_week_counts(p_run_id) w
  ),
  totals AS (
    SELECT coalesce(sum(w.leads), 0) AS leads,
           coalesce(sum(w.leads_with_identity), 0) AS leads_with_identity,
           coalesce(sum(w.leads_with_driver), 0) AS leads_with_driver,
           coalesce(sum(w.limbo_no_identity), 0) AS limbo_no_identity,
           coalesce(sum(w.limbo_no_driver), 0) AS limbo_no_driver,
           coalesce(sum(w.limbo_no_trips_14d), 0) AS limbo_no_trips_14d,
           coalesce(sum(w.limbo_trips_no_claim), 0) AS limbo_trips_no_claim,
           coalesce(sum(w.limbo_ok), 0) AS limbo_ok,
           coalesce(sum(w.leads) FILTER (WHERE w.week_start = p.last_week), 0) AS leads_last_week,
           coalesce(sum(w.leads) FILTER (WHERE w.week_start = p.last_week - 7), 0) AS leads_previous_week
    FROM params p
    LEFT JOIN weeks w ON true
  ),
  last_wk AS (SELECT w.* FROM weeks w, params p WHERE w.week_start = p.last_week),
  prev_wk AS (SELECT w.* FROM weeks w, params p WHERE w.week_start = p.last_week - 7),
  -- the snapshot compared against: the one before the latest snapshot (before p_run_id's)
  anchor AS (
    SELECT s.taken_at, s.run_id
    FROM ops.limbo_snapshots s
    WHERE p_run_id IS NULL OR s.run_id = p_run_id
    ORDER BY s.taken_at DESC, s.run_id DESC
    LIMIT 1
  ),
  baseline AS (
    SELECT s.*,
           round(100.0 * s.leads_with_identity / nullif(s.leads, 0), 2) AS pct_with_identity,
           round(100.0 * s.leads_with_driver / nullif(s.leads, 0), 2) AS pct_with_driver
    FROM ops.limbo_snapshots s, anchor a
    WHERE (s.taken_at, s.run_id) < (a.taken_at, a.run_id)
    ORDER BY s.taken_at DESC, s.run_id DESC
    LIMIT 1
  ),
  -- run health: the run at step 8 (p_run_id, not dry) is the latest COMPLETED run
  this_run AS (
    SELECT r.id, now() AS completed_at, 'COMPLETED'::text AS status, NULL::text AS error_message
    FROM canon.ingestion_runs r
    WHERE r.id = p_run_id AND r.job_name = 'reconcile_cabinet_leads_pipeline' AND NOT r.dry_run
  ),
  last_completed AS (
    SELECT x.id, x.completed_at
    FROM (
      SELECT t.id, t.completed_at, 1 AS ord FROM this_run t
      UNION ALL
      (SELECT r.id, r.completed_at, 2
       FROM canon.ingestion_runs r
       WHERE r.job_name = 'reconcile_cabinet_leads_pipeline' AND r.status = 'COMPLETED' AND NOT r.dry_run
       ORDER BY r.created_at DESC, r.id DESC
       LIMIT 1)
    ) x
    ORDER BY x.ord
    LIMIT 1
  ),
  last_finished AS (
    SELECT x.id, x.status, x.completed_at, x.error_message
    FROM (
      SELECT t.id, t.status, t.completed_at, t.error_message, 1 AS ord FROM this_run t
      UNION ALL
      (SELECT r.id, r.status, r.completed_at, r.error_message, 2
       FROM canon.ingestion_runs r
       WHERE r.job_name = 'reconcile_cabinet_leads_pipeline' AND r.status IN ('COMPLETED', 'FAILED') AND NOT r.dry_run
       ORDER BY r.created_at DESC, r.id DESC
       LIMIT 1)
    ) x
    ORDER BY x.ord
    LIMIT 1
  )
  SELECT m.metric,
         m.current_value,
         m.previous_value,
         CASE WHEN m.weekly OR m.pct THEN b.run_id END,
         CASE WHEN m.weekly THEN p.last_week END,
         CASE WHEN m.weekly THEN coalesce(m.last_week_value, 0) END,
         CASE WHEN m.weekly THEN p.last_week - 7 END,
         CASE WHEN m.weekly THEN coalesce(m.previous_week_value, 0) END,
         coalesce(m.context, jsonb_build_object(
           'previous_taken_at', b.taken_at,
           'leads_last_week', t.leads_last_week,
           'leads_previous_week', t.leads_previous_week))
  FROM params p
  CROSS JOIN totals t
  LEFT JOIN baseline b ON true
  LEFT JOIN last_wk lw ON true
  LEFT JOIN prev_wk pw ON true
  LEFT JOIN last_completed lc ON true
  LEFT JOIN last_finished lf ON true
  CROSS JOIN LATERAL (
    VALUES
      (1, 'LEADS', t.leads::numeric, b.leads::numeric, lw.leads::numeric, pw.leads::numeric, true, false, NULL::jsonb),
      (2, 'NO_IDENTITY', t.limbo_no_identity, b.limbo_no_identity, lw.limbo_no_identity, pw.limbo_no_identity, true, false, NULL),
      (3, 'NO_DRIVER', t.limbo_no_driver, b.limbo_no_driver, lw.limbo_no_driver, pw.limbo_no_driver, true, false, NULL),
      (4, 'NO_TRIPS_14D', t.limbo_no_trips_14d, b.limbo_no_trips_14d, lw.limbo_no_trips_14d, pw.limbo_no_trips_14d, true, false, NULL),
      (5, 'TRIPS_NO_CLAIM', t.limbo_trips_no_claim, b.limbo_trips_no_claim, lw.limbo_trips_no_claim, pw.limbo_trips_no_claim, true, false, NULL),
      (6, 'OK', t.limbo_ok, b.limbo_ok, lw.limbo_ok, pw.limbo_ok, true, false, NULL),
      (7, 'PCT_WITH_IDENTITY', round(100.0 * t.leads_with_identity / nullif(t.leads, 0), 2), b.pct_with_identity,
       NULL, NULL, false, true, jsonb_build_object('leads', t.leads, 'leads_with_identity', t.leads_with_identity)),
      (8, 'PCT_WITH_DRIVER', round(100.0 * t.leads_with_driver / nullif(t.leads, 0), 2), b.pct_with_driver,
       NULL, NULL, false, true, jsonb_build_object('leads', t.leads, 'leads_with_driver', t.leads_with_driver)),
      (9, 'HOURS_SINCE_LAST_COMPLETED_RUN',
       round((extract(epoch FROM now() - lc.completed_at) / 3600)::numeric, 2), NULL, NULL, NULL, false, false,
       jsonb_build_object('run_id', lc.id, 'completed_at', lc.completed_at)),
      (10, 'LAST_RUN_FAILED', CASE lf.status WHEN 'FAILED' THEN 1 WHEN 'COMPLETED' THEN 0 END, NULL, NULL, NULL, false, false,
       jsonb_build_object('run_id', lf.id, 'status', lf.status, 'completed_at', lf.completed_at,
                          'error_message', lf.error_message))
  ) m (ord, metric, current_value, previous_value, last_week_value, previous_week_value, weekly, pct, context)
  ORDER BY m.ord
$$;
COMMENT ON FUNCTION ops.limbo_alert_metrics(bigint) IS
  'Values the alert rules test, one row per metric: current (live, or the snapshot of run p_run_id), previous snapshot, the last two complete lead weeks, run health. Read by ops.check_limbo_alerts.';

-- snapshot of sql/ops/ops.limbo_stage_actions.sql
-- ops.limbo_stage_actions: per limbo stage other than OK that has leads, the leads in it
-- and those a person can act on now: every NO_DRIVER lead (link the person's driver),
-- every TRIPS_NO_CLAIM lead (get the claim generated), the NO_IDENTITY leads of
-- canon.actionable_no_identity_leads, no NO_TRIPS_14D lead (they wait for trips). Counted
-- from the stored state's counters corrected for the rows that may not be current, as
-- ops.limbo_stage_counts does (one pass over the lead rows, by commit order, not a pass
-- over the limbo view). Read by `cabinet-leads report`. SECURITY DEFINER (it only reads;
-- a fixed search_path): a reader runs the report.
CREATE OR REPLACE FUNCTION ops.limbo_stage_actions()
RETURNS TABLE (limbo_stage text, leads bigint, actionable bigint)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
  v_ids integer[] := canon.lead_ids_maybe_not_current(true);
BEGIN
  RETURN QUERY
  SELECT s.limbo_stage, s.leads,
         CASE s.limbo_stage
           WHEN 'NO_IDENTITY' THEN (SELECT count(*) FROM canon.actionable_no_identity_leads(v_ids))
           WHEN 'NO_TRIPS_14D' THEN 0
           ELSE s.leads
         END
  FROM (SELECT x.limbo_stage, sum(x.leads)::bigint AS leads
        FROM canon.limbo_counts_delta(v_ids) x
        WHERE x.limbo_stage <> 'OK'
        GROUP BY x.limbo_stage
        HAVING sum(x.leads) <> 0) s
  ORDER BY array_position(ARRAY['NO_IDENTITY', 'NO_DRIVER', 'NO_TRIPS_14D', 'TRIPS_NO_CLAIM'], s.limbo_stage);
END
$$;
COMMENT ON FUNCTION ops.limbo_stage_actions() IS
  'Per limbo stage other than OK (with leads): leads, and those a person can act on now (all NO_DRIVER and TRIPS_NO_CLAIM, the NO_IDENTITY leads awaiting review or missing every key, no NO_TRIPS_14D); read by cabinet-leads report.';

-- snapshot of sql/ops/ops.limbo_stage_counts.sql
-- ops.limbo_stage_counts: current number of leads per limbo stage as one jsonb object
-- with all five stages (0 when none), as ops.v_cabinet_leads_limbo counts them
-- (canon.limbo_week_counts_of_state: no pass over every lead). Recorded in the
-- run stats before and after each run (limbo_before, limbo_after). jit is off: compiling
-- the view's large expressions costs about a second and saves nothing on this query.
CREATE OR REPLACE FUNCTION ops.limbo_stage_counts()
RETURNS jsonb
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
  SELECT jsonb_object_agg(s.stage, coalesce(c.n, 0) ORDER BY s.ord)
  FROM unnest(ARRAY['NO_IDENTITY', 'NO_DRIVER', 'NO_TRIPS_14D', 'TRIPS_NO_CLAIM', 'OK']) WITH ORDINALITY s (stage, ord)
  LEFT JOIN (
    SELECT w.stage, sum(w.n) AS n
    FROM canon.limbo_week_counts_of_state(true) c
    CROSS JOIN LATERAL (VALUES ('NO_IDENTITY', c.limbo_no_identity), ('NO_DRIVER', c.limbo_no_driver),
                               ('NO_TRIPS_14D', c.limbo_no_trips_14d), ('TRIPS_NO_CLAIM', c.limbo_trips_no_claim),
                               ('OK', c.limbo_ok)) w (stage, n)
    GROUP BY w.stage
  ) c ON c.stage = s.stage
$$;
COMMENT ON FUNCTION ops.limbo_stage_counts() IS
  'Leads per limbo stage from ops.v_cabinet_leads_limbo, all five stages present, e.g. {"NO_IDENTITY": 3, "NO_DRIVER": 0, "NO_TRIPS_14D": 1, "TRIPS_NO_CLAIM": 0, "OK": 10}.';

-- snapshot of sql/ops/ops.limbo_week_counts.sql
-- ops.limbo_week_counts: leads per limbo stage for each lead week (week_start = ISO
-- Monday of lead_date), the one definition of the counts that snapshots store and alert
-- rules test. p_run_id NULL: live, the counts of ops.v_cabinet_leads_limbo without a
-- pass over every lead (canon.limbo_week_counts_of_state); a run id: the rows stored for that run in
-- ops.limbo_snapshot_weeks. PL/pgSQL so that only the branch taken is planned; jit off
-- (the live part's estimate over the lead view once triggered a JIT compilation that
-- took longer than the whole count). SECURITY DEFINER (it only reads; a fixed
-- search_path): the live counts read the canon caches and the lead rows, which a
-- cabinet_leads_reader may not read, for ops.limbo_alert_metrics (status, alerts).
CREATE OR REPLACE FUNCTION ops.limbo_week_counts(p_run_id bigint DEFAULT NULL)
RETURNS TABLE (
  week_start            date,
  leads                 integer,
  leads_with_identity   integer,
  leads_with_driver     integer,
  limbo_no_identity     integer,
  limbo_no_driver       integer,
  limbo_no_trips_14d    integer,
  limbo_trips_no_claim  integer,
  limbo_ok              integer
)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
#variable_conflict use_column
BEGIN
  IF p_run_id IS NULL THEN
    -- The view's counts without a pass over it: the stored state's counters corrected for
    -- the rows that may not be current (canon.limbo_week_counts_of_state); equal to a pass
    -- over ops.v_cabinet_leads_limbo grouped by week_start (tests:
    -- test/invariants/pipeline.test.ts, test/sql/canon.count_lead_state_changes.test.ts).
    RETURN QUERY SELECT * FROM canon.limbo_week_counts_of_state(true);
  ELSE
    RETURN QUERY
    SELECT w.week_start, w.leads, w.leads_with_identity, w.leads_with_driver, w.limbo_no_identity,
           w.limbo_no_driver, w.limbo_no_trips_14d, w.limbo_trips_no_claim, w.limbo_ok
    FROM ops.limbo_snapshot_weeks w
    WHERE w.run_id = p_run_id
    ORDER BY w.week_start;
  END IF;
END
$$;
COMMENT ON FUNCTION ops.limbo_week_counts(bigint) IS
  'Leads per limbo stage per lead week: live from ops.v_cabinet_leads_limbo (p_run_id NULL) or as stored in the snapshot of run p_run_id.';

-- snapshot of sql/ops/ops.not_this_driver.sql
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

-- snapshot of sql/ops/ops.oldest_actionable_leads.sql
-- ops.oldest_actionable_leads: the p_per_stage oldest leads (by lead_date, then lead_id) of
-- each stage that a person can act on now (as ops.limbo_stage_actions counts them), with
-- their limbo row's reason and stage_total, the actionable leads of the stage. Without a
-- pass over the limbo view: the NO_IDENTITY ones through their unmatched records
-- (canon.actionable_no_identity_leads); for NO_DRIVER and TRIPS_NO_CLAIM, the oldest
-- stored rows of the stage that are current (partial indexes on lead_date) merged with the
-- rows that may not be current (canon.lead_ids_maybe_not_current) as the view shows them.
-- Read by `cabinet-leads report`. SECURITY DEFINER (it only reads; a fixed search_path).
CREATE OR REPLACE FUNCTION ops.oldest_actionable_leads(p_per_stage integer)
RETURNS TABLE (limbo_stage text, lead_id integer, lead_source_pk text, lead_date date, age_days integer,
               lead_name text, reason_code text, limbo_reason_detail text, stage_total bigint)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
  v_ids integer[] := canon.lead_ids_maybe_not_current(true);
BEGIN
  RETURN QUERY
  WITH maybe_not_current AS MATERIALIZED (
    SELECT unnest(v_ids) AS lead_id
  ),
  stage_leads AS MATERIALIZED (
    SELECT x.limbo_stage, sum(x.leads)::bigint AS leads FROM canon.limbo_counts_delta(v_ids) x GROUP BY x.limbo_stage
  ),
  -- (the rows that may not be current as the view shows them, evaluated once for both stages)
  maybe_not_current_rows AS MATERIALIZED (
    SELECT c.lead_id, c.lead_date, c.limbo_stage FROM canon.v_cabinet_lead_status_current c
    WHERE c.lead_id IN (SELECT m.lead_id FROM maybe_not_current m) AND c.limbo_stage IN ('NO_DRIVER', 'TRIPS_NO_CLAIM')
  ),
  no_identity AS MATERIALIZED (
    SELECT a.lead_id, a.lead_date FROM canon.actionable_no_identity_leads(v_ids) a
  ),
  -- (the stage written out in each branch, so that its partial index is used)
  picked AS (
    (SELECT 'NO_IDENTITY'::text AS limbo_stage, n.lead_id, n.lead_date, (SELECT count(*) FROM no_identity) AS stage_total
     FROM no_identity n
     ORDER BY n.lead_date, n.lead_id
     LIMIT p_per_stage)
    UNION ALL
    (SELECT 'NO_DRIVER', x.lead_id, x.lead_date, (SELECT t.leads FROM stage_leads t WHERE t.limbo_stage = 'NO_DRIVER')
     FROM ((SELECT s.lead_id, s.lead_date FROM canon_internal.cabinet_lead_state s
            WHERE s.limbo_stage = 'NO_DRIVER' AND NOT EXISTS (SELECT 1 FROM maybe_not_current m WHERE m.lead_id = s.lead_id)
            ORDER BY s.lead_date, s.lead_id
            LIMIT p_per_stage)
           UNION ALL
           SELECT r.lead_id, r.lead_date FROM maybe_not_current_rows r WHERE r.limbo_stage = 'NO_DRIVER') x
     ORDER BY x.lead_date, x.lead_id
     LIMIT p_per_stage)
    UNION ALL
    (SELECT 'TRIPS_NO_CLAIM', x.lead_id, x.lead_date, (SELECT t.leads FROM stage_leads t WHERE t.limbo_stage = 'TRIPS_NO_CLAIM')
     FROM ((SELECT s.lead_id, s.lead_date FROM canon_internal.cabinet_lead_state s
            WHERE s.limbo_stage = 'TRIPS_NO_CLAIM' AND NOT EXISTS (SELECT 1 FROM maybe_not_current m WHERE m.lead_id = s.lead_id)
            ORDER BY s.lead_date, s.lead_id
            LIMIT p_per_stage)
           UNION ALL
           SELECT r.lead_id, r.lead_date FROM maybe_not_current_rows r WHERE r.limbo_stage = 'TRIPS_NO_CLAIM') x
     ORDER BY x.lead_date, x.lead_id
     LIMIT p_per_stage)
  )
  SELECT p.limbo_stage, l.lead_id, l.lead_source_pk, l.lead_date, canon.business_today() - l.lead_date,
         l.lead_name, l.reason_code, l.limbo_reason_detail, p.stage_total
  FROM picked p
  CROSS JOIN LATERAL (SELECT v.* FROM ops.v_cabinet_leads_limbo v WHERE v.lead_id = p.lead_id) l
  ORDER BY array_position(ARRAY['NO_IDENTITY', 'NO_DRIVER', 'NO_TRIPS_14D', 'TRIPS_NO_CLAIM'], p.limbo_stage),
           l.lead_date, l.lead_id;
END
$$;
COMMENT ON FUNCTION ops.oldest_actionable_leads(integer) IS
  'The p_per_stage oldest leads of each stage a person can act on now (NO_IDENTITY awaiting review or missing every key, NO_DRIVER, TRIPS_NO_CLAIM), with their limbo reason and the stage''s actionable total; read by cabinet-leads report.';

-- snapshot of sql/ops/ops.preview_links.sql
-- ops.preview_links: what the current matching decisions would do to the leads of a scope,
-- against what is stored, without writing: `cabinet-leads reconcile --preview`, or in psql
--   SELECT * FROM ops.preview_links(p_days_back => 30);
-- Every lead key of the scope (lead_date >= business today - p_days_back, its first row
-- standing for its duplicates, as canon.select_lead_batch takes it) is decided as a run
-- decides it: canon.lead_decisions, then canon.probabilistic_decisions for the leads the
-- rules leave NO_CANDIDATES or WEAK_MATCH_ONLY (labels and deleted drivers are theirs to
-- apply). A person's decision is never re-decided: a manual link (ops.resolve_lead) and an
-- IGNORED lead are left out. One row per lead whose link would differ: add (a link where
-- there is none), remove (a stored link the decisions would not make), change (another
-- person's driver, rule, score or confidence). a_run_would_apply says whether the runs of
-- this scope would make it: a run links the leads it evaluates (never evaluated, or OPEN
-- and due for a retry) and never removes or changes a stored link; with p_only_limbo a
-- NO_DRIVER lead's person gets the decided driver when that driver has no person. Leads
-- and drivers as the last run keyed them (a run refreshes both first). Set-based; one
-- pass of the decision functions over the scope. SECURITY DEFINER: a reader may call it
-- (it only reads; a fixed search_path, every name qualified).
CREATE OR REPLACE FUNCTION ops.preview_links(p_days_back integer DEFAULT 30, p_only_limbo boolean DEFAULT false)
RETURNS TABLE (
  lead_id integer,
  lead_source_pk text,
  lead_date date,
  change_kind text,
  a_run_would_apply boolean,
  stored_state text,
  stored_reason_code text,
  stored_driver_id text,
  stored_match_rule text,
  stored_match_score numeric,
  stored_confidence_level text,
  stored_fs_version integer,
  proposed_driver_id text,
  proposed_match_rule text,
  proposed_match_score numeric,
  proposed_confidence_level text,
  proposed_fs_version integer,
  proposed_reason_code text,
  settled_claims text,
  why text
)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
  v_scope_from date;
BEGIN
  IF p_days_back IS NULL OR p_days_back < 0 OR p_days_back > 36500 THEN
    RAISE EXCEPTION 'invalid days_back %: expected an integer from 0 to 36500', coalesce(p_days_back::text, 'NULL')
      USING ERRCODE = '22023';
  END IF;
  IF p_only_limbo IS NULL THEN
    RAISE EXCEPTION 'invalid only_limbo NULL: expected true or false' USING ERRCODE = '22023';
  END IF;
  v_scope_from := canon.business_today() - p_days_back;

  RETURN QUERY
  -- SCOPE: one row per lead key, its first row of the scope (as a run's batch takes it).
  WITH scope AS MATERIALIZED (
    SELECT k.lead_source_pk, min(k.lead_id) AS lead_id, (array_agg(k.lead_date ORDER BY k.lead_id))[1] AS lead_date
    FROM canon_internal.lead_keys k
    WHERE k.lead_date >= v_scope_from
    GROUP BY k.lead_source_pk
  ),
  -- STORED: the lead's link (its person's driver) or unmatched row.
  stored AS MATERIALIZED (
    SELECT s.*, l.person_key, l.match_rule, l.match_score, l.confidence_level,
           CASE WHEN l.match_rule = 'R4_PROBABILISTIC' THEN (l.evidence->>'fs_version')::integer END AS fs_version,
           (l.match_rule = 'MANUAL_RESOLUTION' OR l.evidence->>'decided_by' = 'manual') AS manual,
           u.status, u.reason_code, u.retry_due, pd.driver_id
    FROM scope s
    LEFT JOIN canon.identity_links l
      ON l.source_table = 'module_ct_cabinet_leads' AND l.source_pk = s.lead_source_pk
    LEFT JOIN canon.identity_unmatched u
      ON u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = s.lead_source_pk
    LEFT JOIN canon.v_person_driver pd ON pd.person_key = l.person_key
  ),
  -- A person decided these: a manual link, an IGNORED lead. Never re-decided.
  considered AS MATERIALIZED (
    SELECT st.* FROM stored st
    WHERE NOT coalesce(st.manual, false) AND st.status IS DISTINCT FROM 'IGNORED'
  ),
  -- DECISIONS: the rules, then the probabilistic tier on what they leave behind.
  rules AS MATERIALIZED (
    SELECT d.lead_id, d.decision, d.driver_id, d.match_rule, d.match_score, d.confidence_level
    FROM canon.lead_decisions(ARRAY(SELECT c.lead_id FROM considered c)) d
  ),
  fs AS MATERIALIZED (
    SELECT f.lead_id, f.outcome, f.driver_id, f.probability, f.fs_version
    FROM canon.probabilistic_decisions(ARRAY(
           SELECT r.lead_id FROM rules r WHERE r.decision IN ('NO_CANDIDATES', 'WEAK_MATCH_ONLY'))) f
  ),
  -- (score and confidence of a tier link exactly as canon.link_probabilistic writes them)
  proposed AS (
    SELECT c.*,
           CASE WHEN r.decision = 'MATCH' THEN r.driver_id WHEN f.outcome = 'LINK' THEN f.driver_id END AS p_driver,
           CASE WHEN r.decision = 'MATCH' THEN r.match_rule WHEN f.outcome = 'LINK' THEN 'R4_PROBABILISTIC' END AS p_rule,
           (CASE WHEN r.decision = 'MATCH' THEN r.match_score WHEN f.outcome = 'LINK' THEN round(f.probability * 100, 2) END)::numeric(5,2) AS p_score,
           CASE WHEN r.decision = 'MATCH' THEN r.confidence_level
                WHEN f.outcome = 'LINK' THEN CASE WHEN f.probability >= 0.9999 THEN 'HIGH' ELSE 'MEDIUM' END END AS p_confidence,
           f.fs_version AS p_fs_version,
           CASE WHEN r.decision = 'MATCH' OR f.outcome = 'LINK' THEN NULL
                WHEN f.outcome = 'REVIEW' THEN 'PROBABLE_MATCH' ELSE r.decision END AS p_reason
    FROM considered c
    JOIN rules r ON r.lead_id = c.lead_id
    LEFT JOIN fs f ON f.lead_id = c.lead_id
  ),
  compared AS (
    SELECT p.*, dp.person_key AS p_person,
           CASE
             WHEN p.person_key IS NULL AND p.p_driver IS NOT NULL THEN 'add'
             WHEN p.person_key IS NOT NULL AND p.p_driver IS NULL THEN 'remove'
             -- the same person (any of its drivers) by the same rule, score and confidence: no change
             WHEN p.person_key IS NOT NULL
                  AND (dp.person_key IS DISTINCT FROM p.person_key OR p.p_rule IS DISTINCT FROM p.match_rule
                       OR p.p_score IS DISTINCT FROM p.match_score OR p.p_confidence IS DISTINCT FROM p.confidence_level) THEN 'change'
           END AS kind
    FROM proposed p
    LEFT JOIN canon.identity_links dp ON dp.source_table = 'drivers' AND dp.source_pk = p.p_driver
  ),
  judged AS (
    SELECT c.*,
           -- the NO_DRIVER repair of an only-limbo run: the person gets a rules' driver that has none
           (c.kind = 'change' AND c.driver_id IS NULL AND c.p_person IS NULL AND c.p_rule <> 'R4_PROBABILISTIC') AS no_driver_repair,
           CASE WHEN c.kind = 'add' THEN c.status IS NULL OR c.status = 'RESOLVED' OR c.retry_due
                ELSE p_only_limbo AND c.kind = 'change' AND c.driver_id IS NULL AND c.p_person IS NULL AND c.p_rule <> 'R4_PROBABILISTIC'
           END AS applies,
           st.settled
    FROM compared c
    -- money paid or rejected on the lead: a person must act before its link can go
    LEFT JOIN LATERAL (
      SELECT string_agg(format('M%s %s', cl.milestone, cl.status), ', ' ORDER BY cl.milestone) AS settled
      FROM canon.claims_yango_cabinet_14d cl
      WHERE cl.lead_source_pk = c.lead_source_pk AND cl.status IN ('paid', 'rejected')
    ) st ON true
    WHERE c.kind IS NOT NULL
  )
  SELECT j.lead_id, j.lead_source_pk, j.lead_date, j.kind, j.applies,
         CASE WHEN j.person_key IS NOT NULL THEN 'LINKED' WHEN j.status = 'OPEN' THEN 'OPEN' ELSE 'NOT_EVALUATED' END,
         CASE WHEN j.person_key IS NULL AND j.status = 'OPEN' THEN j.reason_code END,
         j.driver_id, j.match_rule, j.match_score, j.confidence_level, j.fs_version,
         j.p_driver, j.p_rule, j.p_score, j.p_confidence, j.p_fs_version, j.p_reason, j.settled,
         CASE j.kind
           WHEN 'add' THEN
             CASE WHEN j.status = 'OPEN' AND j.retry_due THEN format('OPEN (%s), due for a retry: the next run links it', j.reason_code)
                  WHEN j.status = 'OPEN' THEN format('OPEN (%s), not due for a retry: runs leave it until a driver sharing its phone, plate or licence, a matching rule or parameter, or the lead row changes', j.reason_code)
                  ELSE 'not evaluated yet: the next run links it' END
           WHEN 'remove' THEN format('linked by %s (%s); the decisions now leave it %s', j.match_rule, j.match_score, j.p_reason)
           ELSE concat_ws(', ',
                  CASE WHEN j.p_person IS DISTINCT FROM j.person_key THEN format('driver %s → %s', coalesce(j.driver_id, 'none'), j.p_driver) END,
                  CASE WHEN j.p_rule IS DISTINCT FROM j.match_rule THEN format('rule %s → %s', j.match_rule, j.p_rule) END,
                  CASE WHEN j.p_score IS DISTINCT FROM j.match_score THEN format('score %s → %s', j.match_score, j.p_score) END,
                  CASE WHEN j.p_confidence IS DISTINCT FROM j.confidence_level THEN format('confidence %s → %s', j.confidence_level, j.p_confidence) END)
         END
         || CASE
              WHEN j.kind = 'add' THEN ''
              WHEN j.applies THEN ': its person has no driver (NO_DRIVER), the next run (only-limbo) gives it this driver; the lead''s link stays as it is'
              WHEN j.no_driver_repair THEN ': its person has no driver (NO_DRIVER), a run with only-limbo gives it this driver; the lead''s link stays as it is'
              ELSE ': runs keep stored links (unlink-lead, and the next run decides it again)'
                   || CASE WHEN j.settled IS NOT NULL THEN format('; settled claims (%s): unlink-lead refuses until finance changes them', j.settled) ELSE '' END
            END
  FROM judged j
  ORDER BY j.kind, j.applies DESC, j.lead_date DESC, j.lead_source_pk;
END
$$;
COMMENT ON FUNCTION ops.preview_links(integer, boolean) IS
  'Preview of the current matching decisions on a scope (lead_date >= business today - p_days_back), writing nothing: one row per lead whose link would be added, removed or changed against what is stored, with stored and proposed driver, rule, score, confidence and fs_version, a_run_would_apply (runs only add links to the leads they evaluate; they never remove or change one) and why. Manual links and IGNORED leads are left out. SECURITY DEFINER: readers may call it.';

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
  v_match jsonb;
  v_pending_cleared integer;
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
  IF NOT canon.try_job_lock() THEN
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

  -- Steps 3-8: all or nothing. Each step is a function of its own; its stats go under its
  -- name, its time to stats.steps (canon.step_done).
  BEGIN
    -- Step 3: the upstream tables have what the product reads.
    v_t := clock_timestamp();
    v_stats := v_stats || jsonb_build_object('source_contract_columns', canon.check_source_contract());
    v_steps := v_steps || canon.step_done('check_source_contract', v_t);

    -- Limbo is counted once per run: "before" is the snapshot of the previous completed run
    -- (live counts only when there is none yet), "after" is this run's own in step 8.
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

    -- Step 4: the driver index, and the unmatched leads its changes make due.
    v_t := clock_timestamp();
    v_stats := v_stats || jsonb_build_object('driver_index', canon.refresh_driver_index(v_run_id));
    v_steps := v_steps || canon.step_done('refresh_driver_index', v_t);
    PERFORM canon.failpoint('after_refresh_driver_index');
    v_t := clock_timestamp();
    v_match := canon.mark_retries_due(v_run_id);
    v_steps := v_steps || canon.step_done('mark_retries_due', v_t);

    -- Step 5: every lead row written since the last read keyed; the batch.
    v_t := clock_timestamp();
    v_step_out := canon.key_changed_leads(v_run_id);
    v_match := v_match || jsonb_build_object(
      'lead_keys', v_step_out,
      'leads_keyed', v_step_out->'lead_rows_written',
      'leads_without_lead_created_at', v_step_out->'lead_rows_undated',
      'leads_with_oversized_key', v_step_out->'leads_with_oversized_key');
    v_steps := v_steps || canon.step_done('key_changed_leads', v_t);
    v_t := clock_timestamp();
    v_step_out := canon.select_lead_batch(v_scope_from, p_limit, p_only_limbo);
    v_match := v_match || (v_step_out - 'pending_cleared');
    v_pending_cleared := (v_step_out->>'pending_cleared')::integer;
    v_steps := v_steps || canon.step_done('select_lead_batch', v_t);

    -- Step 6: the batch decided and linked.
    v_t := clock_timestamp();
    v_step_out := canon.link_decisions(v_run_id, p_only_limbo);
    v_match := v_match || (v_step_out - 'pending_cleared')
               || jsonb_build_object('pending_flags_cleared', v_pending_cleared + (v_step_out->>'pending_cleared')::integer);
    v_stats := v_stats || jsonb_build_object('match', v_match);
    v_steps := v_steps || canon.step_done('link_decisions', v_t);
    -- Step 6b: the probabilistic tier on the leads the rules left behind.
    v_t := clock_timestamp();
    v_stats := v_stats || jsonb_build_object('probabilistic', canon.link_probabilistic(v_run_id));
    v_steps := v_steps || canon.step_done('link_probabilistic', v_t);
    PERFORM canon.failpoint('after_match');
    -- A large batch (backfill) changes these tables faster than autovacuum analyses
    -- them; the next statements would be planned for the tables as they were.
    IF (v_match->>'leads_evaluated')::integer >= 5000 THEN
      ANALYZE canon.identity_links, canon.identity_unmatched, canon_internal.lead_keys, canon.identity_registry;
    END IF;

    -- Step 7: the lead state brought up to date, the missing claims generated.
    v_t := clock_timestamp();
    v_stats := v_stats || jsonb_build_object('claims', canon.generate_cabinet_claims(v_run_id, v_scope_from, p_only_limbo));
    v_steps := v_steps || canon.step_done('generate_cabinet_claims', v_t);
    PERFORM canon.failpoint('after_claims');

    -- Step 8: the limbo snapshot and the alert rules.
    v_t := clock_timestamp();
    v_step_out := ops.snapshot_limbo(v_run_id);
    v_stats := v_stats || jsonb_build_object('snapshot', v_step_out, 'limbo_after', v_step_out->'stages');
    v_steps := v_steps || canon.step_done('snapshot_limbo', v_t);
    PERFORM canon.failpoint('after_snapshot');

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
    'durations_ms', (SELECT coalesce(jsonb_object_agg(s->>'step', s->'ms'), '{}'::jsonb)
                     FROM jsonb_array_elements(v_steps) s)
                    || jsonb_build_object(
                         'match', (SELECT sum((s->>'ms')::numeric) FROM jsonb_array_elements(v_steps) s
                                   WHERE s->>'step' IN ('mark_retries_due', 'key_changed_leads', 'select_lead_batch', 'link_decisions')),
                         'total', round((extract(epoch FROM clock_timestamp() - v_t0) * 1000)::numeric, 1)));
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

-- snapshot of sql/ops/ops.recount_lead_state_counts.sql
-- ops.recount_lead_state_counts: counts the stored lead state again into
-- canon_internal.cabinet_lead_state_counts (canon.v_cabinet_lead_state_counted: what the
-- trigger canon.count_lead_state_changes keeps up to date). For the repair of a
-- LEAD_STATE_COUNTS violation of ops.check_invariants, which only writes that bypassed the
-- trigger can cause (session_replication_role = replica, a disabled trigger):
--   SELECT ops.recount_lead_state_counts();
-- Blocks writers of the state while it counts (SHARE lock: a write cannot slip between the
-- count and the counters). Returns the number of counter rows written.
CREATE OR REPLACE FUNCTION ops.recount_lead_state_counts()
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_rows bigint;
BEGIN
  LOCK TABLE canon_internal.cabinet_lead_state IN SHARE MODE;
  DELETE FROM canon_internal.cabinet_lead_state_counts;
  INSERT INTO canon_internal.cabinet_lead_state_counts (
    lead_date, limbo_stage, with_identity, with_driver, with_trips, with_rule, window_days,
    reached_m1, reached_m5, reached_m25, has_claim_m1, has_claim_m5, has_claim_m25,
    leads, trips, m1_amount, m5_amount, m25_amount, paid_claims, paid_amount)
  SELECT c.lead_date, c.limbo_stage, c.with_identity, c.with_driver, c.with_trips, c.with_rule, c.window_days,
         c.reached_m1, c.reached_m5, c.reached_m25, c.has_claim_m1, c.has_claim_m5, c.has_claim_m25,
         c.leads, c.trips, c.m1_amount, c.m5_amount, c.m25_amount, c.paid_claims, c.paid_amount
  FROM canon.v_cabinet_lead_state_counted c;
  GET DIAGNOSTICS v_rows = ROW_COUNT;
  RETURN v_rows;
END
$$;
COMMENT ON FUNCTION ops.recount_lead_state_counts() IS
  'Recounts canon_internal.cabinet_lead_state_counts from the stored lead state (repair of a LEAD_STATE_COUNTS violation); returns counter rows written.';

-- snapshot of sql/ops/ops.refresh_cabinet_lead_state.sql
-- ops.refresh_cabinet_lead_state: re-evaluates stored lead state now, for people and the
-- ops.* tools (the pipeline does it on every run):
--   SELECT ops.refresh_cabinet_lead_state(ARRAY['lead-key']);  -- these keys + every row or key marked
--   SELECT ops.refresh_cabinet_lead_state();                  -- every lead (a rebuild; minutes at 1M leads)
-- Lead rows written since the last read are keyed first (canon.key_changed_leads), so
-- their marks are evaluated too. It waits for the job lock (at most lock_timeout, 30 s by default),
-- so it never runs inside a pipeline run. Generates no claim: that is the run's job.
CREATE OR REPLACE FUNCTION ops.refresh_cabinet_lead_state(p_lead_keys text[] DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '30s'
-- keying new lead rows drops temp tables "IF EXISTS": no NOTICE for that in psql
SET client_min_messages = warning
AS $$
DECLARE
  v_ids integer[];
  v_out jsonb;
BEGIN
  PERFORM canon.take_job_lock();
  -- Lead rows written since the last read are keyed (and marked) first.
  PERFORM canon.key_changed_leads(NULL);
  v_ids := canon.take_lead_state_marks();
  IF p_lead_keys IS NULL THEN
    v_ids := ARRAY(
      SELECT l.id FROM public.module_ct_cabinet_leads l WHERE isfinite(l.lead_created_at)
      UNION
      SELECT s.lead_id FROM canon_internal.cabinet_lead_state s);
  ELSE
    v_ids := v_ids || canon.lead_ids_of_keys(p_lead_keys);
  END IF;

  v_out := canon.refresh_lead_state(NULL, v_ids);
  PERFORM canon.clear_lead_state_marks();
  RETURN v_out || jsonb_build_object('scope', CASE WHEN p_lead_keys IS NULL THEN 'all' ELSE 'keys' END);
END
$$;
COMMENT ON FUNCTION ops.refresh_cabinet_lead_state(text[]) IS
  'Re-evaluates the stored state of the given lead keys (and of every key marked dirty), or of every lead when called without argument. Returns {evaluated, written, removed, trip_rows_read, scope}.';

-- snapshot of sql/ops/ops.repair_caches.sql
-- ops.repair_caches: brings every drifted cache back to its live definition, rewriting
-- only what drifted (what ops.check_caches reports; `cabinet-leads doctor --repair`):
-- lead keys re-keyed, never-evaluated keys listed, retry marks set, the driver index
-- reconciled in full (re-normalising only the drivers whose values differ), its odd-timestamp
-- counts left for the next run to count again, marked and
-- drifted lead state rows re-evaluated and their marks cleared, the state counters
-- recounted when they are off. Takes the job lock (waits at most lock_timeout, 30 s), so
-- it never runs inside a pipeline run. Generates no claim: the next run does. Returns what
-- it repaired per cache.
CREATE OR REPLACE FUNCTION ops.repair_caches()
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '30s'
AS $$
DECLARE
  v_keys integer;
  v_listed integer;
  v_retry integer;
  v_drivers jsonb;
  v_state jsonb;
  v_counts boolean;
  v_odd boolean;
BEGIN
  PERFORM canon.take_job_lock();

  v_keys := canon.refresh_lead_keys(ARRAY(SELECT d.lead_id FROM canon.lead_keys_drift() d));

  INSERT INTO canon_internal.lead_keys_pending (lead_id, lead_date)
  SELECT k.lead_id, k.lead_date FROM canon.never_evaluated_drift() d JOIN canon_internal.lead_keys k ON k.lead_id = d.lead_id
  ON CONFLICT (lead_id) DO NOTHING;
  GET DIAGNOSTICS v_listed = ROW_COUNT;

  UPDATE canon.identity_unmatched u SET retry_due = true
  FROM canon.retry_due_drift() d
  WHERE u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = d.lead_source_pk AND u.status = 'OPEN';
  GET DIAGNOSTICS v_retry = ROW_COUNT;

  IF EXISTS (SELECT 1 FROM canon.driver_index_drift()) THEN
    UPDATE canon_internal.driver_index_state SET last_full_at = NULL;
    v_drivers := canon.refresh_driver_index(NULL);
    -- the check that follows probes the tier's block indexes once per OPEN lead
    -- (RETRY_DUE_MARKED): each probe would read their pending lists whole
    PERFORM canon.flush_driver_index_keys();
  END IF;
  v_odd := EXISTS (SELECT 1 FROM canon.driver_odd_counts_drift());
  IF v_odd THEN
    UPDATE canon_internal.driver_index_state SET odd_versions = NULL; -- the next run counts every row
  END IF;

  v_state := canon.refresh_lead_state(NULL, canon.take_lead_state_marks() || ARRAY(SELECT d.lead_id FROM canon.lead_state_drift() d));
  PERFORM canon.clear_lead_state_marks();

  v_counts := EXISTS (SELECT 1 FROM ops.check_invariants() c WHERE c.invariant = 'LEAD_STATE_COUNTS' AND c.violations > 0);
  IF v_counts THEN
    PERFORM ops.recount_lead_state_counts();
  END IF;

  RETURN jsonb_build_object(
    'lead_keys_written', v_keys,
    'never_evaluated_listed', v_listed,
    'retries_marked_due', v_retry,
    'driver_index', v_drivers,
    'lead_state', v_state,
    'state_counts_recounted', v_counts,
    'driver_odd_counts_reset', v_odd);
END
$$;
COMMENT ON FUNCTION ops.repair_caches() IS
  'Repairs what ops.check_caches finds (and the state counters), rewriting only what drifted; takes the job lock. Returns what it repaired per cache. CLI: cabinet-leads doctor --repair.';

-- snapshot of sql/ops/ops.repair_lead_keys.sql
-- ops.repair_lead_keys: brings every stored lead key to canon.lead_source_pk, in one
-- transaction: keys written under an older definition (btrim of spaces only kept a TAB,
-- an NBSP, a zero width space) or by hand. It re-keyed the development databases once; doctor's
-- LEAD_KEY_BLANK_ENDS names what it would repair:
--   SELECT jsonb_pretty(ops.repair_lead_keys('why: ...'));
-- A stale key K becomes canon.lead_source_pk(K, NULL) (a key of blanks only: the id of its
-- first lead row). Keys that become one are one lead (the S/ 320 case: 'NB-1' and
-- 'NB-1<TAB>' both linked, both claimed), merged so that nothing is lost:
--   links      one per lead: the surviving link is the one with the most settled claims,
--              then the key already right, then the earliest; the others are removed
--              (UNLINK rows in canon.identity_audit, with the note), and so is a person
--              left without any link; re-keyed links are RELINK rows there;
--   claims     one per (lead, milestone): paid first, then rejected, generated, expected,
--              expired, then the surviving link's; every other claim is set aside in
--              canon.claims_duplicates as it was (ops.v_cabinet_claims_duplicated), never
--              dropped, and its settled record follows it;
--   unmatched  one row per lead: the surviving link's, else an IGNORED one, else the
--              latest attempt; OPEN on a linked lead becomes RESOLVED;
--   origins, canon_internal.lead_keys, canon_internal.cabinet_lead_state, the dirty keys and the settled
--              records re-keyed; the merged leads marked dirty (re-evaluated by the next
--              run); a lead row left with a key never evaluated is listed as pending.
-- Takes the job lock (waits up to 30 s). Recorded as a run (job_name repair_lead_keys)
-- when it changes anything; returns what it did.
CREATE OR REPLACE FUNCTION ops.repair_lead_keys(p_note text DEFAULT 'lead keys brought to canon.lead_source_pk (blanks at the ends of external_id)')
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '30s'
SET client_min_messages = warning
AS $$
DECLARE
  v_keys integer;
  v_left integer;
  v_run_id bigint;
  v_audit_note text := current_setting('cabinet.audit_note', true);
  v_audit_details text := current_setting('cabinet.audit_details', true);
  v_orphans_claimed text;
  v_n jsonb := '{}'::jsonb;
  v_count integer;
  v_stats jsonb;
BEGIN
  PERFORM canon.require_note(p_note, 'say why the lead keys are repaired');

  -- GUARD: never in the middle of a pipeline run or an identity change.
  PERFORM canon.take_job_lock();

  -- STALE KEYS: every stored lead key that is not its own key, and the key it becomes.
  DROP TABLE IF EXISTS pg_temp.lead_rekey;
  CREATE TEMP TABLE lead_rekey ON COMMIT DROP AS
  WITH stale (old_key) AS (
    SELECT l.source_pk FROM canon.identity_links l
    WHERE l.source_table = 'module_ct_cabinet_leads' AND canon.lead_source_pk(l.source_pk, NULL) IS DISTINCT FROM l.source_pk
    UNION
    SELECT u.source_pk FROM canon.identity_unmatched u
    WHERE u.source_table = 'module_ct_cabinet_leads' AND canon.lead_source_pk(u.source_pk, NULL) IS DISTINCT FROM u.source_pk
    UNION
    SELECT o.origin_source_id FROM canon.identity_origin o
    WHERE canon.lead_source_pk(o.origin_source_id, NULL) IS DISTINCT FROM o.origin_source_id
    UNION
    SELECT c.lead_source_pk FROM canon.claims_yango_cabinet_14d c
    WHERE canon.lead_source_pk(c.lead_source_pk, NULL) IS DISTINCT FROM c.lead_source_pk
    UNION
    -- (the record of a claim deleted or unsettled is history: it keeps the key it had)
    SELECT s.lead_source_pk FROM canon_internal.claims_settled s
    WHERE s.unsettled_at IS NULL AND canon.lead_source_pk(s.lead_source_pk, NULL) IS DISTINCT FROM s.lead_source_pk
    UNION
    SELECT k.lead_source_pk FROM canon_internal.lead_keys k
    WHERE canon.lead_source_pk(k.lead_source_pk, NULL) IS DISTINCT FROM k.lead_source_pk
    UNION
    SELECT s.lead_source_pk FROM canon_internal.cabinet_lead_state s
    WHERE canon.lead_source_pk(s.lead_source_pk, NULL) IS DISTINCT FROM s.lead_source_pk
    UNION
    SELECT d.lead_source_pk FROM canon_internal.cabinet_lead_state_dirty d
    WHERE canon.lead_source_pk(d.lead_source_pk, NULL) IS DISTINCT FROM d.lead_source_pk
  )
  SELECT s.old_key,
         coalesce(canon.lead_source_pk(s.old_key, NULL),
                  -- blanks only: the lead rows stored under it are keyed by their ids now;
                  -- what was keyed under it goes to the first of them
                  (SELECT min(x.lead_id)::text
                   FROM (SELECT k.lead_id FROM canon_internal.lead_keys k WHERE k.lead_source_pk = s.old_key
                         UNION ALL
                         SELECT st.lead_id FROM canon_internal.cabinet_lead_state st WHERE st.lead_source_pk = s.old_key) x)) AS new_key
  FROM stale s;
  -- (a key of blanks only that no lead row carries any more cannot be placed: left as it is)
  DELETE FROM pg_temp.lead_rekey r WHERE r.new_key IS NULL;
  GET DIAGNOSTICS v_left = ROW_COUNT;
  SELECT count(*) INTO v_keys FROM pg_temp.lead_rekey;
  IF v_keys = 0 THEN
    RETURN jsonb_build_object('keys_rekeyed', 0, 'keys_left', v_left, 'run_id', NULL);
  END IF;
  CREATE INDEX ON pg_temp.lead_rekey (old_key);
  ANALYZE pg_temp.lead_rekey;

  -- Every key of a lead after the repair: its stale keys and the key itself.
  DROP TABLE IF EXISTS pg_temp.lead_rekey_members;
  CREATE TEMP TABLE lead_rekey_members ON COMMIT DROP AS
  SELECT r.new_key, r.old_key AS lead_key FROM pg_temp.lead_rekey r
  UNION
  SELECT r.new_key, r.new_key FROM pg_temp.lead_rekey r;
  ANALYZE pg_temp.lead_rekey_members;

  INSERT INTO canon.ingestion_runs (job_name, status, source_tables, params, completed_at)
  VALUES ('repair_lead_keys', 'COMPLETED', '["module_ct_cabinet_leads"]'::jsonb, jsonb_build_object('note', p_note), clock_timestamp())
  RETURNING id INTO v_run_id;
  -- The identity audit rows written by trigger carry the note and this run.
  PERFORM set_config('cabinet.audit_note', p_note, true),
          set_config('cabinet.audit_details', jsonb_build_object('repair', 'ops.repair_lead_keys', 'repair_run_id', v_run_id)::text, true);

  -- LOCKS on the rows decided on: a claim finance marks paid meanwhile is decided on as
  -- paid (the statements below read what was committed before the locks were granted).
  PERFORM 1 FROM canon.claims_yango_cabinet_14d c JOIN pg_temp.lead_rekey_members m ON c.lead_source_pk = m.lead_key
  FOR UPDATE OF c;
  PERFORM 1 FROM canon.identity_links l JOIN pg_temp.lead_rekey_members m
    ON l.source_table = 'module_ct_cabinet_leads' AND l.source_pk = m.lead_key
  FOR UPDATE OF l;
  PERFORM 1 FROM canon.identity_unmatched u JOIN pg_temp.lead_rekey_members m
    ON u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = m.lead_key
  FOR UPDATE OF u;

  -- DECISIONS: the surviving link and the kept claim of each lead, the kept unmatched row.
  DROP TABLE IF EXISTS pg_temp.lead_rekey_links;
  CREATE TEMP TABLE lead_rekey_links ON COMMIT DROP AS
  SELECT m.new_key, l.id AS link_id, l.source_pk, l.person_key,
         row_number() OVER (PARTITION BY m.new_key
                            ORDER BY st.settled DESC, (l.source_pk = m.new_key) DESC, l.linked_at, l.source_pk) AS rank
  FROM pg_temp.lead_rekey_members m
  JOIN canon.identity_links l ON l.source_table = 'module_ct_cabinet_leads' AND l.source_pk = m.lead_key
  CROSS JOIN LATERAL (
    SELECT count(*) AS settled FROM canon.claims_yango_cabinet_14d c
    WHERE c.lead_source_pk = l.source_pk AND c.status IN ('paid', 'rejected')
  ) st;

  DROP TABLE IF EXISTS pg_temp.lead_rekey_claims;
  CREATE TEMP TABLE lead_rekey_claims ON COMMIT DROP AS
  SELECT m.new_key, c.lead_source_pk AS claimed_as, c.milestone,
         row_number() OVER (PARTITION BY m.new_key, c.milestone
                            ORDER BY array_position(ARRAY['paid', 'rejected', 'generated', 'expected', 'expired'], c.status),
                                     (c.lead_source_pk = s.source_pk) DESC NULLS LAST, (c.lead_source_pk = m.new_key) DESC,
                                     c.generated_at NULLS LAST, c.created_at, c.lead_source_pk) AS rank
  FROM pg_temp.lead_rekey_members m
  JOIN canon.claims_yango_cabinet_14d c ON c.lead_source_pk = m.lead_key
  LEFT JOIN pg_temp.lead_rekey_links s ON s.new_key = m.new_key AND s.rank = 1;

  DROP TABLE IF EXISTS pg_temp.lead_rekey_unmatched;
  CREATE TEMP TABLE lead_rekey_unmatched ON COMMIT DROP AS
  SELECT m.new_key, u.id AS unmatched_id, u.source_pk, s.link_id IS NOT NULL AS linked,
         row_number() OVER (PARTITION BY m.new_key
                            ORDER BY (u.source_pk = s.source_pk) DESC NULLS LAST, (u.status = 'IGNORED') DESC,
                                     (u.source_pk = m.new_key) DESC, u.last_attempt_at DESC, u.source_pk) AS rank
  FROM pg_temp.lead_rekey_members m
  JOIN canon.identity_unmatched u ON u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = m.lead_key
  LEFT JOIN pg_temp.lead_rekey_links s ON s.new_key = m.new_key AND s.rank = 1;

  -- KEY CACHES first: the triggers of the identity tables look lead rows up by key.
  -- (the lead rows of every merged lead: those re-keyed, and those already under its key)
  DROP TABLE IF EXISTS pg_temp.lead_rekey_rows;
  CREATE TEMP TABLE lead_rekey_rows (lead_id integer, lead_source_pk text, lead_date date) ON COMMIT DROP;
  WITH rekeyed AS (
    UPDATE canon_internal.lead_keys k SET lead_source_pk = canon.lead_source_pk(k.lead_source_pk, k.lead_id)
    FROM pg_temp.lead_rekey r
    WHERE k.lead_source_pk = r.old_key
    RETURNING k.lead_id, k.lead_source_pk, k.lead_date
  )
  INSERT INTO pg_temp.lead_rekey_rows SELECT * FROM rekeyed;
  GET DIAGNOSTICS v_count = ROW_COUNT;
  v_n := v_n || jsonb_build_object('lead_keys_rekeyed', v_count);
  INSERT INTO pg_temp.lead_rekey_rows
  SELECT k.lead_id, k.lead_source_pk, k.lead_date
  FROM (SELECT DISTINCT r.new_key FROM pg_temp.lead_rekey r) r
  JOIN canon_internal.lead_keys k ON k.lead_source_pk = r.new_key
  WHERE NOT EXISTS (SELECT 1 FROM pg_temp.lead_rekey_rows w WHERE w.lead_id = k.lead_id);

  UPDATE canon_internal.cabinet_lead_state s SET lead_source_pk = canon.lead_source_pk(s.lead_source_pk, s.lead_id)
  FROM pg_temp.lead_rekey r
  WHERE s.lead_source_pk = r.old_key;
  GET DIAGNOSTICS v_count = ROW_COUNT;
  v_n := v_n || jsonb_build_object('lead_state_rekeyed', v_count);

  -- CLAIMS: the duplicates set aside as they were, then removed; the kept ones re-keyed.
  -- A settled claim set aside or re-keyed keeps its record, stamped with this repair as why.
  PERFORM set_config('cabinet.settled_change_note', format('ops.repair_lead_keys (run %s): %s', v_run_id, p_note), true);
  INSERT INTO canon.claims_duplicates (
    lead_source_pk, milestone, claimed_as, kept_claimed_as, status, amount_expected, currency, person_key, driver_id,
    lead_date, generated_at, paid_at, run_id, claim_created_at, claim_updated_at, repair_run_id, note)
  SELECT r.new_key, c.milestone, c.lead_source_pk, kept.claimed_as, c.status, c.amount_expected, c.currency, c.person_key,
         c.driver_id, c.lead_date, c.generated_at, c.paid_at, c.run_id, c.created_at, c.updated_at, v_run_id, p_note
  FROM pg_temp.lead_rekey_claims r
  JOIN canon.claims_yango_cabinet_14d c ON c.lead_source_pk = r.claimed_as AND c.milestone = r.milestone
  JOIN pg_temp.lead_rekey_claims kept ON kept.new_key = r.new_key AND kept.milestone = r.milestone AND kept.rank = 1
  WHERE r.rank > 1;
  DELETE FROM canon.claims_yango_cabinet_14d c
  USING pg_temp.lead_rekey_claims r
  WHERE r.rank > 1 AND c.lead_source_pk = r.claimed_as AND c.milestone = r.milestone;
  GET DIAGNOSTICS v_count = ROW_COUNT;
  v_n := v_n || jsonb_build_object('claims_set_aside', v_count);
  UPDATE canon.claims_yango_cabinet_14d c SET lead_source_pk = r.new_key, updated_at = now()
  FROM pg_temp.lead_rekey_claims r
  WHERE r.rank = 1 AND r.claimed_as <> r.new_key AND c.lead_source_pk = r.claimed_as AND c.milestone = r.milestone;
  GET DIAGNOSTICS v_count = ROW_COUNT;
  v_n := v_n || jsonb_build_object('claims_rekeyed', v_count);

  -- LINKS: one per lead; a person left without any link goes too (no orphan persons).
  DELETE FROM canon.identity_links l
  USING pg_temp.lead_rekey_links r
  WHERE r.rank > 1 AND l.id = r.link_id;
  GET DIAGNOSTICS v_count = ROW_COUNT;
  v_n := v_n || jsonb_build_object('links_removed', v_count);
  DROP TABLE IF EXISTS pg_temp.lead_rekey_orphans;
  CREATE TEMP TABLE lead_rekey_orphans ON COMMIT DROP AS
  SELECT DISTINCT r.person_key
  FROM pg_temp.lead_rekey_links r
  WHERE r.rank > 1
    AND NOT EXISTS (SELECT 1 FROM canon.identity_links l WHERE l.person_key = r.person_key);
  SELECT string_agg(DISTINCT format('%s (claim %s M%s)', o.person_key, canon.show_blanks(c.lead_source_pk), c.milestone), ', ')
  INTO v_orphans_claimed
  FROM pg_temp.lead_rekey_orphans o
  JOIN canon.claims_yango_cabinet_14d c ON c.person_key = o.person_key;
  IF v_orphans_claimed IS NOT NULL THEN
    RAISE EXCEPTION 'lead keys not repaired: persons % would be left without any link but a kept claim names them', v_orphans_claimed
      USING ERRCODE = 'CL010',
            HINT = 'Link those persons to a driver, or decide which person the lead belongs to (ops.unlink_lead, ops.resolve_lead), then repair again.';
  END IF;
  DELETE FROM canon.identity_origin o USING pg_temp.lead_rekey_orphans x WHERE o.person_key = x.person_key;
  DELETE FROM canon.identity_registry p USING pg_temp.lead_rekey_orphans x WHERE p.person_key = x.person_key;
  GET DIAGNOSTICS v_count = ROW_COUNT;
  v_n := v_n || jsonb_build_object('persons_removed', v_count);
  UPDATE canon.identity_links l SET source_pk = r.new_key
  FROM pg_temp.lead_rekey_links r
  WHERE r.rank = 1 AND r.source_pk <> r.new_key AND l.id = r.link_id;
  GET DIAGNOSTICS v_count = ROW_COUNT;
  v_n := v_n || jsonb_build_object('links_rekeyed', v_count);

  -- UNMATCHED: one row per lead, never OPEN on a linked one.
  DELETE FROM canon.identity_unmatched u
  USING pg_temp.lead_rekey_unmatched r
  WHERE r.rank > 1 AND u.id = r.unmatched_id;
  GET DIAGNOSTICS v_count = ROW_COUNT;
  v_n := v_n || jsonb_build_object('unmatched_removed', v_count);
  UPDATE canon.identity_unmatched u
  SET source_pk = r.new_key,
      status = CASE WHEN r.linked AND u.status = 'OPEN' THEN 'RESOLVED' ELSE u.status END,
      resolved_at = CASE WHEN r.linked AND u.status = 'OPEN' THEN now() ELSE u.resolved_at END
  FROM pg_temp.lead_rekey_unmatched r
  WHERE r.rank = 1 AND u.id = r.unmatched_id
    AND (r.source_pk <> r.new_key OR (r.linked AND u.status = 'OPEN'));
  GET DIAGNOSTICS v_count = ROW_COUNT;
  v_n := v_n || jsonb_build_object('unmatched_rekeyed', v_count);

  UPDATE canon.identity_origin o SET origin_source_id = r.new_key
  FROM pg_temp.lead_rekey r
  WHERE o.origin_source_id = r.old_key;
  GET DIAGNOSTICS v_count = ROW_COUNT;
  v_n := v_n || jsonb_build_object('origins_rekeyed', v_count);

  -- Records of settled claims whose claim was not moved with them (changed behind the
  -- guard's back): re-keyed unless the lead's key already has one.
  UPDATE canon_internal.claims_settled s SET lead_source_pk = r.new_key
  FROM pg_temp.lead_rekey r
  WHERE s.lead_source_pk = r.old_key AND s.unsettled_at IS NULL
    AND NOT EXISTS (SELECT 1 FROM canon_internal.claims_settled x WHERE x.lead_source_pk = r.new_key AND x.milestone = s.milestone);
  GET DIAGNOSTICS v_count = ROW_COUNT;
  v_n := v_n || jsonb_build_object('settled_records_rekeyed', v_count);

  -- LEAD STATE: the stale keys (some marked by the triggers above) replaced by the leads'
  -- keys, re-evaluated by the next run; a lead row whose key was never evaluated is pending.
  DELETE FROM canon_internal.cabinet_lead_state_dirty d USING pg_temp.lead_rekey r WHERE d.lead_source_pk = r.old_key;
  INSERT INTO canon_internal.cabinet_lead_state_dirty AS d (lead_source_pk)
  SELECT DISTINCT x.lead_source_pk
  FROM (SELECT r.new_key AS lead_source_pk FROM pg_temp.lead_rekey r
        UNION ALL
        SELECT w.lead_source_pk FROM pg_temp.lead_rekey_rows w) x
  ON CONFLICT (lead_source_pk) DO UPDATE SET mark_seq = excluded.mark_seq, marked_at = excluded.marked_at;
  INSERT INTO canon_internal.lead_keys_pending (lead_id, lead_date)
  SELECT w.lead_id, w.lead_date
  FROM pg_temp.lead_rekey_rows w
  WHERE NOT EXISTS (SELECT 1 FROM canon.identity_links l
                    WHERE l.source_table = 'module_ct_cabinet_leads' AND l.source_pk = w.lead_source_pk)
    AND NOT EXISTS (SELECT 1 FROM canon.identity_unmatched u
                    WHERE u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = w.lead_source_pk
                      AND u.status IN ('OPEN', 'IGNORED'))
  ON CONFLICT (lead_id) DO NOTHING;
  GET DIAGNOSTICS v_count = ROW_COUNT;
  v_n := v_n || jsonb_build_object('leads_pending', v_count);

  v_stats := jsonb_build_object(
      'keys_rekeyed', v_keys,
      'keys_left', v_left,
      'leads_merged', (SELECT count(*) FROM (
          SELECT x.new_key FROM (SELECT new_key, source_pk AS k FROM pg_temp.lead_rekey_links
                                 UNION SELECT new_key, claimed_as FROM pg_temp.lead_rekey_claims
                                 UNION SELECT new_key, source_pk FROM pg_temp.lead_rekey_unmatched) x
          GROUP BY x.new_key HAVING count(*) > 1) g),
      'claims_set_aside_amount', (SELECT coalesce(sum(d.amount_expected), 0) FROM canon.claims_duplicates d WHERE d.repair_run_id = v_run_id),
      'claims_paid_twice', (SELECT count(*) FROM canon.claims_duplicates d
                            JOIN canon.claims_yango_cabinet_14d c ON c.lead_source_pk = d.lead_source_pk AND c.milestone = d.milestone
                            WHERE d.repair_run_id = v_run_id AND d.status = 'paid' AND c.status = 'paid'),
      'examples', (SELECT coalesce(jsonb_agg(jsonb_build_object('from', canon.show_blanks(e.old_key), 'to', canon.show_blanks(e.new_key))), '[]'::jsonb)
                   FROM (SELECT r.old_key, r.new_key FROM pg_temp.lead_rekey r ORDER BY r.new_key, r.old_key LIMIT 20) e))
    || v_n;
  UPDATE canon.ingestion_runs SET stats = v_stats, completed_at = clock_timestamp() WHERE id = v_run_id;
  PERFORM set_config('cabinet.audit_note', coalesce(v_audit_note, ''), true),
          set_config('cabinet.audit_details', coalesce(v_audit_details, ''), true);
  RETURN v_stats || jsonb_build_object('run_id', v_run_id);
END
$$;
COMMENT ON FUNCTION ops.repair_lead_keys(text) IS
  'Re-keys every stored lead key to canon.lead_source_pk; keys that become one lead are merged (one link, one claim per milestone, the others set aside in canon.claims_duplicates). Logged as a run (repair_lead_keys) when it changes anything; returns counts.';

-- snapshot of sql/ops/ops.repair_name_roles.sql
-- ops.repair_name_roles: brings the relatives veto's caches back to their live
-- definitions after a NAME_TOKEN_STATS or DRIVER_NAME_ROLES violation of
-- ops.check_invariants (only writes that bypassed their triggers cause one:
-- session_replication_role = replica, a disabled trigger, a hand edit):
--   SELECT ops.repair_name_roles();
-- canon_internal.driver_name_roles rows are compared with their live definition in full and
-- only the differing ones rewritten; canon_internal.name_token_stats is then counted again from
-- them. Holds off index writes (a run waits) while it works: about 10 s at 1M drivers.
CREATE OR REPLACE FUNCTION ops.repair_name_roles()
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_removed bigint;
  v_rewritten bigint;
  v_tokens bigint;
BEGIN
  LOCK TABLE canon_internal.driver_index IN SHARE ROW EXCLUSIVE MODE;
  LOCK TABLE canon_internal.driver_name_roles IN SHARE ROW EXCLUSIVE MODE;
  DELETE FROM canon_internal.driver_name_roles r
  WHERE NOT EXISTS (SELECT 1 FROM canon_internal.driver_index i WHERE i.driver_id = r.driver_id);
  GET DIAGNOSTICS v_removed = ROW_COUNT;
  INSERT INTO canon_internal.driver_name_roles AS r (driver_id, given_names, surnames, indexed_at)
  SELECT v.driver_id, v.given_names, v.surnames, v.indexed_at
  FROM canon.driver_name_roles_live(NULL) v
  LEFT JOIN canon_internal.driver_name_roles o ON o.driver_id = v.driver_id
  WHERE o.driver_id IS NULL
     OR (o.given_names, o.surnames, o.indexed_at) IS DISTINCT FROM (v.given_names, v.surnames, v.indexed_at)
  ORDER BY v.driver_id
  ON CONFLICT (driver_id) DO UPDATE
    SET given_names = excluded.given_names, surnames = excluded.surnames, indexed_at = excluded.indexed_at;
  GET DIAGNOSTICS v_rewritten = ROW_COUNT;
  -- The counters from what is stored now (the triggers above kept them only as right as
  -- they were).
  DELETE FROM canon_internal.name_token_stats;
  INSERT INTO canon_internal.name_token_stats (token, as_given, as_surname)
  SELECT v.token, v.as_given, v.as_surname FROM canon.v_name_token_stats v;
  GET DIAGNOSTICS v_tokens = ROW_COUNT;
  RETURN jsonb_build_object('roles_removed', v_removed, 'roles_rewritten', v_rewritten, 'tokens_counted', v_tokens);
END
$$;
COMMENT ON FUNCTION ops.repair_name_roles() IS
  'Repair of NAME_TOKEN_STATS / DRIVER_NAME_ROLES violations: rewrites the canon_internal.driver_name_roles rows that differ from canon.driver_name_roles_live (full comparison), removes those of drivers not indexed, and counts canon_internal.name_token_stats again. Returns counts.';

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

-- snapshot of sql/ops/ops.snapshot_limbo.sql
-- ops.snapshot_limbo: pipeline step 8 (SPEC 7, 9). In one pass over
-- ops.v_cabinet_leads_limbo (ops.limbo_week_counts), or by copying the previous snapshot
-- when no lead state changed since, it stores the run's limbo counts per lead week
-- (ops.limbo_snapshot_weeks) and over all leads (ops.limbo_snapshots), then evaluates the
-- alert rules on that snapshot and records the firing alerts (ops.check_limbo_alerts).
-- It runs inside the run's all-or-nothing transaction: a failed or dry run keeps nothing,
-- so only COMPLETED runs have snapshots. Calling it again for a run replaces its snapshot.
-- Returns the step's stats: counts, rows written, alerts firing (codes, new ones).
CREATE OR REPLACE FUNCTION ops.snapshot_limbo(p_run_id bigint)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
  v_snap jsonb;
  v_weeks integer;
  v_alerts jsonb;
  v_prev_run bigint;
  v_prev_at timestamptz;
  v_reused boolean;
  v_in_run boolean;
BEGIN
  IF p_run_id IS NULL THEN
    RAISE EXCEPTION 'ops.snapshot_limbo: p_run_id is NULL: expected the id of a row of canon.ingestion_runs'
      USING ERRCODE = '22023';
  END IF;

  DELETE FROM ops.limbo_snapshots s WHERE s.run_id = p_run_id;

  -- The counts are those of the previous snapshot when no stored lead state changed since
  -- it was taken and nothing is marked to be evaluated again (the view would give the same
  -- numbers): copied, not recounted. Otherwise counted from the stored state's counters
  -- (canon.limbo_week_counts_of_state): inside a run as of its read of the lead rows (step
  -- 5, moments ago), by hand as of now.
  v_in_run := current_setting('cabinet.in_pipeline', true) IS NOT DISTINCT FROM 'on';
  SELECT s.run_id, s.taken_at INTO v_prev_run, v_prev_at
  FROM ops.limbo_snapshots s
  ORDER BY s.taken_at DESC, s.run_id DESC
  LIMIT 1;
  v_reused := v_in_run AND v_prev_run IS NOT NULL
    AND v_prev_at >= (SELECT m.changed_at FROM canon_internal.cabinet_lead_state_meta m)
    AND NOT EXISTS (SELECT 1 FROM canon_internal.cabinet_lead_state_pending)
    AND NOT EXISTS (SELECT 1 FROM canon_internal.cabinet_lead_state_dirty);

  WITH weeks AS (
    SELECT w.* FROM ops.limbo_week_counts(v_prev_run) w WHERE v_reused
    UNION ALL
    SELECT c.* FROM canon.limbo_week_counts_of_state(NOT v_in_run) c WHERE NOT v_reused
  ),
  snapshot AS (
    INSERT INTO ops.limbo_snapshots (
      run_id, taken_at, business_date, leads, leads_with_identity, leads_with_driver,
      limbo_no_identity, limbo_no_driver, limbo_no_trips_14d, limbo_trips_no_claim, limbo_ok)
    SELECT p_run_id, now(), canon.business_today(),
           coalesce(sum(w.leads), 0), coalesce(sum(w.leads_with_identity), 0), coalesce(sum(w.leads_with_driver), 0),
           coalesce(sum(w.limbo_no_identity), 0), coalesce(sum(w.limbo_no_driver), 0),
           coalesce(sum(w.limbo_no_trips_14d), 0), coalesce(sum(w.limbo_trips_no_claim), 0), coalesce(sum(w.limbo_ok), 0)
    FROM weeks w
    RETURNING *
  ),
  week_rows AS (
    INSERT INTO ops.limbo_snapshot_weeks (
      run_id, week_start, leads, leads_with_identity, leads_with_driver,
      limbo_no_identity, limbo_no_driver, limbo_no_trips_14d, limbo_trips_no_claim, limbo_ok)
    SELECT p_run_id, w.week_start, w.leads, w.leads_with_identity, w.leads_with_driver,
           w.limbo_no_identity, w.limbo_no_driver, w.limbo_no_trips_14d, w.limbo_trips_no_claim, w.limbo_ok
    FROM weeks w
    RETURNING 1
  )
  SELECT to_jsonb(s), (SELECT count(*)::integer FROM week_rows) INTO v_snap, v_weeks
  FROM snapshot s;

  SELECT coalesce(jsonb_agg(jsonb_build_object(
           'rule_code', a.rule_code, 'severity', a.severity, 'subject', a.subject,
           'current_value', a.current_value, 'threshold', a.threshold, 'is_new', a.is_new)), '[]'::jsonb)
  INTO v_alerts
  FROM ops.check_limbo_alerts(p_run_id, true) a;

  RETURN jsonb_build_object(
    'run_id', p_run_id,
    'taken_at', v_snap->'taken_at',
    'business_date', v_snap->'business_date',
    'leads', v_snap->'leads',
    'leads_with_identity', v_snap->'leads_with_identity',
    'leads_with_driver', v_snap->'leads_with_driver',
    'stages', jsonb_build_object(
      'NO_IDENTITY', v_snap->'limbo_no_identity', 'NO_DRIVER', v_snap->'limbo_no_driver',
      'NO_TRIPS_14D', v_snap->'limbo_no_trips_14d', 'TRIPS_NO_CLAIM', v_snap->'limbo_trips_no_claim',
      'OK', v_snap->'limbo_ok'),
    'weeks_written', v_weeks,
    'counts_copied_from_run', CASE WHEN v_reused THEN v_prev_run END,
    'rows_written', v_weeks + 1,
    'alerts_firing', jsonb_array_length(v_alerts),
    'alerts_new', (SELECT count(*) FROM jsonb_array_elements(v_alerts) x WHERE (x->>'is_new')::boolean),
    'alerts', v_alerts);
END
$$;
COMMENT ON FUNCTION ops.snapshot_limbo(bigint) IS
  'Pipeline step 8: stores the limbo counts of run p_run_id per stage, overall and per lead week (ops.limbo_snapshots, ops.limbo_snapshot_weeks), then evaluates and records the alerts. Returns step stats (counts, rows_written, alerts).';

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

-- snapshot of sql/ops/ops.worker_jobs_locked.sql
-- ops.worker_jobs_locked: graphile-worker jobs and queues locked by a worker, and whether
-- longer than a run can last (setting job_lock_held_max_minutes). A worker killed with
-- kill -9 (or a host lost) leaves its job and the job's serial queue locked (locked_by =
-- that worker pool's id) until graphile-worker's own reset, 4 hours later; no run of the
-- queue starts meanwhile. Read by `doctor` (WORKER_JOB_LOCKED_TOO_LONG); unlock with
-- graphile-worker's own function (docs/operations.md):
--   SELECT graphile_worker.force_unlock_workers(ARRAY(
--     SELECT DISTINCT locked_by FROM ops.worker_jobs_locked() WHERE too_long));
-- Empty while graphile-worker's schema is not installed (cabinet-leads migrate installs
-- it); its tables are named dynamically so that this function exists before them.
CREATE OR REPLACE FUNCTION ops.worker_jobs_locked()
RETURNS TABLE (
  kind        text,
  id          bigint,
  name        text,
  locked_by   text,
  locked_at   timestamptz,
  locked_for  interval,
  too_long    boolean
)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF to_regclass('graphile_worker._private_jobs') IS NULL OR to_regclass('graphile_worker._private_job_queues') IS NULL
     OR to_regclass('graphile_worker._private_tasks') IS NULL THEN
    RETURN;
  END IF;
  RETURN QUERY EXECUTE $q$
    WITH locked AS (
      SELECT 'JOB'::text AS kind, j.id::bigint AS id, t.identifier::text AS name, j.locked_by::text AS locked_by, j.locked_at
      FROM graphile_worker._private_jobs j
      JOIN graphile_worker._private_tasks t ON t.id = j.task_id
      WHERE j.locked_at IS NOT NULL
      UNION ALL
      SELECT 'QUEUE', q.id::bigint, q.queue_name::text, q.locked_by::text, q.locked_at
      FROM graphile_worker._private_job_queues q
      WHERE q.locked_at IS NOT NULL
    )
    SELECT l.kind, l.id, l.name, l.locked_by, l.locked_at, date_trunc('second', now() - l.locked_at),
           now() - l.locked_at > make_interval(mins => canon.setting('job_lock_held_max_minutes')::integer)
    FROM locked l
    ORDER BY l.locked_at, l.kind, l.id
  $q$;
END
$$;
COMMENT ON FUNCTION ops.worker_jobs_locked() IS
  'graphile-worker jobs and queues locked by a worker (kind, id, task or queue name, locked_by, locked_at, for how long, too_long over setting job_lock_held_max_minutes); unlock a dead worker''s with graphile_worker.force_unlock_workers(ARRAY[locked_by]).';

-- snapshot of sql/canon_internal/canon_internal.cabinet_lead_state_counts.sql
-- Internal counter: canon_internal.cabinet_lead_state counted by lead date, stage and the flags
-- the counts read from it need, kept by the trigger canon.count_lead_state_changes; read by
-- ops.limbo_stage_counts, the limbo snapshots and alerts, step 7's scope figures and the
-- weekly funnel (ops.funnel_week_counts) instead of counting a million rows. Its live
-- definition is canon.v_cabinet_lead_state_counted; checked by ops.check_invariants (LEAD_STATE_COUNTS).
CREATE TABLE canon_internal.cabinet_lead_state_counts (
  lead_date     date NOT NULL,
  limbo_stage   text NOT NULL,
  with_identity boolean NOT NULL,
  with_driver   boolean NOT NULL,
  with_trips    boolean NOT NULL,
  with_rule     boolean NOT NULL,
  window_days   integer NOT NULL,
  reached_m1    boolean NOT NULL,
  reached_m5    boolean NOT NULL,
  reached_m25   boolean NOT NULL,
  has_claim_m1  boolean NOT NULL,
  has_claim_m5  boolean NOT NULL,
  has_claim_m25 boolean NOT NULL,
  leads         bigint NOT NULL,
  trips         numeric NOT NULL,
  m1_amount     numeric NOT NULL,
  m5_amount     numeric NOT NULL,
  m25_amount    numeric NOT NULL,
  paid_claims   bigint NOT NULL,
  paid_amount   numeric NOT NULL,
  PRIMARY KEY (lead_date, limbo_stage, with_identity, with_driver, with_trips, with_rule, window_days,
               reached_m1, reached_m5, reached_m25, has_claim_m1, has_claim_m5, has_claim_m25)
);

COMMENT ON TABLE canon_internal.cabinet_lead_state_counts IS
  'Stored lead state rows (canon_internal.cabinet_lead_state) counted by lead_date, limbo_stage, with_identity (person_key set), with_driver (driver_id set), with_trips (trips_in_window > 0), with_rule (window_days set), window_days (0 when none), reached_m* and has_claim_m*, with the sums of trips_in_window, m*_amount, paid_claims and paid_amount; kept equal to canon.v_cabinet_lead_state_counted by the trigger canon.count_lead_state_changes (ops.check_invariants verifies it). (internal)';
COMMENT ON COLUMN canon_internal.cabinet_lead_state_counts.window_days IS
  'The rows'' window_days (their window ends at lead_date + window_days), 0 for rows without a claim rule: a key column cannot be NULL.';

-- snapshot of sql/canon_internal/canon_internal.cabinet_lead_state_dirty.sql
-- Internal marks: lead keys whose links or claims changed since their stored state was
-- evaluated. Written by triggers on identity_links and the claims; consumed by the lead state
-- refresh (canon.take_lead_state_marks).
CREATE TABLE canon_internal.cabinet_lead_state_dirty (
  lead_source_pk text PRIMARY KEY,
  mark_seq       bigint GENERATED BY DEFAULT AS IDENTITY NOT NULL,
  marked_at      timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE canon_internal.cabinet_lead_state_dirty IS
  'Lead keys whose links or claims changed since their state was evaluated; emptied by canon.generate_cabinet_claims and ops.refresh_cabinet_lead_state.';

-- snapshot of sql/canon_internal/canon_internal.cabinet_lead_state_meta.sql
-- Internal bookkeeping of the stored lead state (one row): the last daily sweep, whether every
-- lead must be evaluated again (claim rules changed), when the stored state last changed.
CREATE TABLE canon_internal.cabinet_lead_state_meta (
  singleton           boolean DEFAULT true PRIMARY KEY CHECK (singleton),
  last_sweep_date     date,
  last_sweep_at       timestamptz,
  full_refresh_needed boolean NOT NULL DEFAULT true,
  updated_at          timestamptz NOT NULL DEFAULT now(),
  changed_at          timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE canon_internal.cabinet_lead_state_meta IS
  'Lead state bookkeeping (internal): the last daily sweep, whether the claim rules changed (every lead is re-evaluated, and shown live until then), when the stored state last changed.';
COMMENT ON COLUMN canon_internal.cabinet_lead_state_meta.changed_at IS
  'Last time a stored lead state row was written or removed: a limbo snapshot taken after it copies the previous counts.';

INSERT INTO canon_internal.cabinet_lead_state_meta (singleton, full_refresh_needed) VALUES
  (true, true);

-- snapshot of sql/canon_internal/canon_internal.cabinet_lead_state_paid_dirty.sql
-- Internal marks: lead keys whose claims were paid, or stopped being paid, or changed a paid
-- amount since their stored state was evaluated (its paid_claims and paid_amount). Written
-- by the claims' trigger (canon.mark_lead_state_dirty_claims); consumed with the other
-- marks by the lead state refresh (canon.take_lead_state_marks). Apart from
-- canon_internal.cabinet_lead_state_dirty because nothing the limbo view shows depends on
-- a claim's status: the weekly funnel alone counts these keys live until the next run.
CREATE TABLE canon_internal.cabinet_lead_state_paid_dirty (
  lead_source_pk text PRIMARY KEY,
  mark_seq       bigint GENERATED BY DEFAULT AS IDENTITY NOT NULL,
  marked_at      timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE canon_internal.cabinet_lead_state_paid_dirty IS
  'Lead keys whose paid claims changed since their state was evaluated (paid_claims, paid_amount); emptied by canon.generate_cabinet_claims and ops.refresh_cabinet_lead_state. (internal)';

-- snapshot of sql/canon_internal/canon_internal.cabinet_lead_state_pending.sql
-- Internal marks: lead rows whose stored state is to be evaluated again because the row or a row
-- of its key changed. Written by canon.refresh_lead_keys; consumed by the lead state refresh.
CREATE TABLE canon_internal.cabinet_lead_state_pending (
  lead_id   integer PRIMARY KEY,
  mark_seq  bigint GENERATED BY DEFAULT AS IDENTITY NOT NULL,
  marked_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE canon_internal.cabinet_lead_state_pending IS
  'Bookkeeping (internal): lead rows whose stored state is to be evaluated again (the row or a row of its key changed). Written by canon.refresh_lead_keys (a mark again gets a new mark_seq); the lead state refresh removes exactly the marks it read.';

-- snapshot of sql/canon_internal/canon_internal.cabinet_lead_state.sql
-- Internal cache: the stored state of every dated lead row (what canon.lead_status_live says,
-- as of evaluated_at). Written by the pipeline's lead state steps (canon.refresh_lead_state) and
-- the ops.* tools; read by canon.v_cabinet_lead_status_current, which shows the live state of a
-- row whose stored state is not current. Checked by ops.check_caches (LEAD_STATE_CURRENT).
CREATE TABLE canon_internal.cabinet_lead_state (
  lead_id             integer PRIMARY KEY,
  lead_source_pk      text NOT NULL,
  lead_date           date NOT NULL,
  person_key          uuid,
  driver_id           text,
  window_days         integer,
  window_end          date,
  trips_in_window     bigint NOT NULL,
  trip_rows_in_window bigint NOT NULL,
  currency            text,
  m1_trips_threshold  integer,
  m1_amount           numeric(12,2),
  reached_m1          boolean NOT NULL,
  m5_trips_threshold  integer,
  m5_amount           numeric(12,2),
  reached_m5          boolean NOT NULL,
  m25_trips_threshold integer,
  m25_amount          numeric(12,2),
  reached_m25         boolean NOT NULL,
  expected_amount     numeric(12,2) NOT NULL,
  has_claim_m1        boolean NOT NULL,
  has_claim_m5        boolean NOT NULL,
  has_claim_m25       boolean NOT NULL,
  limbo_stage         text NOT NULL CHECK (limbo_stage IN ('NO_IDENTITY', 'NO_DRIVER', 'NO_TRIPS_14D', 'TRIPS_NO_CLAIM', 'OK')),
  evaluated_at        timestamptz NOT NULL DEFAULT now(),
  evaluated_run_id    bigint,
  key_rows            integer NOT NULL DEFAULT 1,
  paid_claims         integer NOT NULL DEFAULT 0,
  paid_amount         numeric(12,2) NOT NULL DEFAULT 0
) WITH (autovacuum_vacuum_scale_factor='0.02', autovacuum_vacuum_threshold='1000');

CREATE INDEX cabinet_lead_state_lead_date_idx ON canon_internal.cabinet_lead_state (lead_date);
CREATE INDEX cabinet_lead_state_lead_source_pk_idx ON canon_internal.cabinet_lead_state USING hash (lead_source_pk);
-- The few rows sharing a lead key, which the weekly funnel counts per key (canon.funnel_week_counts_of).
CREATE INDEX cabinet_lead_state_shared_key_idx ON canon_internal.cabinet_lead_state (lead_id)
  WHERE key_rows > 1;
-- The oldest stored leads of the stages the report lists (ops.oldest_actionable_leads).
CREATE INDEX cabinet_lead_state_no_driver_idx ON canon_internal.cabinet_lead_state (lead_date)
  WHERE limbo_stage = 'NO_DRIVER';
CREATE INDEX cabinet_lead_state_trips_no_claim_idx ON canon_internal.cabinet_lead_state (lead_date)
  WHERE limbo_stage = 'TRIPS_NO_CLAIM';
CREATE INDEX cabinet_lead_state_window_end_idx ON canon_internal.cabinet_lead_state (window_end)
  WHERE driver_id IS NOT NULL;
-- The leads of the drivers whose trip rows a run found written (canon.schedule_lead_state):
-- probed per driver instead of a pass over every stored lead.
CREATE INDEX cabinet_lead_state_driver_idx ON canon_internal.cabinet_lead_state (driver_id)
  WHERE driver_id IS NOT NULL;

CREATE TRIGGER cabinet_lead_state_count_delete
  AFTER DELETE ON canon_internal.cabinet_lead_state REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.count_lead_state_changes();
CREATE TRIGGER cabinet_lead_state_count_insert
  AFTER INSERT ON canon_internal.cabinet_lead_state REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.count_lead_state_changes();
CREATE TRIGGER cabinet_lead_state_count_truncate
  AFTER TRUNCATE ON canon_internal.cabinet_lead_state
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.count_lead_state_changes();
CREATE TRIGGER cabinet_lead_state_count_update
  AFTER UPDATE ON canon_internal.cabinet_lead_state REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.count_lead_state_changes();

COMMENT ON COLUMN canon_internal.cabinet_lead_state.paid_claims IS
  'Claims of this key with status paid, of the milestones the lead has a threshold for (what the weekly funnel counts as paid); a change of status marks the key in canon_internal.cabinet_lead_state_paid_dirty.';
COMMENT ON COLUMN canon_internal.cabinet_lead_state.paid_amount IS
  'The amount_expected of those paid claims, summed.';
COMMENT ON TABLE canon_internal.cabinet_lead_state IS
  'One row per cabinet lead row with lead_created_at: canon.v_cabinet_lead_status as of evaluated_at, maintained by the pipeline (canon.generate_cabinet_claims) and the ops.* tools. Read through ops.v_cabinet_leads_limbo.';

-- snapshot of sql/canon_internal/canon_internal.claims_settled.sql
-- Internal record of every paid or rejected claim's last known content, kept by the claims'
-- triggers; ops.check_invariants compares the claims with it (SETTLED_CLAIM_CHANGED,
-- SETTLED_CLAIM_REMOVED), so no change to settled money goes unseen.
CREATE TABLE canon_internal.claims_settled (
  lead_source_pk  text NOT NULL,
  milestone       integer NOT NULL,
  status          text NOT NULL CHECK (status IN ('paid', 'rejected')),
  amount_expected numeric(12,2) NOT NULL,
  currency        text NOT NULL,
  person_key      uuid,
  driver_id       text,
  lead_date       date NOT NULL,
  generated_at    timestamptz,
  paid_at         timestamptz,
  run_id          bigint,
  recorded_at     timestamptz NOT NULL DEFAULT now(),
  recorded_by     text NOT NULL DEFAULT CURRENT_USER,
  unsettled_at    timestamptz,
  unsettled_by    text,
  unsettled_txid  bigint,
  unsettled_to    text,
  unsettled_note  text,
  PRIMARY KEY (lead_source_pk, milestone),
  CONSTRAINT claims_settled_unsettled_check CHECK (((unsettled_at IS NULL) AND (unsettled_by IS NULL) AND (unsettled_txid IS NULL) AND (unsettled_to IS NULL) AND (unsettled_note IS NULL)) OR ((unsettled_at IS NOT NULL) AND (unsettled_to IN ('deleted', 'expected', 'generated', 'expired'))))
);

COMMENT ON TABLE canon_internal.claims_settled IS
  'Last known content of every paid or rejected claim, kept by the triggers of canon.claims_yango_cabinet_14d on every allowed change; a settled claim deleted or moved back to an unsettled status keeps its row, stamped unsettled_*. ops.check_invariants() reports claims that differ from it (SETTLED_CLAIM_CHANGED) and removals nobody explained (SETTLED_CLAIM_REMOVED).';
COMMENT ON COLUMN canon_internal.claims_settled.unsettled_at IS
  'When the settled claim was deleted or moved back to an unsettled status (NULL while it is settled).';
COMMENT ON COLUMN canon_internal.claims_settled.unsettled_by IS
  'Database user of the transaction that unsettled it.';
COMMENT ON COLUMN canon_internal.claims_settled.unsettled_txid IS
  'That transaction (txid_current(), as canon.identity_audit.txid: join to see which operation it was).';
COMMENT ON COLUMN canon_internal.claims_settled.unsettled_to IS
  '''deleted'' (also when its key changed), or the unsettled status it was moved to.';
COMMENT ON COLUMN canon_internal.claims_settled.unsettled_note IS
  'Why: the transaction''s cabinet.settled_change_note, or written by finance afterwards; NULL is reported by doctor (SETTLED_CLAIM_REMOVED).';

-- snapshot of sql/canon_internal/canon_internal.driver_index_key_changes.sql
-- Internal marks: keys drivers lost (re-indexed with other keys, or removed), written by
-- canon.refresh_driver_index and consumed by canon.mark_retries_due, so an OPEN lead that shared
-- such a key, or had the driver as a probabilistic candidate (a plate one edit away with a
-- shared name token, a rare name key: hence the plate and the name together), is retried.
CREATE TABLE canon_internal.driver_index_key_changes (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  driver_id    text NOT NULL,
  change       text NOT NULL CHECK (change IN ('KEYS_CHANGED', 'REMOVED')),
  phone_norm   text,
  license_norm text,
  plate_norm   text,
  name_norm    text,
  logged_at    timestamptz NOT NULL DEFAULT now(),
  run_id       bigint
);

CREATE INDEX driver_index_key_changes_logged_at_idx ON canon_internal.driver_index_key_changes (logged_at);

COMMENT ON TABLE canon_internal.driver_index_key_changes IS
  'Keys drivers lost (re-indexed with other keys, or removed from canon_internal.driver_index) not yet checked against the OPEN unmatched leads; pruned by canon.mark_retries_due once checked.';
COMMENT ON COLUMN canon_internal.driver_index_key_changes.plate_norm IS
  'The plate before the change, logged with name_norm when either changed (the tier pairs a near plate with a shared name token).';
COMMENT ON COLUMN canon_internal.driver_index_key_changes.name_norm IS
  'The normalised name before the change, logged with plate_norm when either changed: its rare keys and tokens made the driver a probabilistic candidate.';

-- snapshot of sql/canon_internal/canon_internal.driver_index_state.sql
-- Internal bookkeeping of the driver index (one row): when it last changed, when it was last
-- reconciled whole with public.drivers.
CREATE TABLE canon_internal.driver_index_state (
  singleton        boolean DEFAULT true PRIMARY KEY CHECK (singleton),
  last_full_at     timestamptz,
  last_refresh_at  timestamptz,
  last_run_id      bigint,
  changed_at       timestamptz,
  retry_checked_at timestamptz,
  odd_future_from  timestamp,
  odd_future_rows  bigint,
  odd_untimed_rows bigint,
  odd_versions     tid[],
  odd_version_xmins xid[],
  odd_relfilenode  oid
);

COMMENT ON TABLE canon_internal.driver_index_state IS
  'When the driver index last changed and was last reconciled whole with public.drivers (one row).';
COMMENT ON COLUMN canon_internal.driver_index_state.changed_at IS
  'Last time canon.refresh_driver_index wrote or removed rows of canon_internal.driver_index (reported by runs; OPEN unmatched leads are retried when due, see canon.identity_unmatched.retry_due).';
COMMENT ON COLUMN canon_internal.driver_index_state.retry_checked_at IS
  'Driver index rows indexed (and keys logged in canon_internal.driver_index_key_changes) after this time are still to be checked against the OPEN unmatched leads by canon.mark_retries_due. NULL: never checked (every OPEN lead is due).';
COMMENT ON COLUMN canon_internal.driver_index_state.odd_future_from IS
  'The threshold of the last count of odd timestamps (now in the business time zone plus a day): a row with updated_at or created_at after it was FUTURE_TIMESTAMP. A run whose threshold is earlier (the time zone changed) counts every row again.';
COMMENT ON COLUMN canon_internal.driver_index_state.odd_versions IS
  'The row versions of public.drivers (ctid, with odd_version_xmins their xmin) that were odd at the last count (a timestamp after odd_future_from, or neither timestamp). The next run counts these, where the same version is still there, and the versions written since the last read: a version not odd then is not odd later (the threshold only moves forward). NULL: count every row.';
COMMENT ON COLUMN canon_internal.driver_index_state.odd_version_xmins IS
  'The xmin of each version of odd_versions, in the same order: a slot reused by another row is not the version counted.';
COMMENT ON COLUMN canon_internal.driver_index_state.odd_relfilenode IS
  'The file of public.drivers when odd_versions were taken: a rewrite (VACUUM FULL, CLUSTER) moves every row, and the next run counts every row again.';

-- snapshot of sql/canon_internal/canon_internal.driver_index.sql
-- Internal cache: the normalised matching keys of every driver of public.drivers (step 4).
-- Written by canon.refresh_driver_index; read by the matcher. Checked by ops.check_caches
-- (DRIVER_INDEX_CURRENT) against canon.driver_source_hash of the live rows.
CREATE TABLE canon_internal.driver_index (
  driver_id         text PRIMARY KEY,
  park_id           text,
  phone_norm        text,
  license_norm      text,
  plate_norm        text,
  name_norm         text,
  hire_date         date,
  source_hash       text NOT NULL,
  source_changed_at timestamp,
  indexed_at        timestamptz NOT NULL DEFAULT now(),
  indexed_run_id    bigint
);

CREATE INDEX driver_index_indexed_at_idx ON canon_internal.driver_index (indexed_at);
CREATE INDEX driver_index_license_idx ON canon_internal.driver_index (license_norm)
  WHERE license_norm IS NOT NULL;
CREATE INDEX driver_index_phone_idx ON canon_internal.driver_index (phone_norm)
  WHERE phone_norm IS NOT NULL;
CREATE INDEX driver_index_plate_idx ON canon_internal.driver_index (plate_norm)
  WHERE plate_norm IS NOT NULL;
-- The probabilistic tier's blocks: plates one edit apart, names by phonetic key. Fast update
-- (a run's new drivers are appended to a pending list), merged by the tier before it probes
-- (canon.flush_driver_index_keys).
CREATE INDEX driver_index_plate_edit_keys_idx ON canon_internal.driver_index USING gin (canon.plate_edit_hashes(plate_norm))
  WHERE plate_norm IS NOT NULL;
CREATE INDEX driver_index_name_keys_idx ON canon_internal.driver_index USING gin (canon.name_phonetic_hashes(name_norm))
  WHERE name_norm IS NOT NULL;

CREATE TRIGGER driver_index_name_roles_delete
  AFTER DELETE ON canon_internal.driver_index REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.sync_driver_name_roles();
CREATE TRIGGER driver_index_name_roles_insert
  AFTER INSERT ON canon_internal.driver_index REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.sync_driver_name_roles();
CREATE TRIGGER driver_index_name_roles_truncate
  AFTER TRUNCATE ON canon_internal.driver_index
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.sync_driver_name_roles();
CREATE TRIGGER driver_index_name_roles_update
  AFTER UPDATE ON canon_internal.driver_index REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.sync_driver_name_roles();

COMMENT ON TABLE canon_internal.driver_index IS
  'Normalised matching keys of every driver of public.drivers, refreshed incrementally by each run (step 4).';

-- snapshot of sql/canon_internal/canon_internal.driver_name_roles.sql
-- Internal cache, one row per canon_internal.driver_index row: the tokens of the driver's given names and
-- surnames (canon.name_field_tokens), written with the index row by the trigger
-- canon.sync_driver_name_roles. Live definition: canon.driver_name_roles_live.
CREATE TABLE canon_internal.driver_name_roles (
  driver_id   text PRIMARY KEY,
  given_names text[],
  surnames    text[],
  indexed_at  timestamptz NOT NULL
);

CREATE TRIGGER driver_name_roles_count_delete
  AFTER DELETE ON canon_internal.driver_name_roles REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.count_name_token_changes();
CREATE TRIGGER driver_name_roles_count_insert
  AFTER INSERT ON canon_internal.driver_name_roles REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.count_name_token_changes();
CREATE TRIGGER driver_name_roles_count_truncate
  AFTER TRUNCATE ON canon_internal.driver_name_roles
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.count_name_token_changes();
CREATE TRIGGER driver_name_roles_count_update
  AFTER UPDATE ON canon_internal.driver_name_roles REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.count_name_token_changes();

COMMENT ON TABLE canon_internal.driver_name_roles IS
  'Cache, one row per canon_internal.driver_index row, written with it by the trigger canon.sync_driver_name_roles: tokens (canon.name_field_tokens) of the driver''s first and middle name (given_names) and of its last name (surnames) from the public.drivers row the index was built from, else the newest (NULL: no such field, e.g. only full_name). Live definition: canon.v_driver_name_roles.';
COMMENT ON COLUMN canon_internal.driver_name_roles.indexed_at IS
  'canon_internal.driver_index.indexed_at of the index row it was written with (equal by construction).';

-- snapshot of sql/canon_internal/canon_internal.lead_keys_pending.sql
-- Internal marks: lead rows whose key may not be evaluated yet (no link, no unmatched row).
-- Written by canon.refresh_lead_keys and triggers; read by canon.select_lead_batch, which deletes
-- the marks of the keys it evaluated.
CREATE TABLE canon_internal.lead_keys_pending (
  lead_id   integer PRIMARY KEY,
  lead_date date,
  marked_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX lead_keys_pending_lead_date_idx ON canon_internal.lead_keys_pending (lead_date);

COMMENT ON TABLE canon_internal.lead_keys_pending IS
  'Lead rows (canon_internal.lead_keys.lead_id, with their keyed lead_date) whose lead key may not be evaluated yet (no link, no unmatched row): new rows, and keys whose link or unmatched row was removed. canon.select_lead_batch reads it for never-evaluated leads and deletes the rows of the keys it evaluated.';

-- snapshot of sql/canon_internal/canon_internal.lead_keys.sql
-- Internal cache: the normalised matching keys of every cabinet lead row. Written by
-- canon.refresh_lead_keys (rows changed since the last read, by commit order); read by the matcher
-- and the lead state. Checked by ops.check_caches (LEAD_KEYS_CURRENT).
CREATE TABLE canon_internal.lead_keys (
  lead_id         integer PRIMARY KEY,
  lead_source_pk  text NOT NULL,
  lead_created_at timestamp,
  lead_date       date,
  phone_norm      text,
  plate_norm      text,
  license_norm    text,
  name_norm       text,
  lead_name       text,
  source_hash     text NOT NULL,
  indexed_at      timestamptz NOT NULL DEFAULT now()
) WITH (autovacuum_vacuum_scale_factor='0.02', autovacuum_vacuum_threshold='1000');

CREATE INDEX lead_keys_lead_date_idx ON canon_internal.lead_keys (lead_date);
CREATE INDEX lead_keys_license_idx ON canon_internal.lead_keys (license_norm)
  WHERE license_norm IS NOT NULL;
CREATE INDEX lead_keys_phone_idx ON canon_internal.lead_keys (phone_norm)
  WHERE phone_norm IS NOT NULL;
CREATE INDEX lead_keys_plate_idx ON canon_internal.lead_keys (plate_norm)
  WHERE plate_norm IS NOT NULL;
CREATE INDEX lead_keys_source_pk_idx ON canon_internal.lead_keys (lead_source_pk, lead_id);

COMMENT ON TABLE canon_internal.lead_keys IS
  'Normalised matching keys of every cabinet lead row (new rows added by each run; batch rows re-keyed).';

-- snapshot of sql/canon_internal/canon_internal.lead_rows_unkeyed.sql
-- Internal bookkeeping: lead rows without a row in canon_internal.lead_keys and why (a key over 200
-- characters). Written by canon.refresh_lead_keys; counted by doctor.
CREATE TABLE canon_internal.lead_rows_unkeyed (
  lead_id integer PRIMARY KEY,
  reason  text NOT NULL CHECK (reason = 'OVERSIZED_KEY'),
  seen_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE canon_internal.lead_rows_unkeyed IS
  'Bookkeeping (internal): lead rows without a row in canon_internal.lead_keys and why (OVERSIZED_KEY: a lead key over 200 characters). Maintained by canon.refresh_lead_keys.';

-- snapshot of sql/canon_internal/canon_internal.name_token_stats.sql
-- Internal counter: per name token, the indexed drivers using it as a given name and as a surname,
-- kept by the trigger canon.count_name_token_changes on canon_internal.driver_name_roles; read by
-- canon.name_token_usage. Checked by ops.check_invariants.
CREATE TABLE canon_internal.name_token_stats (
  token      text PRIMARY KEY,
  as_given   bigint NOT NULL,
  as_surname bigint NOT NULL
);

CREATE INDEX name_token_stats_unused_idx ON canon_internal.name_token_stats (token)
  WHERE (as_given = 0) AND (as_surname = 0);

COMMENT ON TABLE canon_internal.name_token_stats IS
  'Cache: per name token, indexed drivers typing it as a given name (as_given) and as a surname (as_surname); kept equal to canon.v_name_token_stats by the trigger canon.count_name_token_changes on canon_internal.driver_name_roles. Read by canon.name_token_usage.';

-- snapshot of sql/canon_internal/canon_internal.source_scan_state.sql
-- Internal bookkeeping: how far each upstream table has been read, by commit order (the oldest
-- transaction in progress at the last read). Written by canon.key_changed_leads,
-- canon.refresh_driver_index and canon.trip_drivers_changed; docs/change-detection.md.
CREATE TABLE canon_internal.source_scan_state (
  source_table     text PRIMARY KEY CHECK (source_table IN ('module_ct_cabinet_leads', 'drivers', 'summary_daily')),
  seen_xmin        xid8,
  seen_snapshot    pg_snapshot,
  full_seen_xmin   xid8,
  blocks           bigint,
  relfilenode      oid,
  stats_epoch      text,
  tuples_accounted bigint,
  tuples_updated   bigint,
  tuples_deleted   bigint,
  rows_read        bigint,
  rows_dated       bigint,
  full_read_at     timestamptz,
  read_at          timestamptz,
  run_id           bigint
);

COMMENT ON TABLE canon_internal.source_scan_state IS
  'Bookkeeping (internal): how far each upstream table has been read, by commit order. Written by canon.key_changed_leads, canon.refresh_driver_index and canon.trip_drivers_changed; see docs/change-detection.md.';
COMMENT ON COLUMN canon_internal.source_scan_state.seen_xmin IS
  'Oldest transaction still in progress when the last read started (pg_snapshot_xmin of its snapshot): every row version written by an older transaction was read then. NULL: read every row.';
COMMENT ON COLUMN canon_internal.source_scan_state.seen_snapshot IS
  'summary_daily: the snapshot of the last read of its appended pages; rows not visible to it are counted as new (for the insert accounting).';
COMMENT ON COLUMN canon_internal.source_scan_state.full_seen_xmin IS
  'summary_daily: seen_xmin of the last read of the whole table; advances only with a whole read.';
COMMENT ON COLUMN canon_internal.source_scan_state.blocks IS
  'summary_daily: its size in pages at the last read; pages from blocks - 1 on are read every run.';
COMMENT ON COLUMN canon_internal.source_scan_state.tuples_accounted IS
  'summary_daily: inserts of the statistics system accounted for: found in appended pages one by one, or by a whole read.';
COMMENT ON COLUMN canon_internal.source_scan_state.rows_dated IS
  'module_ct_cabinet_leads: dated rows (finite lead_created_at) at the last read; the lead state holds one row for each once evaluated.';

INSERT INTO canon_internal.source_scan_state (source_table) VALUES
  ('module_ct_cabinet_leads'),
  ('drivers'),
  ('summary_daily');

-- snapshot of sql/canon/canon.claim_rules.sql
-- The milestones of the 14-day claim (SPEC 7c): trips needed, amount, currency, window, validity
-- by lead date. Edited by people (a change re-evaluates every lead); read by the claim steps and
-- the claim views. Overlapping rules are refused (trigger claim_rules_consistent).
CREATE TABLE canon.claim_rules (
  milestone       integer NOT NULL CHECK (milestone > 0),
  trips_threshold integer NOT NULL CHECK (trips_threshold > 0),
  amount          numeric(12,2) NOT NULL CHECK (amount >= 0),
  currency        text NOT NULL DEFAULT 'PEN',
  window_days     integer NOT NULL CHECK (window_days > 0),
  valid_from      date NOT NULL DEFAULT '2000-01-01'::date,
  valid_to        date,
  PRIMARY KEY (milestone, valid_from),
  CONSTRAINT claim_rules_check CHECK ((valid_to IS NULL) OR (valid_to > valid_from))
);

CREATE CONSTRAINT TRIGGER claim_rules_consistent
  AFTER INSERT OR UPDATE ON canon.claim_rules
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW
  EXECUTE FUNCTION canon.enforce_claim_rules_consistent();
CREATE TRIGGER claim_rules_lead_state
  AFTER INSERT OR DELETE OR UPDATE OR TRUNCATE ON canon.claim_rules
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.mark_lead_state_rules_changed();

COMMENT ON TABLE canon.claim_rules IS
  'Milestones of the 14-day cabinet claim: trips threshold, amount, currency, window, validity (by lead_date).';

INSERT INTO canon.claim_rules (milestone, trips_threshold, amount, currency, window_days, valid_from) VALUES
  (1, 1, 25.00, 'PEN', 14, '2000-01-01'),
  (5, 5, 35.00, 'PEN', 14, '2000-01-01'),
  (25, 25, 100.00, 'PEN', 14, '2000-01-01');

-- snapshot of sql/canon/canon.identity_audit.sql
-- Append-only history of identity decisions (SPEC 5): every LINK, UNLINK and RELINK of
-- canon.identity_links (trigger) and every manual RESOLVE or IGNORE, with who, when and why.
-- Nobody may change or delete a row (trigger identity_audit_append_only).
CREATE TABLE canon.identity_audit (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at           timestamptz NOT NULL DEFAULT now(),
  action       text NOT NULL CHECK (action IN ('LINK', 'UNLINK', 'RELINK', 'RESOLVE', 'IGNORE')),
  source_table text NOT NULL,
  source_pk    text NOT NULL,
  person_key   uuid,
  driver_id    text,
  match_rule   text,
  match_score  numeric(5,2),
  decided_by   text NOT NULL CHECK (decided_by IN ('system', 'manual')),
  actor        text NOT NULL,
  run_id       bigint,
  db_user      text NOT NULL DEFAULT CURRENT_USER,
  client       text DEFAULT NULLIF(current_setting('application_name', true), ''),
  txid         bigint NOT NULL DEFAULT txid_current(),
  note         text,
  details      jsonb NOT NULL DEFAULT '{}'::jsonb
);

CREATE INDEX identity_audit_person_idx ON canon.identity_audit (person_key)
  WHERE person_key IS NOT NULL;
CREATE INDEX identity_audit_source_idx ON canon.identity_audit (source_pk, id);

CREATE TRIGGER identity_audit_append_only
  BEFORE DELETE OR UPDATE ON canon.identity_audit
  FOR EACH ROW
  EXECUTE FUNCTION canon.refuse_audit_change();
CREATE TRIGGER identity_audit_no_truncate
  BEFORE TRUNCATE ON canon.identity_audit
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.refuse_audit_change();

COMMENT ON TABLE canon.identity_audit IS
  'Append-only history of identity decisions: every LINK / UNLINK / RELINK of canon.identity_links (by trigger) and every manual RESOLVE / IGNORE, with actor (run or database user), time and note.';
COMMENT ON COLUMN canon.identity_audit.actor IS
  '''run <id>'' when the pipeline run <id> wrote the link, else the database user (current_user).';
COMMENT ON COLUMN canon.identity_audit.client IS
  'application_name of the session; the CLI sets it to cabinet-leads <command> (<os user>@<host>).';
COMMENT ON COLUMN canon.identity_audit.txid IS
  'Transaction id: the rows of one operation (e.g. a resolve and its links) share it.';

-- snapshot of sql/canon/canon.ingestion_runs.sql
-- One row per run of any job of the product (SPEC 8): parameters, stats, durations, outcome.
-- Written by ops.reconcile_cabinet_leads_pipeline and the ops.* tools; read by status, report,
-- alerts and people.
CREATE TABLE canon.ingestion_runs (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  job_name        text NOT NULL,
  status          text NOT NULL CHECK (status IN ('RUNNING', 'COMPLETED', 'FAILED', 'SKIPPED')),
  dry_run         boolean NOT NULL DEFAULT false,
  source_tables   jsonb NOT NULL DEFAULT '[]'::jsonb,
  params          jsonb NOT NULL DEFAULT '{}'::jsonb,
  scope_date_from date,
  scope_date_to   date,
  stats           jsonb NOT NULL DEFAULT '{}'::jsonb,
  error_message   text,
  error_sqlstate  text,
  started_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
  completed_at    timestamptz,
  created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
  trigger         text NOT NULL DEFAULT 'psql',
  client_host     text,
  client_pid      integer,
  backend_pid     integer NOT NULL DEFAULT pg_backend_pid(),
  backend_start   timestamptz,
  worker_job_id   text,
  db_user         text NOT NULL DEFAULT CURRENT_USER,
  CONSTRAINT ingestion_runs_check CHECK ((status = 'RUNNING') = (completed_at IS NULL))
);

CREATE INDEX ingestion_runs_created_at_idx ON canon.ingestion_runs (created_at DESC);
CREATE INDEX ingestion_runs_job_status_idx ON canon.ingestion_runs (job_name, status, created_at DESC);

COMMENT ON TABLE canon.ingestion_runs IS
  'One row per run of any job of the product, with its parameters, stats and outcome.';

-- snapshot of sql/canon/canon.claims_duplicates.sql
-- Claims made twice for one lead under lead keys that differed only by blanks, taken out of
-- canon.claims_yango_cabinet_14d by ops.repair_lead_keys as they were. Append-only; finance reads
-- it through ops.v_cabinet_claims_duplicated.
CREATE TABLE canon.claims_duplicates (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  lead_source_pk   text NOT NULL,
  milestone        integer NOT NULL,
  claimed_as       text NOT NULL,
  kept_claimed_as  text NOT NULL,
  status           text NOT NULL,
  amount_expected  numeric(12,2) NOT NULL,
  currency         text NOT NULL,
  person_key       uuid,
  driver_id        text,
  lead_date        date NOT NULL,
  generated_at     timestamptz,
  paid_at          timestamptz,
  run_id           bigint,
  claim_created_at timestamptz,
  claim_updated_at timestamptz,
  set_aside_at     timestamptz NOT NULL DEFAULT now(),
  set_aside_by     text NOT NULL DEFAULT CURRENT_USER,
  repair_run_id    bigint REFERENCES canon.ingestion_runs(id),
  note             text NOT NULL
);

CREATE INDEX claims_duplicates_lead_idx ON canon.claims_duplicates (lead_source_pk, milestone);

COMMENT ON TABLE canon.claims_duplicates IS
  'Claims made twice for one cabinet lead (under lead keys that differ only by blanks at their ends), taken out of canon.claims_yango_cabinet_14d by ops.repair_lead_keys as they were; the claim kept for (lead_source_pk, milestone) stays there. Append-only record for finance: ops.v_cabinet_claims_duplicated.';
COMMENT ON COLUMN canon.claims_duplicates.lead_source_pk IS
  'The lead''s key (canon.lead_source_pk) now: the kept claim is in canon.claims_yango_cabinet_14d under it.';
COMMENT ON COLUMN canon.claims_duplicates.claimed_as IS
  'The key this duplicate claim was made under (with its blanks).';
COMMENT ON COLUMN canon.claims_duplicates.kept_claimed_as IS
  'The key the kept claim was made under when this one was set aside.';

-- snapshot of sql/canon/canon.identity_registry.sql
-- One row per canonical person (SPEC 5), created only with the link that needs it; a person
-- without a link is refused at commit (trigger identity_registry_has_link).
CREATE TABLE canon.identity_registry (
  person_key       uuid DEFAULT canon.new_person_key() PRIMARY KEY,
  confidence_level text NOT NULL CHECK (confidence_level IN ('HIGH', 'MEDIUM', 'LOW')),
  primary_phone    text,
  primary_license  text,
  primary_name     text,
  created_run_id   bigint REFERENCES canon.ingestion_runs(id),
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE CONSTRAINT TRIGGER identity_registry_has_link
  AFTER INSERT ON canon.identity_registry
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW
  EXECUTE FUNCTION canon.enforce_person_has_link();

COMMENT ON TABLE canon.identity_registry IS
  'One row per canonical person. Created only together with the link that needs it.';

-- snapshot of sql/canon/canon.claims_yango_cabinet_14d.sql
-- The claims (SPEC 7c): one row per lead and milestone. Inserted by canon.insert_missing_claims;
-- finance sets paid or rejected, and the job never changes such a claim (trigger
-- claims_protect_settled; canon_internal.claims_settled keeps their record).
CREATE TABLE canon.claims_yango_cabinet_14d (
  lead_source_pk  text NOT NULL,
  milestone       integer NOT NULL CHECK (milestone > 0),
  person_key      uuid REFERENCES canon.identity_registry(person_key),
  driver_id       text,
  lead_date       date NOT NULL,
  amount_expected numeric(12,2) NOT NULL CHECK (amount_expected >= 0),
  currency        text NOT NULL DEFAULT 'PEN',
  status          text NOT NULL CHECK (status IN ('expected', 'generated', 'paid', 'rejected', 'expired')),
  generated_at    timestamptz,
  paid_at         timestamptz,
  run_id          bigint REFERENCES canon.ingestion_runs(id),
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (lead_source_pk, milestone)
);

CREATE INDEX claims_yango_cabinet_14d_lead_date_status_idx ON canon.claims_yango_cabinet_14d (lead_date, status);

CREATE TRIGGER claims_lead_state_delete
  AFTER DELETE ON canon.claims_yango_cabinet_14d REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.mark_lead_state_dirty_claims();
CREATE TRIGGER claims_lead_state_insert
  AFTER INSERT ON canon.claims_yango_cabinet_14d REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.mark_lead_state_dirty_claims();
CREATE TRIGGER claims_lead_state_update
  AFTER UPDATE ON canon.claims_yango_cabinet_14d REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.mark_lead_state_dirty_claims();
CREATE TRIGGER claims_protect_settled
  BEFORE DELETE OR UPDATE ON canon.claims_yango_cabinet_14d
  FOR EACH ROW
  EXECUTE FUNCTION canon.protect_settled_claims();
CREATE TRIGGER claims_record_settled_delete
  AFTER DELETE ON canon.claims_yango_cabinet_14d REFERENCING OLD TABLE AS old_claims
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.protect_settled_claims();
CREATE TRIGGER claims_record_settled_insert
  AFTER INSERT ON canon.claims_yango_cabinet_14d REFERENCING NEW TABLE AS new_claims
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.protect_settled_claims();
CREATE TRIGGER claims_record_settled_truncate
  AFTER TRUNCATE ON canon.claims_yango_cabinet_14d
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.protect_settled_claims();
CREATE TRIGGER claims_record_settled_update
  AFTER UPDATE ON canon.claims_yango_cabinet_14d REFERENCING OLD TABLE AS old_claims NEW TABLE AS new_claims
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.protect_settled_claims();

COMMENT ON TABLE canon.claims_yango_cabinet_14d IS
  'One claim per (lead_source_pk, milestone). The job never overwrites a paid or rejected claim.';

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

-- snapshot of sql/canon/canon.identity_links.sql
-- Source record (a lead or a driver) to canonical person (SPEC 5). Written by
-- canon.link_decisions and the ops.* tools; every change is audited (canon.audit_identity_links).
CREATE TABLE canon.identity_links (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  source_table     text NOT NULL CHECK (source_table IN ('module_ct_cabinet_leads', 'drivers')),
  source_pk        text NOT NULL,
  person_key       uuid NOT NULL REFERENCES canon.identity_registry(person_key),
  match_rule       text NOT NULL,
  match_score      numeric(5,2) NOT NULL CHECK ((match_score >= 0) AND (match_score <= 100)),
  confidence_level text NOT NULL CHECK (confidence_level IN ('HIGH', 'MEDIUM', 'LOW')),
  evidence         jsonb NOT NULL DEFAULT '{}'::jsonb,
  linked_at        timestamptz NOT NULL DEFAULT now(),
  run_id           bigint REFERENCES canon.ingestion_runs(id),
  UNIQUE (source_table, source_pk)
);

CREATE INDEX identity_links_person_key_idx ON canon.identity_links (person_key, source_table, linked_at DESC);

CREATE TRIGGER identity_links_audit_delete
  AFTER DELETE ON canon.identity_links REFERENCING OLD TABLE AS old_links
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.audit_identity_links();
CREATE TRIGGER identity_links_audit_insert
  AFTER INSERT ON canon.identity_links REFERENCING NEW TABLE AS new_links
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.audit_identity_links();
CREATE TRIGGER identity_links_audit_update
  AFTER UPDATE ON canon.identity_links REFERENCING OLD TABLE AS old_links NEW TABLE AS new_links
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.audit_identity_links();
CREATE CONSTRAINT TRIGGER identity_links_lead_not_open
  AFTER INSERT OR UPDATE ON canon.identity_links
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW WHEN (new.source_table = 'module_ct_cabinet_leads')
  EXECUTE FUNCTION canon.enforce_lead_not_linked_and_open();
CREATE TRIGGER identity_links_lead_state_delete
  AFTER DELETE ON canon.identity_links REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.mark_lead_state_dirty_links();
CREATE TRIGGER identity_links_lead_state_insert
  AFTER INSERT ON canon.identity_links REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.mark_lead_state_dirty_links();
CREATE TRIGGER identity_links_lead_state_update
  AFTER UPDATE ON canon.identity_links REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.mark_lead_state_dirty_links();
CREATE TRIGGER identity_links_mark_lead_pending
  AFTER DELETE OR UPDATE OF source_table, source_pk ON canon.identity_links
  FOR EACH ROW
  EXECUTE FUNCTION canon.mark_lead_keys_pending();
CREATE CONSTRAINT TRIGGER identity_links_person_keeps_link
  AFTER DELETE OR UPDATE OF person_key ON canon.identity_links
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW
  EXECUTE FUNCTION canon.enforce_person_has_link();
CREATE TRIGGER identity_links_truncate_mark_lead_pending
  AFTER TRUNCATE ON canon.identity_links
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.mark_lead_keys_pending();

COMMENT ON TABLE canon.identity_links IS
  'Source record (lead or driver) to canonical person. A driver belongs to at most one person.';

-- snapshot of sql/canon/canon.identity_origin.sql
-- One row per person that came from a cabinet lead, written in the same transaction as the lead's
-- link (SPEC 5).
CREATE TABLE canon.identity_origin (
  person_key        uuid PRIMARY KEY REFERENCES canon.identity_registry(person_key),
  origin_tag        text NOT NULL CHECK (origin_tag = 'cabinet_lead'),
  origin_source_id  text NOT NULL,
  confidence_level  text NOT NULL CHECK (confidence_level IN ('HIGH', 'MEDIUM', 'LOW')),
  origin_created_at timestamp,
  decided_by        text NOT NULL CHECK (decided_by IN ('system', 'manual')),
  decided_at        timestamptz NOT NULL DEFAULT now(),
  run_id            bigint REFERENCES canon.ingestion_runs(id)
);

CREATE INDEX identity_origin_source_idx ON canon.identity_origin (origin_source_id);

COMMENT ON TABLE canon.identity_origin IS
  'One row per person that came from a cabinet lead; written in the same transaction as the lead link.';

-- snapshot of sql/canon/canon.identity_unmatched.sql
-- Why a lead has no person (SPEC 6): reason, normalised keys, up to 5 candidates and the retry
-- bookkeeping. Written by canon.link_decisions and the ops.* tools; people read it through
-- ops.v_cabinet_leads_limbo and the review queue.
CREATE TABLE canon.identity_unmatched (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  source_table     text NOT NULL CHECK (source_table = 'module_ct_cabinet_leads'),
  source_pk        text NOT NULL,
  reason_code      text NOT NULL CHECK (reason_code IN ('AMBIGUOUS', 'CONFLICT', 'WEAK_MATCH_ONLY', 'SHARED_KEY', 'NO_CANDIDATES', 'MISSING_KEYS', 'PROBABLE_MATCH', 'MANUAL_IGNORE')),
  details          jsonb NOT NULL DEFAULT '{}'::jsonb,
  candidates       jsonb NOT NULL DEFAULT '[]'::jsonb CHECK ((jsonb_typeof(candidates) = 'array') AND (jsonb_array_length(candidates) <= 5)),
  status           text NOT NULL DEFAULT 'OPEN' CHECK (status IN ('OPEN', 'RESOLVED', 'IGNORED')),
  first_attempt_at timestamptz NOT NULL DEFAULT now(),
  last_attempt_at  timestamptz NOT NULL DEFAULT now(),
  first_run_id     bigint REFERENCES canon.ingestion_runs(id),
  last_run_id      bigint REFERENCES canon.ingestion_runs(id),
  attempts         integer NOT NULL DEFAULT 1 CHECK (attempts >= 1),
  resolved_at      timestamptz,
  note             text,
  retry_due        boolean NOT NULL DEFAULT false,
  UNIQUE (source_table, source_pk)
) WITH (autovacuum_vacuum_scale_factor='0.02', autovacuum_vacuum_threshold='1000');

CREATE INDEX identity_unmatched_open_idx ON canon.identity_unmatched (last_attempt_at)
  WHERE status = 'OPEN';
CREATE INDEX identity_unmatched_retry_due_idx ON canon.identity_unmatched (last_attempt_at)
  WHERE (status = 'OPEN') AND retry_due;
-- The probabilistic tier's blocks seen from a changed driver (canon.mark_tier_retries_due):
-- the OPEN leads the tier sees whose plate (as evaluated, details) is one edit from its
-- plate, or whose name has one of its name keys. Only those leads, not every lead key: a
-- run appends its few hundred such rows (fast update) and probes a small index.
CREATE INDEX identity_unmatched_plate_edit_keys_idx ON canon.identity_unmatched USING gin (canon.plate_edit_keys(details ->> 'plate_norm'))
  WHERE status = 'OPEN' AND reason_code IN ('NO_CANDIDATES', 'WEAK_MATCH_ONLY', 'PROBABLE_MATCH') AND (details ->> 'plate_norm') IS NOT NULL;
CREATE INDEX identity_unmatched_name_keys_idx ON canon.identity_unmatched USING gin (canon.name_phonetic_keys(details ->> 'name_norm'))
  WHERE status = 'OPEN' AND reason_code IN ('NO_CANDIDATES', 'WEAK_MATCH_ONLY', 'PROBABLE_MATCH') AND (details ->> 'name_norm') IS NOT NULL;

CREATE CONSTRAINT TRIGGER identity_unmatched_lead_not_linked
  AFTER INSERT OR UPDATE ON canon.identity_unmatched
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW WHEN ((new.source_table = 'module_ct_cabinet_leads') AND (new.status = 'OPEN'))
  EXECUTE FUNCTION canon.enforce_lead_not_linked_and_open();
CREATE TRIGGER identity_unmatched_mark_lead_pending
  AFTER DELETE OR UPDATE OF source_table, source_pk ON canon.identity_unmatched
  FOR EACH ROW
  EXECUTE FUNCTION canon.mark_lead_keys_pending();
CREATE TRIGGER identity_unmatched_reopened_due
  BEFORE UPDATE OF status ON canon.identity_unmatched
  FOR EACH ROW WHEN ((new.status = 'OPEN') AND (old.status <> 'OPEN') AND (NOT (new.last_attempt_at IS DISTINCT FROM old.last_attempt_at)))
  EXECUTE FUNCTION canon.mark_reopened_lead_due();
CREATE TRIGGER identity_unmatched_truncate_mark_lead_pending
  AFTER TRUNCATE ON canon.identity_unmatched
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.mark_lead_keys_pending();

COMMENT ON TABLE canon.identity_unmatched IS
  'Why a lead has no person: reason, normalised keys, up to 5 candidates, retry bookkeeping.';
COMMENT ON COLUMN canon.identity_unmatched.retry_due IS
  'True when a driver sharing a key with this lead (phone, plate or licence, as the matcher compares them) was indexed, re-indexed or removed since its last attempt: an OPEN lead is retried only then. Set by canon.mark_retries_due, cleared by each attempt; set when a lead is reopened by hand.';

-- snapshot of sql/canon/canon.lead_driver_labels.sql
-- A person's "not this driver" answer for a lead (docs/matching.md, "Labels"): the pair is
-- never linked again, by the rules (canon.lead_candidates: NOT_THIS_DRIVER) or by the
-- probabilistic tier (canon.probabilistic_decisions), and the labels are the data the
-- tier's thresholds are checked on. Written by ops.not_this_driver.
CREATE TABLE canon.lead_driver_labels (
  lead_source_pk text NOT NULL,
  driver_id      text NOT NULL,
  label          text NOT NULL DEFAULT 'NOT_THIS_DRIVER' CHECK (label = 'NOT_THIS_DRIVER'),
  note           text NOT NULL CHECK (btrim(note) <> ''),
  labelled_by    text NOT NULL DEFAULT current_user,
  labelled_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (lead_source_pk, driver_id)
);

COMMENT ON TABLE canon.lead_driver_labels IS
  'A person''s answer that a lead is not a driver (NOT_THIS_DRIVER): the pair is never linked again by the rules nor the probabilistic tier. Written by ops.not_this_driver.';

-- snapshot of sql/canon/canon.match_fs_versions.sql
-- The versions of the probabilistic tier's parameters (docs/matching.md, "The probabilistic
-- tier"): one row per version, exactly one active. The prior, the bands and the guards of a
-- version; its m and u per comparison level are rows of canon.match_fs_levels. Every link
-- and review row of the tier records the version that made it. A change of the active
-- version, or of which version is active, marks every OPEN unmatched lead due for a retry
-- (triggers match_fs_versions_*); an inactive version marks nothing.
CREATE TABLE canon.match_fs_versions (
  version                  integer PRIMARY KEY CHECK (version > 0),
  active                   boolean NOT NULL DEFAULT false,
  prior_match_share        numeric(6,5) NOT NULL CHECK ((prior_match_share > 0) AND (prior_match_share <= 1)),
  link_probability_min     numeric(7,6) NOT NULL CHECK ((link_probability_min > 0) AND (link_probability_min < 1)),
  review_probability_min   numeric(7,6) NOT NULL CHECK ((review_probability_min > 0) AND (review_probability_min < 1)),
  margin_bits_min          numeric(5,2) NOT NULL CHECK (margin_bits_min >= 0),
  rare_token_max_share     numeric(8,7) NOT NULL CHECK ((rare_token_max_share > 0) AND (rare_token_max_share < 1)),
  name_block_max_drivers   integer NOT NULL CHECK (name_block_max_drivers > 0),
  token_share_min          numeric(10,9) NOT NULL CHECK ((token_share_min > 0) AND (token_share_min < 1)),
  created_at               timestamptz NOT NULL DEFAULT now(),
  notes                    text NOT NULL,
  CHECK (review_probability_min <= link_probability_min)
);

CREATE UNIQUE INDEX match_fs_versions_one_active_idx ON canon.match_fs_versions (active) WHERE active;

-- Only a change that touches the active version (activating one included) marks leads due:
-- an inactive version waiting for a person changes no outcome.
CREATE TRIGGER match_fs_versions_inserted
  AFTER INSERT ON canon.match_fs_versions
  FOR EACH ROW WHEN (NEW.active)
  EXECUTE FUNCTION canon.mark_open_leads_due();

CREATE TRIGGER match_fs_versions_updated
  AFTER UPDATE ON canon.match_fs_versions
  FOR EACH ROW WHEN (OLD.active OR NEW.active)
  EXECUTE FUNCTION canon.mark_open_leads_due();

CREATE TRIGGER match_fs_versions_deleted
  AFTER DELETE ON canon.match_fs_versions
  FOR EACH ROW WHEN (OLD.active)
  EXECUTE FUNCTION canon.mark_open_leads_due();

CREATE TRIGGER match_fs_versions_truncated
  AFTER TRUNCATE ON canon.match_fs_versions
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.mark_open_leads_due();

COMMENT ON TABLE canon.match_fs_versions IS
  'Versions of the probabilistic tier (one active): prior share of leads with a driver, link and review bands (probability), margin in bits between the best two candidates, rare-token guard and name block size, the floor of a token''s share. m/u per level: canon.match_fs_levels. A change of the active version (or of which is active) marks every OPEN unmatched lead due for a retry.';
COMMENT ON COLUMN canon.match_fs_versions.prior_match_share IS
  'Share of the tier''s leads that have a driver at all; the prior of a pair is this share / number of indexed drivers.';
COMMENT ON COLUMN canon.match_fs_versions.margin_bits_min IS
  'A link needs the best candidate''s weight to beat the second''s by at least this many bits (a factor of 2^bits); else the lead goes to review.';
COMMENT ON COLUMN canon.match_fs_versions.rare_token_max_share IS
  'A name token typed by at most this share of the drivers is rare: it is a blocking key, and a link without plate evidence needs one rare token to agree (never on a common name alone). Below 1 / this share drivers (2,000 at 0.0005) no token can be told rare: the name block is off.';

INSERT INTO canon.match_fs_versions (version, active, prior_match_share, link_probability_min, review_probability_min,
                                     margin_bits_min, rare_token_max_share, name_block_max_drivers, token_share_min, notes) VALUES
  (1, true, 0.50000, 0.999000, 0.500000, 6.00, 0.0005000, 200, 0.000001000,
   'm by hand (docs/matching.md, "Where the m and u come from"); u of plates and hire dates estimated on the demo base (canon.estimate_fs_u); bands chosen on npm run bench:quality (residual and hard-negative categories).');

-- snapshot of sql/canon/canon.match_fs_levels.sql
-- The m and u probabilities of each comparison level of the probabilistic tier, per version
-- of canon.match_fs_versions: m = P(level | same person), u = P(level | two random
-- records). A level's weight is log2(m / u) bits. u_kind says how u is read: PAIR, a
-- probability as written; PER_DRIVER, an expected number of drivers at this level for a
-- random lead, divided by the number of indexed drivers at run time (plates: the chance that
-- a random driver shares a plate grows with the base); TOKEN_SHARE, a factor on the share of
-- drivers typing the partner token (canon_internal.name_token_stats: rarity weights). m by
-- hand or by EM (ops.estimate_fs_version). A change of the active version's levels marks
-- every OPEN unmatched lead due for a retry; an inactive version's marks nothing.
CREATE TABLE canon.match_fs_levels (
  version     integer NOT NULL REFERENCES canon.match_fs_versions (version) ON DELETE CASCADE,
  comparison  text NOT NULL CHECK (comparison IN ('PLATE', 'NAME_TOKEN', 'NAME_DRIVER_TOKEN', 'HIRE_DATE', 'PARK')),
  level       text NOT NULL,
  m           numeric(8,7) NOT NULL CHECK ((m > 0) AND (m <= 1)),
  u           numeric(12,9) NOT NULL CHECK (u > 0),
  u_kind      text NOT NULL CHECK (u_kind IN ('PAIR', 'PER_DRIVER', 'TOKEN_SHARE')),
  note        text NOT NULL,
  PRIMARY KEY (version, comparison, level),
  CHECK ((u_kind <> 'PAIR') OR (u <= 1))
);

CREATE TRIGGER match_fs_levels_changed
  AFTER INSERT OR DELETE OR UPDATE ON canon.match_fs_levels
  FOR EACH ROW
  EXECUTE FUNCTION canon.mark_open_leads_due_fs_level();

CREATE TRIGGER match_fs_levels_truncated
  AFTER TRUNCATE ON canon.match_fs_levels
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.mark_open_leads_due();

COMMENT ON TABLE canon.match_fs_levels IS
  'm and u per comparison level and version of the probabilistic tier; weight = log2(m / u). u_kind: PAIR (a probability), PER_DRIVER (expected drivers at the level per lead, / indexed drivers), TOKEN_SHARE (factor on the partner token''s share of drivers). A change of the active version''s levels marks every OPEN unmatched lead due for a retry (canon.mark_open_leads_due_fs_level).';

INSERT INTO canon.match_fs_levels (version, comparison, level, m, u, u_kind, note) VALUES
  (1, 'PLATE', 'EXACT',        0.4500000, 0.150000000, 'PER_DRIVER', 'plates equal; u: 0.15 other drivers share a driver''s plate (shift partners, a car changing hands)'),
  (1, 'PLATE', 'CONFUSION',    0.1200000, 0.010000000, 'PER_DRIVER', 'one character read as another (O/0, I/1, B/8, S/5, Z/2, G/6); such near plates rarely exist'),
  (1, 'PLATE', 'ONE_EDIT',     0.1300000, 0.300000000, 'PER_DRIVER', 'one character changed, missing, extra or two swapped; u: 0.3 drivers one edit from a plate at 50k drivers (canon.estimate_fs_u), it grows with the plates in use'),
  (1, 'PLATE', 'DIFFERENT',    0.3000000, 1.000000000, 'PAIR',       'another car (changed car, or the person); u: nearly every random pair'),
  (1, 'NAME_TOKEN', 'EXACT',   0.7000000, 1.000000000, 'TOKEN_SHARE', 'a lead token equal to a driver token; u: the token''s share of drivers'),
  (1, 'NAME_TOKEN', 'PHONETIC', 0.1000000, 1.000000000, 'TOKEN_SHARE', 'same Spanish phonetic key (QUISPE/KISPE, VASQUEZ/BASQUEZ)'),
  (1, 'NAME_TOKEN', 'TYPO',    0.1200000, 2.000000000, 'TOKEN_SHARE', 'one edit or swap (4+ letters); u: twice the share, other tokens are one edit away too'),
  (1, 'NAME_TOKEN', 'GLUED',   0.0300000, 1.000000000, 'TOKEN_SHARE', 'two tokens typed as one (JUANCARLOS, DELACRUZ); u: the rarer part''s share'),
  (1, 'NAME_TOKEN', 'INITIAL', 0.0200000, 0.250000000, 'PAIR',       'an initial and a token starting with it'),
  (1, 'NAME_TOKEN', 'NONE',    0.0300000, 0.950000000, 'PAIR',       'a lead token with no partner (a nickname, another person''s name)'),
  (1, 'NAME_DRIVER_TOKEN', 'MISSING', 0.3500000, 0.900000000, 'PAIR', 'a driver token the lead does not give (a second given name or surname left out)'),
  (1, 'HIRE_DATE', 'NEAR',     0.6000000, 0.030000000, 'PAIR', 'hired 0 to 30 days after the lead'),
  (1, 'HIRE_DATE', 'CLOSE',    0.1500000, 0.090000000, 'PAIR', 'hired 1 to 30 days before, or 31 to 90 days after the lead'),
  (1, 'HIRE_DATE', 'YEAR',     0.1500000, 0.380000000, 'PAIR', 'hired within a year of the lead otherwise'),
  (1, 'HIRE_DATE', 'FAR',      0.1000000, 0.500000000, 'PAIR', 'hired more than a year before or after the lead'),
  (1, 'PARK', 'TARGET',        0.9000000, 0.600000000, 'PAIR', 'the driver is in the target park (the lead''s)'),
  (1, 'PARK', 'OTHER',         0.1000000, 0.400000000, 'PAIR', 'the driver is in another park');

-- snapshot of sql/canon/canon.match_parameters.sql
-- The parameters of the matching rules (one row; SPEC 6): the name similarity a plate candidate
-- needs, the lead the best name must have over the second, the hire-date window of R3. A change
-- marks every OPEN unmatched lead due (trigger match_parameters_mark_open_due).
CREATE TABLE canon.match_parameters (
  singleton             boolean DEFAULT true PRIMARY KEY CHECK (singleton),
  name_similarity_min   numeric(4,3) NOT NULL DEFAULT 0.66 CHECK ((name_similarity_min > 0) AND (name_similarity_min <= 1)),
  name_gap_min          numeric(4,3) NOT NULL DEFAULT 0.15 CHECK ((name_gap_min >= 0) AND (name_gap_min <= 1)),
  hire_days_before_lead integer NOT NULL DEFAULT 90 CHECK (hire_days_before_lead >= 0),
  hire_days_after_lead  integer NOT NULL DEFAULT 30 CHECK (hire_days_after_lead >= 0),
  updated_at            timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER match_parameters_changed
  AFTER INSERT OR DELETE OR UPDATE OR TRUNCATE ON canon.match_parameters
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.mark_open_leads_due();

COMMENT ON TABLE canon.match_parameters IS
  'Parameters of the matching rules (one row): the name similarity a plate candidate needs, the gap by which the best name must beat the second, the hire-date window of R3. A change marks every OPEN unmatched lead due for a retry.';

INSERT INTO canon.match_parameters (singleton, name_similarity_min, name_gap_min, hire_days_before_lead, hire_days_after_lead) VALUES
  (true, 0.660, 0.150, 90, 30);

-- snapshot of sql/canon/canon.match_rules.sql
-- The matching rules (SPEC 6), strongest first: score and confidence of the link each makes;
-- R4_PROBABILISTIC is the probabilistic tier after them (its score is each link's probability).
-- Read by canon.lead_candidates and canon.lead_decisions. A change marks every OPEN unmatched lead
-- due (trigger match_rules_mark_open_due); docs/matching.md, "Changing a rule".
CREATE TABLE canon.match_rules (
  rule             text PRIMARY KEY CHECK (rule IN ('R1_PHONE_EXACT', 'R2_LICENSE_EXACT', 'R3_PLATE_EXACT_NAME_SIMILAR', 'R3B_PLATE_NAME_NO_DATE', 'R4_PROBABILISTIC')),
  rank             integer NOT NULL UNIQUE CHECK (rank > 0),
  rule_group       text NOT NULL CHECK (rule_group IN ('PHONE', 'LICENSE', 'PLATE', 'PROBABILISTIC')),
  score            integer NOT NULL CHECK ((score >= 0) AND (score <= 100)),
  confidence_level text NOT NULL CHECK (confidence_level IN ('HIGH', 'MEDIUM', 'LOW')),
  description      text NOT NULL
);

CREATE TRIGGER match_rules_changed
  AFTER INSERT OR DELETE OR UPDATE OR TRUNCATE ON canon.match_rules
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.mark_open_leads_due();

COMMENT ON TABLE canon.match_rules IS
  'The matching rules (SPEC 6), strongest first (rank): score and confidence of a link each makes. A change marks every OPEN unmatched lead due for a retry.';

INSERT INTO canon.match_rules (rule, rank, rule_group, score, confidence_level, description) VALUES
  ('R1_PHONE_EXACT', 1, 'PHONE', 95, 'HIGH', 'normalised phone equal (not a shared phone)'),
  ('R2_LICENSE_EXACT', 2, 'LICENSE', 92, 'HIGH', 'normalised licence equal'),
  ('R3_PLATE_EXACT_NAME_SIMILAR', 3, 'PLATE', 85, 'MEDIUM', 'plate equal, name similar, hire date in the window or unknown'),
  ('R3B_PLATE_NAME_NO_DATE', 4, 'PLATE', 80, 'MEDIUM', 'plate equal, name similar, hire date outside the window'),
  ('R4_PROBABILISTIC', 5, 'PROBABILISTIC', 99, 'MEDIUM', 'probabilistic tier (canon.link_probabilistic), after the rules: the link''s score is its probability x 100 (at least the active version''s link band), HIGH at 0.9999 or more');

-- snapshot of sql/canon/canon.settings.sql
-- The product's settings (target park, business time zone, ...): edited with UPDATE, checked
-- against their value_type by the trigger settings_validate; read through canon.setting.
CREATE TABLE canon.settings (
  key         text PRIMARY KEY,
  value       text NOT NULL,
  description text NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now(),
  value_type  text NOT NULL DEFAULT 'TEXT' CHECK (value_type IN ('TEXT', 'IDENTIFIER', 'INTEGER', 'TIME_ZONE')),
  min_value   bigint,
  max_value   bigint,
  CONSTRAINT settings_range_check CHECK (((value_type = 'INTEGER') OR ((min_value IS NULL) AND (max_value IS NULL))) AND ((min_value IS NULL) OR (max_value IS NULL) OR (min_value <= max_value)))
);

CREATE TRIGGER settings_no_truncate
  BEFORE TRUNCATE ON canon.settings
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.enforce_setting_valid();
CREATE TRIGGER settings_validate
  BEFORE INSERT OR DELETE OR UPDATE ON canon.settings
  FOR EACH ROW
  EXECUTE FUNCTION canon.enforce_setting_valid();

COMMENT ON TABLE canon.settings IS
  'Product settings shared by the job and the views (target park, business time zone, ...). Edit with UPDATE; a value invalid for its value_type is refused (trigger settings_validate).';
COMMENT ON COLUMN canon.settings.value_type IS
  'What the value must be: TEXT (anything), IDENTIFIER (not blank, no spaces at its ends), INTEGER (from min_value to max_value), TIME_ZONE (a name of pg_timezone_names). See canon.setting_problem.';
COMMENT ON COLUMN canon.settings.min_value IS
  'Smallest value allowed (INTEGER settings).';
COMMENT ON COLUMN canon.settings.max_value IS
  'Largest value allowed (INTEGER settings).';

INSERT INTO canon.settings (key, value, description, value_type, min_value, max_value) VALUES
  ('target_park_id', '08e20910d81d42658d4334d3f6d10ac0', 'Park whose drivers are preferred by matching and whose leads are claimed.', 'IDENTIFIER', NULL, NULL),
  ('business_timezone', 'America/Lima', 'Time zone that defines "today" for windows, scopes and alerts.', 'TIME_ZONE', NULL, NULL),
  ('shared_phone_min_other_people', '2', 'A lead phone also used by at least this many other leads with dissimilar names is a shared (office) phone, never used by R1.', 'INTEGER', 1, 1000),
  ('alert_week_complete_after_days', '2', 'Days after a lead week (Monday-Sunday) ends before week-over-week alerts treat it as complete; leads arrive about 2 days after lead_created_at.', 'INTEGER', 0, 365),
  ('source_full_read_hours', '24', 'Hours after which summary_daily is read whole by the next run even when the statistics show no write it could not place (a bound on what lost statistics could hide).', 'INTEGER', 1, 8760),
  ('doctor_lead_state_days', '45', 'Days of leads (by lead date) whose stored state doctor compares value by value with the live definition (every lead is checked for membership).', 'INTEGER', 0, 36500),
  ('driver_index_full_refresh_hours', '24', 'Hours between full reconciliations of canon_internal.driver_index with public.drivers: removes deleted drivers (changed and new drivers are found by commit order on every run).', 'INTEGER', 0, 8760),
  ('job_lock_held_max_minutes', '60', 'Minutes after which a session holding the job lock, or a graphile-worker job or queue still locked, is longer than a run can last: status and doctor name it (JOB_LOCK_HELD_TOO_LONG, WORKER_JOB_LOCKED_TOO_LONG).', 'INTEGER', 1, 10080);

-- snapshot of sql/canon/canon.source_contract.sql
-- The upstream columns the product reads and the type family each must have (SPEC 3); checked by
-- canon.check_source_contract at the start of every run.
CREATE TABLE canon.source_contract (
  table_name  text NOT NULL,
  column_name text NOT NULL,
  type_family text NOT NULL CHECK (type_family IN ('text', 'integer', 'timestamp', 'date', 'boolean', 'numeric')),
  PRIMARY KEY (table_name, column_name)
);

COMMENT ON TABLE canon.source_contract IS
  'Columns of the upstream tables the product reads, with the type family each must have.';

INSERT INTO canon.source_contract (table_name, column_name, type_family) VALUES
  ('module_ct_cabinet_leads', 'id', 'integer'),
  ('module_ct_cabinet_leads', 'external_id', 'text'),
  ('module_ct_cabinet_leads', 'lead_created_at', 'timestamp'),
  ('module_ct_cabinet_leads', 'first_name', 'text'),
  ('module_ct_cabinet_leads', 'middle_name', 'text'),
  ('module_ct_cabinet_leads', 'last_name', 'text'),
  ('module_ct_cabinet_leads', 'park_phone', 'text'),
  ('module_ct_cabinet_leads', 'asset_plate_number', 'text'),
  ('drivers', 'driver_id', 'text'),
  ('drivers', 'park_id', 'text'),
  ('drivers', 'first_name', 'text'),
  ('drivers', 'middle_name', 'text'),
  ('drivers', 'last_name', 'text'),
  ('drivers', 'full_name', 'text'),
  ('drivers', 'phone', 'text'),
  ('drivers', 'license_number', 'text'),
  ('drivers', 'license_normalized_number', 'text'),
  ('drivers', 'car_number', 'text'),
  ('drivers', 'car_normalized_number', 'text'),
  ('drivers', 'hire_date', 'date'),
  ('summary_daily', 'driver_id', 'text'),
  ('summary_daily', 'date_file', 'text'),
  ('summary_daily', 'count_orders_completed', 'integer'),
  ('drivers', 'created_at', 'timestamp'),
  ('drivers', 'updated_at', 'timestamp');

-- snapshot of sql/ops/ops.alert_rules.sql
-- The alert rules (SPEC 9) evaluated by ops.check_limbo_alerts; edited with UPDATE and INSERT.
CREATE TABLE ops.alert_rules (
  rule_code         text PRIMARY KEY CHECK (rule_code ~ '^[A-Z0-9_]+$'),
  description       text NOT NULL,
  metric            text NOT NULL CHECK (metric IN ('LEADS', 'NO_IDENTITY', 'NO_DRIVER', 'NO_TRIPS_14D', 'TRIPS_NO_CLAIM', 'OK', 'PCT_WITH_IDENTITY', 'PCT_WITH_DRIVER', 'HOURS_SINCE_LAST_COMPLETED_RUN', 'LAST_RUN_FAILED')),
  measure           text NOT NULL DEFAULT 'CURRENT' CHECK (measure IN ('CURRENT', 'WEEK_OVER_WEEK_PCT')),
  comparison        text NOT NULL CHECK (comparison IN ('>', '>=', '<', '<=', '=')),
  threshold         numeric NOT NULL,
  min_current_value numeric,
  severity          text NOT NULL DEFAULT 'WARNING' CHECK (severity IN ('WARNING', 'CRITICAL')),
  enabled           boolean NOT NULL DEFAULT true,
  CONSTRAINT alert_rules_check CHECK ((measure = 'CURRENT') OR (metric IN ('LEADS', 'NO_IDENTITY', 'NO_DRIVER', 'NO_TRIPS_14D', 'TRIPS_NO_CLAIM', 'OK')))
);

COMMENT ON TABLE ops.alert_rules IS
  'Alert rules evaluated by ops.check_limbo_alerts: metric, measure (CURRENT value, or WEEK_OVER_WEEK_PCT = % change between the last two complete lead weeks), comparison, threshold, optional min_current_value, severity, enabled. Edit with UPDATE/INSERT.';
COMMENT ON COLUMN ops.alert_rules.measure IS
  'CURRENT: the metric now (all leads; runs for run metrics). WEEK_OVER_WEEK_PCT: 100 * (last - previous) / previous over the leads of the last two complete lead weeks; from 0 to more than 0 counts as an unbounded rise.';
COMMENT ON COLUMN ops.alert_rules.min_current_value IS
  'Optional: the rule fires only when the current value is at least this (silences e.g. week-over-week rises from 1 to 2 leads). NULL: no minimum.';

INSERT INTO ops.alert_rules (rule_code, description, metric, measure, comparison, threshold, severity, enabled) VALUES
  ('NO_IDENTITY_ABOVE', 'More than 100 leads without identity (limbo stage NO_IDENTITY).', 'NO_IDENTITY', 'CURRENT', '>', 100, 'WARNING', true),
  ('TRIPS_NO_CLAIM_ABOVE', 'More than 50 leads that reached a milestone without its claim (TRIPS_NO_CLAIM).', 'TRIPS_NO_CLAIM', 'CURRENT', '>', 50, 'WARNING', true),
  ('IDENTITY_SHARE_BELOW', 'Less than 80 % of leads have an identity.', 'PCT_WITH_IDENTITY', 'CURRENT', '<', 80, 'WARNING', true),
  ('NO_IDENTITY_WEEK_OVER_WEEK', 'NO_IDENTITY leads of the last complete lead week up more than 10 % on the week before.', 'NO_IDENTITY', 'WEEK_OVER_WEEK_PCT', '>', 10, 'WARNING', true),
  ('TRIPS_NO_CLAIM_WEEK_OVER_WEEK', 'TRIPS_NO_CLAIM leads of the last complete lead week up more than 5 % on the week before.', 'TRIPS_NO_CLAIM', 'WEEK_OVER_WEEK_PCT', '>', 5, 'WARNING', true),
  ('LAST_COMPLETED_RUN_STALE', 'The last COMPLETED run finished more than 2 hours ago (or there is none).', 'HOURS_SINCE_LAST_COMPLETED_RUN', 'CURRENT', '>', 2, 'CRITICAL', true),
  ('LAST_RUN_FAILED', 'The last finished run FAILED.', 'LAST_RUN_FAILED', 'CURRENT', '=', 1, 'CRITICAL', true);

-- snapshot of sql/ops/ops.alerts.sql
-- Alert incidents (SPEC 9): one open row per rule and subject while the rule fires, resolved when
-- it stops. Written by ops.check_limbo_alerts; notified_at set when the webhook accepted it.
CREATE TABLE ops.alerts (
  id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  rule_code      text NOT NULL,
  subject        text NOT NULL DEFAULT '',
  severity       text NOT NULL CHECK (severity IN ('WARNING', 'CRITICAL')),
  metric         text NOT NULL,
  measure        text NOT NULL,
  comparison     text NOT NULL,
  threshold      numeric NOT NULL,
  first_value    numeric,
  current_value  numeric,
  previous_value numeric,
  change_pct     numeric,
  message        text NOT NULL,
  first_seen_at  timestamptz NOT NULL DEFAULT now(),
  last_seen_at   timestamptz NOT NULL DEFAULT now(),
  resolved_at    timestamptz,
  first_run_id   bigint,
  last_run_id    bigint,
  times_seen     integer NOT NULL DEFAULT 1 CHECK (times_seen >= 1),
  notified_at    timestamptz,
  CONSTRAINT alerts_check CHECK (last_seen_at >= first_seen_at),
  CONSTRAINT alerts_check1 CHECK ((resolved_at IS NULL) OR (resolved_at >= last_seen_at))
);

CREATE INDEX alerts_first_seen_idx ON ops.alerts (first_seen_at DESC);
CREATE UNIQUE INDEX alerts_open_uq ON ops.alerts (rule_code, subject)
  WHERE resolved_at IS NULL;

COMMENT ON TABLE ops.alerts IS
  'Alert incidents recorded by ops.check_limbo_alerts: one open row per (rule_code, subject) while the rule fires (first_seen_at kept, last_seen_at and values updated), resolved_at set when it stops firing. notified_at: when the alert webhook accepted it (NULL: not sent yet).';

-- snapshot of sql/ops/ops.limbo_snapshots.sql
-- Limbo counts of every completed run over all leads (SPEC 9), written by ops.snapshot_limbo
-- (step 8); the time series people read is ops.v_limbo_history.
CREATE TABLE ops.limbo_snapshots (
  run_id               bigint PRIMARY KEY,
  taken_at             timestamptz NOT NULL DEFAULT now(),
  business_date        date NOT NULL,
  leads                integer NOT NULL CHECK (leads >= 0),
  leads_with_identity  integer NOT NULL CHECK (leads_with_identity >= 0),
  leads_with_driver    integer NOT NULL CHECK (leads_with_driver >= 0),
  limbo_no_identity    integer NOT NULL CHECK (limbo_no_identity >= 0),
  limbo_no_driver      integer NOT NULL CHECK (limbo_no_driver >= 0),
  limbo_no_trips_14d   integer NOT NULL CHECK (limbo_no_trips_14d >= 0),
  limbo_trips_no_claim integer NOT NULL CHECK (limbo_trips_no_claim >= 0),
  limbo_ok             integer NOT NULL CHECK (limbo_ok >= 0),
  CONSTRAINT limbo_snapshots_run_id_fkey FOREIGN KEY (run_id) REFERENCES canon.ingestion_runs(id) ON DELETE CASCADE,
  CONSTRAINT limbo_snapshots_check CHECK (((((limbo_no_identity + limbo_no_driver) + limbo_no_trips_14d) + limbo_trips_no_claim) + limbo_ok) = leads)
);

CREATE INDEX limbo_snapshots_taken_at_idx ON ops.limbo_snapshots (taken_at DESC, run_id DESC);

COMMENT ON TABLE ops.limbo_snapshots IS
  'Limbo counts of every completed run over all leads (written by ops.snapshot_limbo, step 8); time series in ops.v_limbo_history.';

-- snapshot of sql/ops/ops.limbo_snapshot_weeks.sql
-- Limbo counts of every completed run per lead week (SPEC 9); they add up to ops.limbo_snapshots.
-- Written by ops.snapshot_limbo (step 8).
CREATE TABLE ops.limbo_snapshot_weeks (
  run_id               bigint NOT NULL,
  week_start           date NOT NULL CHECK (EXTRACT(isodow FROM week_start) = 1),
  leads                integer NOT NULL CHECK (leads >= 0),
  leads_with_identity  integer NOT NULL CHECK (leads_with_identity >= 0),
  leads_with_driver    integer NOT NULL CHECK (leads_with_driver >= 0),
  limbo_no_identity    integer NOT NULL CHECK (limbo_no_identity >= 0),
  limbo_no_driver      integer NOT NULL CHECK (limbo_no_driver >= 0),
  limbo_no_trips_14d   integer NOT NULL CHECK (limbo_no_trips_14d >= 0),
  limbo_trips_no_claim integer NOT NULL CHECK (limbo_trips_no_claim >= 0),
  limbo_ok             integer NOT NULL CHECK (limbo_ok >= 0),
  PRIMARY KEY (run_id, week_start),
  CONSTRAINT limbo_snapshot_weeks_run_id_fkey FOREIGN KEY (run_id) REFERENCES ops.limbo_snapshots(run_id) ON DELETE CASCADE,
  CONSTRAINT limbo_snapshot_weeks_check CHECK (((((limbo_no_identity + limbo_no_driver) + limbo_no_trips_14d) + limbo_trips_no_claim) + limbo_ok) = leads)
);

COMMENT ON TABLE ops.limbo_snapshot_weeks IS
  'Limbo counts of every completed run per lead week (week_start = ISO Monday of lead_date); they add up to ops.limbo_snapshots.';

-- snapshot of sql/canon/canon.v_cabinet_lead_state_counted.sql
-- canon.v_cabinet_lead_state_counted: the live definition of the counters
-- canon_internal.cabinet_lead_state_counts: the stored lead state rows grouped by lead date,
-- stage and flags, with their sums. The counting trigger (canon.count_lead_state_changes)
-- groups its transition rows the same way; the check LEAD_STATE_COUNTS compares the
-- counters with this view and ops.recount_lead_state_counts writes it into them.
CREATE OR REPLACE VIEW canon.v_cabinet_lead_state_counted AS
SELECT s.lead_date,
       s.limbo_stage,
       s.person_key IS NOT NULL AS with_identity,
       s.driver_id IS NOT NULL AS with_driver,
       s.trips_in_window > 0 AS with_trips,
       s.window_days IS NOT NULL AS with_rule,
       coalesce(s.window_days, 0) AS window_days,
       s.reached_m1,
       s.reached_m5,
       s.reached_m25,
       s.has_claim_m1,
       s.has_claim_m5,
       s.has_claim_m25,
       count(*) AS leads,
       sum(s.trips_in_window) AS trips,
       coalesce(sum(s.m1_amount), 0) AS m1_amount,
       coalesce(sum(s.m5_amount), 0) AS m5_amount,
       coalesce(sum(s.m25_amount), 0) AS m25_amount,
       sum(s.paid_claims) AS paid_claims,
       sum(s.paid_amount) AS paid_amount
FROM canon_internal.cabinet_lead_state s
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13;
COMMENT ON VIEW canon.v_cabinet_lead_state_counted IS
  'The stored lead state counted as canon_internal.cabinet_lead_state_counts counts it (by lead_date, stage and flags, with the sums of trips, milestone amounts and paid claims): what the counters must equal.';

-- snapshot of sql/canon/canon.v_claim_rule_periods.sql
-- canon.v_claim_rule_periods: canon.claim_rules turned into consecutive periods
-- [period_from, period_to) during which one rule set applies, one row per period with the
-- window and each milestone's threshold and amount. A lead takes the period of its
-- lead_date, so views read thresholds, amounts and windows from the rules, never literals.
-- canon.enforce_claim_rules_consistent guarantees one rule per milestone and one window per day.
CREATE OR REPLACE VIEW canon.v_claim_rule_periods AS
WITH bounds AS (
  SELECT r.valid_from AS d FROM canon.claim_rules r
  UNION
  SELECT r.valid_to FROM canon.claim_rules r WHERE r.valid_to IS NOT NULL
),
periods AS (
  SELECT b.d AS period_from, lead(b.d) OVER (ORDER BY b.d) AS period_to
  FROM bounds b
)
SELECT p.period_from,
       p.period_to,
       max(r.window_days) AS window_days,
       max(r.currency) AS currency,
       max(r.trips_threshold) FILTER (WHERE r.milestone = 1) AS m1_trips_threshold,
       max(r.amount) FILTER (WHERE r.milestone = 1) AS m1_amount,
       max(r.trips_threshold) FILTER (WHERE r.milestone = 5) AS m5_trips_threshold,
       max(r.amount) FILTER (WHERE r.milestone = 5) AS m5_amount,
       max(r.trips_threshold) FILTER (WHERE r.milestone = 25) AS m25_trips_threshold,
       max(r.amount) FILTER (WHERE r.milestone = 25) AS m25_amount
FROM periods p
JOIN canon.claim_rules r
  ON r.valid_from <= p.period_from
 AND (r.valid_to IS NULL OR p.period_from < r.valid_to)
GROUP BY p.period_from, p.period_to;
COMMENT ON VIEW canon.v_claim_rule_periods IS
  'Claim rules as consecutive periods [period_from, period_to) with window_days, currency and each milestone''s trips threshold and amount.';

-- snapshot of sql/canon/canon.v_driver_name_roles.sql
-- canon.v_driver_name_roles: the live definition of canon_internal.driver_name_roles, every
-- indexed driver (canon.driver_name_roles_live(NULL): tokenises every driver's fields, a
-- full pass; the checks call the function with the drivers they sample).
CREATE OR REPLACE VIEW canon.v_driver_name_roles AS
SELECT l.driver_id, l.given_names, l.surnames, l.indexed_at, l.source_indexed
FROM canon.driver_name_roles_live(NULL) l;
COMMENT ON VIEW canon.v_driver_name_roles IS
  'Live definition of canon_internal.driver_name_roles: per indexed driver, the tokens of first+middle name (given_names) and of last_name (surnames) of the public.drivers row the index holds; source_indexed: that row still exists. A full pass.';

-- snapshot of sql/canon/canon.v_name_token_stats.sql
-- canon.v_name_token_stats: the live definition of canon_internal.name_token_stats: per name
-- token, how many indexed drivers typed it as a given name (first or middle name) and
-- how many as a surname (last name), counted from canon_internal.driver_name_roles. The table is
-- kept equal to it by a trigger (canon.count_name_token_changes); ops.check_invariants
-- compares the two (NAME_TOKEN_STATS). A full pass over the roles: for checks, not for
-- matching (canon.name_token_usage reads the table).
CREATE OR REPLACE VIEW canon.v_name_token_stats AS
SELECT x.token, sum(x.g)::bigint AS as_given, sum(x.s)::bigint AS as_surname
FROM (
  SELECT t.token, 1 AS g, 0 AS s FROM canon_internal.driver_name_roles r CROSS JOIN unnest(r.given_names) t (token)
  UNION ALL
  SELECT t.token, 0, 1 FROM canon_internal.driver_name_roles r CROSS JOIN unnest(r.surnames) t (token)
) x
GROUP BY x.token;
COMMENT ON VIEW canon.v_name_token_stats IS
  'Live definition of canon_internal.name_token_stats: indexed drivers typing each token as a given name (as_given) and as a surname (as_surname), from canon_internal.driver_name_roles. Full pass: for checks.';

-- snapshot of sql/canon/canon.v_person_driver.sql
-- canon.v_person_driver: THE driver of each canonical person, used by every view and by
-- claim generation so that they never disagree (SPEC 8, predecessor defect 10): the
-- driver linked to the person; if several, the most recently linked
-- (identity_links.linked_at DESC, then driver_id ASC). Written as an anti-join, not
-- DISTINCT ON, so the planner can look up one person by index or hash-join all of them.
CREATE OR REPLACE VIEW canon.v_person_driver AS
SELECT dl.person_key,
       dl.source_pk AS driver_id
FROM canon.identity_links dl
WHERE dl.source_table = 'drivers'
  AND NOT EXISTS (
    SELECT 1
    FROM canon.identity_links newer
    WHERE newer.source_table = 'drivers'
      AND newer.person_key = dl.person_key
      AND (newer.linked_at > dl.linked_at
           OR (newer.linked_at = dl.linked_at AND newer.source_pk < dl.source_pk))
  );
COMMENT ON VIEW canon.v_person_driver IS
  'One driver per person: the most recently linked (linked_at DESC, then driver_id). Every limbo and claim view takes the driver from here.';

-- snapshot of sql/ops/ops.v_cabinet_14d_funnel_weekly.sql
-- ops.v_cabinet_14d_funnel_weekly: the 14-day funnel per lead week (ISO Monday of
-- lead_date): leads, with identity, with driver, with trips, milestones reached, claims
-- expected / present / missing with amounts, leads per limbo stage and percentages.
-- The counts are those of ops.v_cabinet_leads_limbo (lead rows) and
-- ops.v_cabinet_claims_expected_14d (claims: lead keys x milestones, a key shared by two
-- rows claims once), read from the stored state's counters corrected for the rows that
-- may not be current (ops.funnel_week_counts: no pass over every lead); a test compares
-- them with the views (test/sql/ops.funnel_week_counts.test.ts). By construction
-- claims_expected = claims_present + claims_missing and the stage counts add up to leads.
-- An amount is 0 where no claim is counted (as a sum over no row would be).
CREATE OR REPLACE VIEW ops.v_cabinet_14d_funnel_weekly AS
SELECT f.week_start,
       f.leads,
       f.leads_with_identity,
       f.leads_with_driver,
       f.leads_with_trips_14d,
       f.leads_window_open,
       f.reached_m1_14d,
       f.reached_m5_14d,
       f.reached_m25_14d,
       f.trips_14d,
       f.claims_expected,
       CASE WHEN f.claims_expected = 0 THEN 0 ELSE f.claims_expected_amount END AS claims_expected_amount,
       f.claims_present,
       CASE WHEN f.claims_present = 0 THEN 0 ELSE f.claims_present_amount END AS claims_present_amount,
       f.claims_expected - f.claims_present AS claims_missing,
       CASE WHEN f.claims_expected = f.claims_present THEN 0
            ELSE f.claims_expected_amount - f.claims_present_amount END AS claims_missing_amount,
       f.claims_paid,
       CASE WHEN f.claims_paid = 0 THEN 0 ELSE f.claims_paid_amount END AS claims_paid_amount,
       f.limbo_no_identity,
       f.limbo_no_driver,
       f.limbo_no_trips_14d,
       f.limbo_trips_no_claim,
       f.limbo_ok,
       round(100.0 * f.leads_with_identity / nullif(f.leads, 0), 2) AS pct_with_identity,
       round(100.0 * f.leads_with_driver / nullif(f.leads, 0), 2) AS pct_with_driver,
       round(100.0 * f.leads_with_trips_14d / nullif(f.leads, 0), 2) AS pct_with_trips_14d,
       round(100.0 * f.limbo_ok / nullif(f.leads, 0), 2) AS pct_ok,
       round(100.0 * f.claims_present / nullif(f.claims_expected, 0), 2) AS pct_claims_present
FROM ops.funnel_week_counts() f;
COMMENT ON VIEW ops.v_cabinet_14d_funnel_weekly IS
  'Weekly 14-day funnel (week_start = ISO Monday of lead_date): the counts of ops.v_cabinet_leads_limbo and ops.v_cabinet_claims_expected_14d per lead week, read from the stored state''s counters corrected for the rows that may not be current (ops.funnel_week_counts); percentages are of leads (pct_claims_present of claims expected).';

-- snapshot of sql/ops/ops.v_cabinet_claims_duplicated.sql
-- ops.v_cabinet_claims_duplicated: for finance, every claim made twice for one cabinet
-- lead (under lead keys that differ only by blanks at their ends, which are one lead since
-- canon.lead_source_pk says so) and set aside by ops.repair_lead_keys, beside the claim
-- kept for that lead and milestone, with what to do about it:
--   SELECT * FROM ops.v_cabinet_claims_duplicated WHERE duplicate_kind = 'PAID_TWICE';
--   SELECT duplicate_kind, count(*), sum(duplicate_amount) FROM ops.v_cabinet_claims_duplicated GROUP BY 1;
CREATE OR REPLACE VIEW ops.v_cabinet_claims_duplicated AS
SELECT d.lead_source_pk,
       d.milestone,
       d.lead_date,
       d.currency,
       d.claimed_as AS duplicate_claimed_as,
       canon.show_blanks(d.claimed_as) AS duplicate_claimed_as_shown,
       d.status AS duplicate_status,
       d.amount_expected AS duplicate_amount,
       d.paid_at AS duplicate_paid_at,
       d.generated_at AS duplicate_generated_at,
       d.person_key AS duplicate_person_key,
       d.driver_id AS duplicate_driver_id,
       d.kept_claimed_as,
       c.status AS kept_status,
       c.amount_expected AS kept_amount,
       c.paid_at AS kept_paid_at,
       c.driver_id AS kept_driver_id,
       k.duplicate_kind,
       CASE k.duplicate_kind
         WHEN 'PAID_TWICE' THEN format('M%s of lead %s was paid twice (%s %s under %s, again under %s): the second payment, %s %s, is owed back.',
                                       d.milestone, canon.show_blanks(d.lead_source_pk), d.amount_expected, d.currency,
                                       canon.show_blanks(d.kept_claimed_as), canon.show_blanks(d.claimed_as), d.amount_expected, d.currency)
         WHEN 'DUPLICATE_PAID' THEN format('M%s of lead %s was paid under %s, but the claim kept (%s) is %s: check which one the platform paid.',
                                           d.milestone, canon.show_blanks(d.lead_source_pk), canon.show_blanks(d.claimed_as),
                                           canon.show_blanks(d.kept_claimed_as), coalesce(c.status, 'gone'))
         WHEN 'DUPLICATE_REJECTED' THEN format('M%s of lead %s was also claimed under %s and rejected: nothing to do.',
                                               d.milestone, canon.show_blanks(d.lead_source_pk), canon.show_blanks(d.claimed_as))
         ELSE format('M%s of lead %s was also claimed under %s (%s, %s %s): never submit it; the lead''s claim is the one kept (%s).',
                     d.milestone, canon.show_blanks(d.lead_source_pk), canon.show_blanks(d.claimed_as), d.status,
                     d.amount_expected, d.currency, coalesce(c.status, 'gone'))
       END AS finance_action,
       d.set_aside_at,
       d.set_aside_by,
       d.repair_run_id,
       d.note
FROM canon.claims_duplicates d
LEFT JOIN canon.claims_yango_cabinet_14d c ON c.lead_source_pk = d.lead_source_pk AND c.milestone = d.milestone
CROSS JOIN LATERAL (
  SELECT CASE WHEN d.status = 'paid' AND c.status = 'paid' THEN 'PAID_TWICE'
              WHEN d.status = 'paid' THEN 'DUPLICATE_PAID'
              WHEN d.status = 'rejected' THEN 'DUPLICATE_REJECTED'
              ELSE 'DUPLICATE_NOT_SETTLED'
         END AS duplicate_kind
) k;
COMMENT ON VIEW ops.v_cabinet_claims_duplicated IS
  'Claims made twice for one lead (keys that differ only by blanks at their ends), set aside in canon.claims_duplicates, beside the claim kept: duplicate_kind PAID_TWICE / DUPLICATE_PAID / DUPLICATE_REJECTED / DUPLICATE_NOT_SETTLED and finance_action.';

-- snapshot of sql/ops/ops.v_limbo_history.sql
-- ops.v_limbo_history: the time series of limbo counts, one row per snapshot (one per
-- completed run, ops.limbo_snapshots), oldest first, with shares and the change of each
-- stage since the previous snapshot. Read by the report, `cabinet-leads status` and people:
--   SELECT taken_at, limbo_no_identity, limbo_no_identity_change FROM ops.v_limbo_history
--   ORDER BY taken_at DESC LIMIT 20;
-- Per lead week: SELECT * FROM ops.limbo_snapshot_weeks WHERE run_id = ...
CREATE OR REPLACE VIEW ops.v_limbo_history AS
SELECT s.run_id,
       s.taken_at,
       s.business_date,
       s.leads,
       s.leads_with_identity,
       s.leads_with_driver,
       round(100.0 * s.leads_with_identity / nullif(s.leads, 0), 2) AS pct_with_identity,
       round(100.0 * s.leads_with_driver / nullif(s.leads, 0), 2) AS pct_with_driver,
       s.limbo_no_identity,
       s.limbo_no_driver,
       s.limbo_no_trips_14d,
       s.limbo_trips_no_claim,
       s.limbo_ok,
       lag(s.run_id) OVER w AS previous_run_id,
       s.leads - lag(s.leads) OVER w AS leads_change,
       s.limbo_no_identity - lag(s.limbo_no_identity) OVER w AS limbo_no_identity_change,
       s.limbo_no_driver - lag(s.limbo_no_driver) OVER w AS limbo_no_driver_change,
       s.limbo_no_trips_14d - lag(s.limbo_no_trips_14d) OVER w AS limbo_no_trips_14d_change,
       s.limbo_trips_no_claim - lag(s.limbo_trips_no_claim) OVER w AS limbo_trips_no_claim_change,
       s.limbo_ok - lag(s.limbo_ok) OVER w AS limbo_ok_change
FROM ops.limbo_snapshots s
WINDOW w AS (ORDER BY s.taken_at, s.run_id);
COMMENT ON VIEW ops.v_limbo_history IS
  'Time series of limbo snapshots (one per completed run): leads per stage, shares with identity / driver, and the change of each stage since the previous snapshot.';

-- snapshot of sql/ops/ops.v_shared_keys.sql
-- ops.v_shared_keys: key values used by several people, with their frequency: phones on
-- leads under different names (an office phone: never evidence for R1), phones on
-- several drivers, and plates on several drivers (shift drivers: R3 lets the name decide).
CREATE OR REPLACE VIEW ops.v_shared_keys AS
WITH lead_phones AS (
  SELECT k.phone_norm AS key_value, count(*) AS leads, count(DISTINCT k.name_norm) AS lead_names
  FROM canon_internal.lead_keys k
  WHERE k.phone_norm IS NOT NULL
  GROUP BY k.phone_norm
  HAVING count(DISTINCT k.name_norm) > 1
),
driver_phones AS (
  SELECT i.phone_norm AS key_value, count(*) AS drivers, count(DISTINCT i.name_norm) AS driver_names
  FROM canon_internal.driver_index i
  WHERE i.phone_norm IS NOT NULL
  GROUP BY i.phone_norm
  HAVING count(*) > 1
),
driver_plates AS (
  SELECT i.plate_norm AS key_value, count(*) AS drivers, count(DISTINCT i.name_norm) AS driver_names
  FROM canon_internal.driver_index i
  WHERE i.plate_norm IS NOT NULL
  GROUP BY i.plate_norm
  HAVING count(*) > 1
)
SELECT 'PHONE'::text AS key_type,
       coalesce(lp.key_value, dp.key_value) AS key_value,
       coalesce(lp.leads, 0) AS leads,
       coalesce(lp.lead_names, 0) AS lead_distinct_names,
       coalesce(dp.drivers, 0) AS drivers,
       coalesce(dp.driver_names, 0) AS driver_distinct_names
FROM lead_phones lp
FULL JOIN driver_phones dp ON dp.key_value = lp.key_value
UNION ALL
SELECT 'PLATE', pl.key_value, 0, 0, pl.drivers, pl.driver_names
FROM driver_plates pl;
COMMENT ON VIEW ops.v_shared_keys IS 'Phones and plates used by several people (leads under different names, several drivers), with their frequency.';

-- snapshot of sql/public/public.drivers.sql
-- Upstream source table (SPEC 3): the park's drivers. Owned upstream: created here only when
-- absent (demo and test databases), never altered; canon.check_source_contract verifies the
-- columns the product reads. Read by canon.refresh_driver_index by commit order.
DO $$
BEGIN
  IF to_regclass('public.drivers') IS NULL THEN
    CREATE TABLE public.drivers (
      id                        bigserial,
      driver_id                 varchar NOT NULL,
      park_id                   varchar,
      first_name                varchar,
      middle_name               varchar,
      last_name                 varchar,
      full_name                 varchar,
      phone                     varchar,
      license_number            varchar,
      license_normalized_number varchar,
      car_number                varchar,
      car_normalized_number     varchar,
      car_brand                 varchar,
      car_model                 varchar,
      hire_date                 date,
      fire_date                 date,
      work_status               varchar,
      created_at                timestamp without time zone DEFAULT now(),
      updated_at                timestamp without time zone DEFAULT now()
    );
    CREATE INDEX drivers_driver_id_idx ON public.drivers (driver_id);
    CREATE INDEX drivers_updated_at_idx ON public.drivers (updated_at);
  END IF;
END
$$;

-- snapshot of sql/ops/ops.v_drivers_odd_timestamps.sql
-- ops.v_drivers_odd_timestamps: driver rows whose timestamps say nothing reliable about
-- when they changed: FUTURE_TIMESTAMP (created_at or updated_at more than a day after now
-- in the business time zone, e.g. 2099-01-01) and NO_TIMESTAMP (both NULL). The driver
-- index reads rows by commit order, not by these columns, so such rows are indexed like
-- any other; they are listed (and counted in each run's driver_index stats) because
-- upstream should fix them.
CREATE OR REPLACE VIEW ops.v_drivers_odd_timestamps AS
SELECT d.driver_id::text AS driver_id,
       d.park_id::text AS park_id,
       d.created_at,
       d.updated_at,
       o.why
FROM public.drivers d
CROSS JOIN LATERAL (SELECT canon.driver_timestamp_oddity(d.updated_at, d.created_at,
                                                         (now() AT TIME ZONE canon.setting('business_timezone')) + interval '1 day') AS why) o
WHERE o.why IS NOT NULL;
COMMENT ON VIEW ops.v_drivers_odd_timestamps IS
  'Driver rows with a timestamp more than a day in the future (FUTURE_TIMESTAMP) or none at all (NO_TIMESTAMP): indexed all the same (by commit order), listed for upstream to fix.';

-- snapshot of sql/public/public.module_ct_cabinet_leads.sql
-- Upstream source table (SPEC 3): the cabinet leads. Owned upstream: created here only when
-- absent (demo and test databases), never altered; canon.check_source_contract verifies the
-- columns the product reads at the start of every run. Read by canon.key_changed_leads by
-- commit order (docs/change-detection.md); written by import-leads.
DO $$
BEGIN
  IF to_regclass('public.module_ct_cabinet_leads') IS NULL THEN
    CREATE TABLE public.module_ct_cabinet_leads (
      id                 serial PRIMARY KEY,
      external_id        varchar,
      activation_city    varchar,
      active_1           boolean,
      active_5           boolean,
      active_10          boolean,
      active_15          boolean,
      active_25          boolean,
      active_50          boolean,
      active_100         boolean,
      asset_color        varchar,
      asset_model        varchar,
      asset_plate_number varchar,
      first_name         varchar,
      last_active_date   date,
      last_name          varchar,
      lead_created_at    timestamp without time zone,
      middle_name        varchar,
      park_name          varchar,
      park_phone         varchar,
      status             varchar,
      tariff             varchar,
      target_city        varchar,
      created_at         timestamp without time zone DEFAULT now()
    );
    CREATE INDEX module_ct_cabinet_leads_lead_created_at_idx ON public.module_ct_cabinet_leads (lead_created_at);
    CREATE INDEX module_ct_cabinet_leads_external_id_idx ON public.module_ct_cabinet_leads (external_id);
  END IF;
END
$$;

-- snapshot of sql/ops/ops.v_cabinet_claims.sql
-- ops.v_cabinet_claims: every claim of canon.claims_yango_cabinet_14d (any status), one
-- row per (lead_source_pk, milestone), with the lead it pays for, as finance reads it
-- (cabinet-leads export claims writes it to CSV or xlsx). The lead columns come from the
-- earliest lead row keyed with the claim's key (canon_internal.lead_keys, kept by every run) that
-- still carries it (canon.lead_source_pk of the row as it is now): a row re-keyed upstream
-- since is never shown for the claim; a key no row carries any more shows no lead columns.
-- lead_name is built as in ops.v_cabinet_leads_limbo (trimmed, single spaces).
--   SELECT status, count(*), sum(amount_expected) FROM ops.v_cabinet_claims
--   WHERE lead_date >= DATE '2026-11-01' GROUP BY status;
CREATE OR REPLACE VIEW ops.v_cabinet_claims AS
SELECT c.lead_source_pk,
       c.lead_date,
       date_trunc('week', c.lead_date::timestamp)::date AS week_start,
       c.milestone,
       c.amount_expected,
       c.currency,
       c.status,
       c.person_key,
       c.driver_id,
       l.lead_id,
       l.lead_name,
       l.park_phone,
       l.asset_plate_number,
       c.generated_at,
       c.paid_at,
       c.run_id
FROM canon.claims_yango_cabinet_14d c
LEFT JOIN LATERAL (
  SELECT r.id AS lead_id,
         nullif(btrim(regexp_replace(concat_ws(' ', r.first_name, r.middle_name, r.last_name), '\s+', ' ', 'g')), '') AS lead_name,
         r.park_phone::text AS park_phone,
         r.asset_plate_number::text AS asset_plate_number
  FROM canon_internal.lead_keys k
  JOIN public.module_ct_cabinet_leads r ON r.id = k.lead_id
  WHERE k.lead_source_pk = c.lead_source_pk
    AND canon.lead_source_pk(r.external_id, r.id) = c.lead_source_pk
  ORDER BY k.lead_id
  LIMIT 1
) l ON true;
COMMENT ON VIEW ops.v_cabinet_claims IS
  'Every claim (lead key x milestone, any status) with amount, currency, status, person, driver, and the lead row it pays for (name, phone, plate; the earliest row that carries the key). What cabinet-leads export claims writes.';

-- snapshot of sql/public/public.summary_daily.sql
-- Upstream source table (SPEC 3): trips per driver and day (date_file is text in two
-- formats). Owned upstream: created here only when absent (demo and test databases), never
-- altered; canon.check_source_contract verifies the columns the product reads. Read by
-- canon.trip_drivers_changed and the lead state.
DO $$
BEGIN
  IF to_regclass('public.summary_daily') IS NULL THEN
    CREATE TABLE public.summary_daily (
      driver_id              varchar,
      date_file              varchar,
      count_orders_completed integer,
      sum_work_time_seconds  numeric,
      created_at             timestamp without time zone DEFAULT now()
    );
    CREATE INDEX summary_daily_driver_id_idx ON public.summary_daily (driver_id);
  END IF;
END
$$;

-- The one object the product adds to an upstream table (SPEC 3 otherwise forbids touching
-- them): trips are looked up per driver and day range [lead_date, lead_date + window_days)
-- on a text date_file with two formats; without an index on the parsed day every lead's
-- window scans the driver's whole history. Rows whose date_file cannot be parsed are
-- indexed under a NULL day, so counting them per driver uses the index too. IF NOT EXISTS:
-- a DBA may build it beforehand without blocking the upstream loader (docs/operations.md):
--   CREATE INDEX CONCURRENTLY summary_daily_driver_trip_date_idx
--     ON public.summary_daily (driver_id, canon.parse_date_file(date_file));
-- Built by the migration, it blocks writes to summary_daily while it builds (10 s for 3M
-- rows, 130 s for 30M on a busy 2-core server; 526 MB for 30M rows). Any change to
-- canon.parse_date_file must REINDEX it.
CREATE INDEX IF NOT EXISTS summary_daily_driver_trip_date_idx
  ON public.summary_daily (driver_id, canon.parse_date_file(date_file));
COMMENT ON INDEX public.summary_daily_driver_trip_date_idx IS
  'Added by cabinet-leads: trips per driver and parsed day for the 14-day claim windows. The only product object on an upstream table.';

-- snapshot of sql/canon/canon.v_cabinet_lead_chain.sql
-- canon.v_cabinet_lead_chain: the chain lead -> person -> driver -> trips in window, one
-- row per dated lead row (a finite lead_created_at; two rows sharing a lead key both appear, with the
-- same person, driver and claims). The one definition read by ops.v_cabinet_leads_limbo,
-- the claim views and canon.generate_cabinet_claims:
--   lead_date = lead_created_at::date; person from the lead link (by lead_source_pk);
--   driver from canon.v_person_driver; window [lead_date, lead_date + window_days) and
--   thresholds/amounts from the claim rules valid on lead_date; trips = summary_daily rows
--   of the driver whose parsed day is in the window, summed (index lookups).
CREATE OR REPLACE VIEW canon.v_cabinet_lead_chain AS
SELECT l.id AS lead_id,
       k.lead_source_pk,
       l.lead_created_at,
       k.lead_date,
       l.park_phone::text AS park_phone,
       l.asset_plate_number::text AS asset_plate_number,
       nullif(btrim(regexp_replace(concat_ws(' ', l.first_name, l.middle_name, l.last_name), '\s+', ' ', 'g')), '') AS lead_name,
       lk.person_key,
       pd.driver_id,
       rp.window_days,
       k.lead_date + rp.window_days AS window_end,
       coalesce(t.trips, 0)::bigint AS trips_in_window,
       coalesce(t.trip_rows, 0)::bigint AS trip_rows_in_window,
       rp.currency,
       rp.m1_trips_threshold,
       rp.m1_amount,
       coalesce(t.trips >= rp.m1_trips_threshold, false) AS reached_m1,
       rp.m5_trips_threshold,
       rp.m5_amount,
       coalesce(t.trips >= rp.m5_trips_threshold, false) AS reached_m5,
       rp.m25_trips_threshold,
       rp.m25_amount,
       coalesce(t.trips >= rp.m25_trips_threshold, false) AS reached_m25,
       (CASE WHEN t.trips >= rp.m1_trips_threshold THEN rp.m1_amount ELSE 0 END
        + CASE WHEN t.trips >= rp.m5_trips_threshold THEN rp.m5_amount ELSE 0 END
        + CASE WHEN t.trips >= rp.m25_trips_threshold THEN rp.m25_amount ELSE 0 END)::numeric(12, 2) AS expected_amount
FROM public.module_ct_cabinet_leads l
CROSS JOIN LATERAL (
  SELECT canon.lead_source_pk(l.external_id, l.id) AS lead_source_pk,
         l.lead_created_at::date AS lead_date
) k
LEFT JOIN canon.identity_links lk
  ON lk.source_table = 'module_ct_cabinet_leads'
 AND lk.source_pk = k.lead_source_pk
LEFT JOIN canon.v_person_driver pd
  ON pd.person_key = lk.person_key
LEFT JOIN canon.v_claim_rule_periods rp
  ON rp.period_from <= k.lead_date
 AND (rp.period_to IS NULL OR k.lead_date < rp.period_to)
LEFT JOIN LATERAL (
  SELECT sum(sd.count_orders_completed) AS trips,
         count(*) AS trip_rows
  FROM public.summary_daily sd
  WHERE sd.driver_id = pd.driver_id
    AND canon.parse_date_file(sd.date_file) >= k.lead_date
    AND canon.parse_date_file(sd.date_file) < k.lead_date + rp.window_days
) t ON true
WHERE isfinite(l.lead_created_at);
COMMENT ON VIEW canon.v_cabinet_lead_chain IS
  'Lead -> person -> driver (canon.v_person_driver) -> trips in [lead_date, lead_date + window_days), with the claim rules of lead_date. One row per dated lead row (finite lead_created_at).';

-- snapshot of sql/canon/canon.v_cabinet_lead_status.sql
-- canon.v_cabinet_lead_status: the one live definition of a lead's state on the chain
-- lead -> person -> driver -> trips in window -> claims (SPEC 8), one row per lead row
-- with lead_created_at: canon.v_cabinet_lead_chain plus the claims present for THIS
-- lead's key (any status) and the limbo stage, first that applies: NO_IDENTITY,
-- NO_DRIVER, NO_TRIPS_14D, TRIPS_NO_CLAIM, OK. Costly over every lead (one trip lookup
-- per lead): canon.refresh_lead_state stores it in canon_internal.cabinet_lead_state for the
-- leads that changed, and the views read the stored rows.
CREATE OR REPLACE VIEW canon.v_cabinet_lead_status AS
SELECT c.lead_id,
       c.lead_source_pk,
       c.lead_date,
       c.person_key,
       c.driver_id,
       c.window_days,
       c.window_end,
       c.trips_in_window,
       c.trip_rows_in_window,
       c.currency,
       c.m1_trips_threshold,
       c.m1_amount,
       c.reached_m1,
       c.m5_trips_threshold,
       c.m5_amount,
       c.reached_m5,
       c.m25_trips_threshold,
       c.m25_amount,
       c.reached_m25,
       c.expected_amount,
       (c1.lead_source_pk IS NOT NULL) AS has_claim_m1,
       (c5.lead_source_pk IS NOT NULL) AS has_claim_m5,
       (c25.lead_source_pk IS NOT NULL) AS has_claim_m25,
       canon.limbo_stage_of(c.person_key, c.driver_id, c.trips_in_window,
                            c.reached_m1, c.reached_m5, c.reached_m25,
                            c1.lead_source_pk IS NOT NULL, c5.lead_source_pk IS NOT NULL,
                            c25.lead_source_pk IS NOT NULL) AS limbo_stage,
       -- Dated lead rows sharing this key, as keyed (canon_internal.lead_keys, by the last read of the
       -- lead rows; a row committed since counts from the next run on): 1 for almost every
       -- lead, which lets the per-key claim views skip sorting every lead.
       1 + (SELECT count(*)::integer FROM canon_internal.lead_keys k2
            WHERE k2.lead_source_pk = c.lead_source_pk AND k2.lead_date IS NOT NULL AND k2.lead_id <> c.lead_id) AS key_rows,
       -- The paid claims of this key's milestones that have a threshold (the claims the
       -- weekly funnel counts as paid for a key held by one lead row), and their amounts.
       (coalesce(c1.status = 'paid' AND c.m1_trips_threshold IS NOT NULL, false)::integer
        + coalesce(c5.status = 'paid' AND c.m5_trips_threshold IS NOT NULL, false)::integer
        + coalesce(c25.status = 'paid' AND c.m25_trips_threshold IS NOT NULL, false)::integer) AS paid_claims,
       (CASE WHEN c1.status = 'paid' AND c.m1_trips_threshold IS NOT NULL THEN c1.amount_expected ELSE 0 END
        + CASE WHEN c5.status = 'paid' AND c.m5_trips_threshold IS NOT NULL THEN c5.amount_expected ELSE 0 END
        + CASE WHEN c25.status = 'paid' AND c.m25_trips_threshold IS NOT NULL THEN c25.amount_expected ELSE 0 END)::numeric(12, 2) AS paid_amount
FROM canon.v_cabinet_lead_chain c
LEFT JOIN canon.claims_yango_cabinet_14d c1 ON c1.lead_source_pk = c.lead_source_pk AND c1.milestone = 1
LEFT JOIN canon.claims_yango_cabinet_14d c5 ON c5.lead_source_pk = c.lead_source_pk AND c5.milestone = 5
LEFT JOIN canon.claims_yango_cabinet_14d c25 ON c25.lead_source_pk = c.lead_source_pk AND c25.milestone = 25;
COMMENT ON VIEW canon.v_cabinet_lead_status IS
  'Live state of every cabinet lead row with lead_created_at: chain, milestones, claims of this key, limbo_stage, paid claims. Stored per lead in canon_internal.cabinet_lead_state by the pipeline.';

-- snapshot of sql/canon/canon.lead_status_live.sql
-- canon.lead_status_live: the live state of one lead row (canon.v_cabinet_lead_status),
-- for canon.v_cabinet_lead_status_current to evaluate the rows whose stored state is not
-- current one by one. A function rather than a subquery so that the planner prices it as
-- the few rows it is called for (ROWS 1, COST), not as the chain of every lead, and never
-- JIT-compiles a count over the view for it; its own statement runs without JIT.
CREATE OR REPLACE FUNCTION canon.lead_status_live(p_lead_id integer)
RETURNS SETOF canon.v_cabinet_lead_status
LANGUAGE sql
STABLE
ROWS 1
COST 10
SET jit = off
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT * FROM canon.v_cabinet_lead_status v WHERE v.lead_id = p_lead_id
$$;
COMMENT ON FUNCTION canon.lead_status_live(integer) IS
  'The live state of one lead row (canon.v_cabinet_lead_status), priced as one row: how canon.v_cabinet_lead_status_current evaluates the rows it cannot read stored.';

-- snapshot of sql/canon/canon.v_cabinet_lead_status_current.sql
-- canon.v_cabinet_lead_status_current: the state every view reads, one row per dated lead
-- row (finite lead_created_at), driven by the lead rows themselves, in one pass over them
-- and the stored state:
-- * the stored row of canon_internal.cabinet_lead_state (as of its evaluated_at) where it is still
--   current: it exists, its key and lead date are the lead row's own, its key is not marked
--   in canon_internal.cabinet_lead_state_dirty (a link or claim changed, whoever wrote it), and the
--   claim rules have not changed since;
-- * any other dated lead row evaluated live (canon.lead_status_live, evaluated_at = now()):
--   a row committed since the last run whatever its id, a row re-keyed or re-dated
--   upstream, a lead whose claim was deleted or link changed in psql a moment ago.
-- So links, claims and the lead rows are always as the tables say; trips are as of the
-- last run that read them (docs/change-detection.md).
CREATE OR REPLACE VIEW canon.v_cabinet_lead_status_current AS
SELECT l.id AS lead_id,
       -- The row's own key and date either way (a stored row is current only when they are
       -- its own): a filter on them reaches the lead rows, not the joins.
       canon.lead_source_pk(l.external_id, l.id) AS lead_source_pk,
       canon.lead_date_of(l.lead_created_at) AS lead_date,
       CASE WHEN v.lead_id IS NULL THEN s.person_key ELSE v.person_key END AS person_key,
       CASE WHEN v.lead_id IS NULL THEN s.driver_id ELSE v.driver_id END AS driver_id,
       CASE WHEN v.lead_id IS NULL THEN s.window_days ELSE v.window_days END AS window_days,
       CASE WHEN v.lead_id IS NULL THEN s.window_end ELSE v.window_end END AS window_end,
       CASE WHEN v.lead_id IS NULL THEN s.trips_in_window ELSE v.trips_in_window END AS trips_in_window,
       CASE WHEN v.lead_id IS NULL THEN s.trip_rows_in_window ELSE v.trip_rows_in_window END AS trip_rows_in_window,
       CASE WHEN v.lead_id IS NULL THEN s.currency ELSE v.currency END AS currency,
       CASE WHEN v.lead_id IS NULL THEN s.m1_trips_threshold ELSE v.m1_trips_threshold END AS m1_trips_threshold,
       CASE WHEN v.lead_id IS NULL THEN s.m1_amount ELSE v.m1_amount END AS m1_amount,
       CASE WHEN v.lead_id IS NULL THEN s.reached_m1 ELSE v.reached_m1 END AS reached_m1,
       CASE WHEN v.lead_id IS NULL THEN s.m5_trips_threshold ELSE v.m5_trips_threshold END AS m5_trips_threshold,
       CASE WHEN v.lead_id IS NULL THEN s.m5_amount ELSE v.m5_amount END AS m5_amount,
       CASE WHEN v.lead_id IS NULL THEN s.reached_m5 ELSE v.reached_m5 END AS reached_m5,
       CASE WHEN v.lead_id IS NULL THEN s.m25_trips_threshold ELSE v.m25_trips_threshold END AS m25_trips_threshold,
       CASE WHEN v.lead_id IS NULL THEN s.m25_amount ELSE v.m25_amount END AS m25_amount,
       CASE WHEN v.lead_id IS NULL THEN s.reached_m25 ELSE v.reached_m25 END AS reached_m25,
       CASE WHEN v.lead_id IS NULL THEN s.expected_amount ELSE v.expected_amount END AS expected_amount,
       CASE WHEN v.lead_id IS NULL THEN s.has_claim_m1 ELSE v.has_claim_m1 END AS has_claim_m1,
       CASE WHEN v.lead_id IS NULL THEN s.has_claim_m5 ELSE v.has_claim_m5 END AS has_claim_m5,
       CASE WHEN v.lead_id IS NULL THEN s.has_claim_m25 ELSE v.has_claim_m25 END AS has_claim_m25,
       CASE WHEN v.lead_id IS NULL THEN s.limbo_stage ELSE v.limbo_stage END AS limbo_stage,
       CASE WHEN v.lead_id IS NULL THEN s.evaluated_at ELSE now() END AS evaluated_at,
       CASE WHEN v.lead_id IS NULL THEN s.key_rows ELSE v.key_rows END AS key_rows
FROM public.module_ct_cabinet_leads l
LEFT JOIN canon_internal.cabinet_lead_state s ON s.lead_id = l.id
LEFT JOIN canon_internal.cabinet_lead_state_dirty d ON d.lead_source_pk = s.lead_source_pk
-- (not current: evaluated live; the condition is a one-time filter of this subquery, so
-- a current row costs no evaluation)
LEFT JOIN LATERAL (
  SELECT x.*
  FROM canon.lead_status_live(l.id) x
  WHERE s.lead_id IS NULL
     OR s.lead_date IS DISTINCT FROM canon.lead_date_of(l.lead_created_at)
     OR s.lead_source_pk IS DISTINCT FROM canon.lead_source_pk(l.external_id, l.id)
     OR d.lead_source_pk IS NOT NULL
     OR (SELECT m.full_refresh_needed FROM canon_internal.cabinet_lead_state_meta m)
  OFFSET 0
) v ON true
WHERE isfinite(l.lead_created_at);
COMMENT ON VIEW canon.v_cabinet_lead_status_current IS
  'One row per dated cabinet lead row: the stored state (canon_internal.cabinet_lead_state) where it is current (same key and date, key not marked dirty, rules unchanged), else the live state. Read by ops.v_cabinet_leads_limbo and the claim views.';

-- snapshot of sql/canon/canon.v_driver_daily_trips.sql
-- canon.v_driver_daily_trips: completed trips per driver and day from public.summary_daily,
-- several rows of one driver and day summed, both date formats parsed. For people and
-- reports: the claim windows sum the same rows directly through the index (same result).
-- Rows without a driver or a parseable day are not here: see ops.v_trip_rows_unparseable.
CREATE OR REPLACE VIEW canon.v_driver_daily_trips AS
SELECT sd.driver_id::text AS driver_id,
       canon.parse_date_file(sd.date_file) AS trip_date,
       coalesce(sum(sd.count_orders_completed), 0)::bigint AS trips,
       count(*)::integer AS source_rows
FROM public.summary_daily sd
WHERE sd.driver_id IS NOT NULL
  AND canon.parse_date_file(sd.date_file) IS NOT NULL
GROUP BY sd.driver_id, canon.parse_date_file(sd.date_file);
COMMENT ON VIEW canon.v_driver_daily_trips IS
  'Completed trips per driver and day (summary_daily rows summed, DD-MM-YYYY and YYYY-MM-DD parsed). Filter on driver_id.';

-- snapshot of sql/ops/ops.v_cabinet_claims_expected_14d.sql
-- ops.v_cabinet_claims_expected_14d: one row per lead key and milestone of the claim rules
-- on its lead date: whether a claim is expected (the lead's driver reached the threshold in
-- [lead_date, window_end_14d)) and why, next to the claim actually present for THIS key.
-- Same lead state as the limbo view and canon.generate_cabinet_claims
-- (canon.v_cabinet_lead_status_current: stored by the pipeline, live for newer leads).
-- A key shared by two lead rows is shown once, from the earliest row that reached the
-- milestone (else the earliest row), which is the row generation takes; only those keys
-- (key_rows > 1 in the lead state) are sorted.
CREATE OR REPLACE VIEW ops.v_cabinet_claims_expected_14d AS
SELECT e.lead_source_pk,
       e.lead_id,
       e.lead_date,
       e.person_key,
       e.driver_id,
       e.milestone,
       e.trips_threshold,
       e.amount,
       e.trips_14d,
       e.window_end_14d,
       CASE WHEN e.window_end_14d IS NULL THEN NULL
            -- today once per query (an InitPlan), not a settings lookup per lead
            WHEN (SELECT canon.business_today()) < e.window_end_14d THEN 'OPEN'
            ELSE 'CLOSED' END AS window_status,
       e.expected,
       CASE
         WHEN e.person_key IS NULL THEN 'NO_IDENTITY'
         WHEN e.driver_id IS NULL THEN 'NO_DRIVER'
         WHEN e.expected THEN 'REACHED'
         ELSE 'NOT_REACHED'
       END AS reason,
       cl.status AS claim_status,
       date_trunc('week', e.lead_date::timestamp)::date AS week_start,
       e.currency,
       cl.amount_expected AS claim_amount
FROM (
  -- A key held by one lead row (almost all): that row, no sort.
  SELECT c.lead_source_pk, c.lead_id, c.lead_date, c.person_key, c.driver_id,
         m.milestone, m.trips_threshold, m.amount, c.currency,
         c.trips_in_window AS trips_14d, c.window_end AS window_end_14d,
         m.reached AS expected
  FROM canon.v_cabinet_lead_status_current c
  CROSS JOIN LATERAL canon.milestone_rows(c.m1_trips_threshold, c.m1_amount, c.reached_m1,
                                          c.m5_trips_threshold, c.m5_amount, c.reached_m5,
                                          c.m25_trips_threshold, c.m25_amount, c.reached_m25) m
  WHERE m.trips_threshold IS NOT NULL
    AND c.key_rows = 1
  UNION ALL
  (SELECT DISTINCT ON (c.lead_source_pk, m.milestone)
         c.lead_source_pk, c.lead_id, c.lead_date, c.person_key, c.driver_id,
         m.milestone, m.trips_threshold, m.amount, c.currency,
         c.trips_in_window AS trips_14d, c.window_end AS window_end_14d,
         m.reached AS expected
  FROM canon.v_cabinet_lead_status_current c
  CROSS JOIN LATERAL canon.milestone_rows(c.m1_trips_threshold, c.m1_amount, c.reached_m1,
                                          c.m5_trips_threshold, c.m5_amount, c.reached_m5,
                                          c.m25_trips_threshold, c.m25_amount, c.reached_m25) m
  WHERE m.trips_threshold IS NOT NULL
    AND c.key_rows > 1
  ORDER BY c.lead_source_pk, m.milestone, m.reached DESC, c.lead_date, c.lead_id)
) e
LEFT JOIN canon.claims_yango_cabinet_14d cl
  ON cl.lead_source_pk = e.lead_source_pk
 AND cl.milestone = e.milestone;
COMMENT ON VIEW ops.v_cabinet_claims_expected_14d IS
  'Lead key x milestone: trips threshold and amount from canon.claim_rules, trips in window, expected (reached) and reason (REACHED, NOT_REACHED, NO_DRIVER, NO_IDENTITY), and the status of the claim present for this key.';

-- snapshot of sql/ops/ops.v_cabinet_claims_gap_14d.sql
-- ops.v_cabinet_claims_gap_14d: claims that should exist but have no row in
-- canon.claims_yango_cabinet_14d (expected in ops.v_cabinet_claims_expected_14d, no claim
-- for that lead key and milestone). The next run generates those of leads within its
-- days_back; older ones need canon.generate_cabinet_claims(NULL, <lead_date>).
CREATE OR REPLACE VIEW ops.v_cabinet_claims_gap_14d AS
SELECT e.lead_source_pk,
       e.lead_id,
       e.lead_date,
       e.week_start,
       e.person_key,
       e.driver_id,
       e.milestone,
       e.amount,
       e.currency,
       e.trips_14d,
       e.window_end_14d,
       e.window_status,
       'CLAIM_NOT_GENERATED'::text AS gap_reason,
       format('Lead %s reached M%s (%s trips, threshold %s) in [%s, %s) but has no claim; run the pipeline, or SELECT canon.generate_cabinet_claims(NULL, DATE ''%s'').',
              e.lead_source_pk, e.milestone, e.trips_14d, e.trips_threshold, e.lead_date, e.window_end_14d, e.lead_date) AS gap_detail
FROM ops.v_cabinet_claims_expected_14d e
WHERE e.expected
  AND e.claim_status IS NULL;
COMMENT ON VIEW ops.v_cabinet_claims_gap_14d IS
  'Expected claims (lead key x milestone) with no row in canon.claims_yango_cabinet_14d: amount and gap_reason CLAIM_NOT_GENERATED.';

-- snapshot of sql/ops/ops.v_cabinet_leads_limbo.sql
-- ops.v_cabinet_leads_limbo: where every cabinet lead is stuck on the chain
-- lead -> person -> driver -> trips in window -> claim (SPEC 8). Exactly one row per lead
-- row with lead_created_at; rows sharing a lead key show the same key-based data.
-- Built on canon.v_cabinet_lead_status_current: the lead state stored by the pipeline
-- (canon_internal.cabinet_lead_state, defined by canon.v_cabinet_lead_status: driver from
-- canon.v_person_driver, window and amounts from canon.claim_rules, claims of THIS lead's
-- key, any status) as of evaluated_at, the last run that re-evaluated the lead; leads newer
-- than the last run are evaluated live. Stage = first that applies: NO_IDENTITY,
-- NO_DRIVER, NO_TRIPS_14D, TRIPS_NO_CLAIM, OK. Lead columns (phone, plate, name), the
-- unmatched reason and window_status are always current.
--   SELECT limbo_stage, COUNT(*) AS count FROM ops.v_cabinet_leads_limbo
--   GROUP BY limbo_stage ORDER BY count DESC;
CREATE OR REPLACE VIEW ops.v_cabinet_leads_limbo AS
SELECT s.lead_id,
       s.lead_source_pk,
       s.lead_date,
       s.week_start,
       s.park_phone,
       s.asset_plate_number,
       s.lead_name,
       s.person_key,
       s.driver_id,
       s.trips_14d,
       s.window_end_14d,
       s.window_status,
       s.reached_m1_14d,
       s.reached_m5_14d,
       s.reached_m25_14d,
       s.expected_amount_14d,
       s.has_claim_m1,
       s.has_claim_m5,
       s.has_claim_m25,
       s.limbo_stage,
       CASE s.limbo_stage
         WHEN 'NO_IDENTITY' THEN
           CASE
             WHEN s.unmatched_status IS NULL THEN
               format('Lead %s has no identity: not evaluated yet; the next run matches it (leads older than the run''s days_back are not selected: CALL ops.reconcile_cabinet_leads_pipeline(p_days_back => %s)).',
                      s.lead_source_pk, greatest(canon.business_today() - s.lead_date + 1, 0))
             WHEN s.unmatched_status = 'IGNORED' THEN
               format('Lead %s has no identity: %s, marked IGNORED by hand (%s); set status = ''OPEN'' in canon.identity_unmatched to have the job retry it.',
                      s.lead_source_pk, s.reason_code, coalesce(s.unmatched_note, 'no note'))
             WHEN s.reason_code = 'AMBIGUOUS' THEN
               format('Lead %s has no identity: AMBIGUOUS (%s candidate drivers: %s, for plate %s / phone %s); check the candidates in canon.identity_unmatched and link the right driver by hand.',
                      s.lead_source_pk, s.candidate_count, s.candidate_drivers, coalesce(s.asset_plate_number, '-'), coalesce(s.park_phone, '-'))
             WHEN s.reason_code = 'CONFLICT' THEN
               format('Lead %s has no identity: CONFLICT (rules point to different drivers: %s); check the candidates in canon.identity_unmatched and link the right driver by hand.',
                      s.lead_source_pk, s.candidate_drivers)
             WHEN s.reason_code = 'WEAK_MATCH_ONLY' THEN
               format('Lead %s has no identity: WEAK_MATCH_ONLY (plate %s found on %s, but no driver name is similar to "%s"); correct the lead name or link the driver by hand.',
                      s.lead_source_pk, coalesce(s.asset_plate_number, '-'), s.candidate_drivers, coalesce(s.lead_name, ''))
             WHEN s.reason_code = 'SHARED_KEY' THEN
               format('Lead %s has no identity: SHARED_KEY (its only key, phone %s, is shared by several people); add the driver''s plate or license to the lead.',
                      s.lead_source_pk, coalesce(s.park_phone, '-'))
             -- scope once per query (an InitPlan): leads before it are not retried
             WHEN s.reason_code = 'NO_CANDIDATES' AND s.lead_date < (SELECT x.scope_from FROM canon.last_run_scope() x) THEN
               format('Lead %s has no identity: NO_CANDIDATES (no driver had phone %s or plate %s, %s attempts) and its lead date %s is before the runs'' days_back: it is not retried; to retry it once: cabinet-leads reconcile --days-back %s.',
                      s.lead_source_pk, coalesce(s.park_phone, '-'), coalesce(s.asset_plate_number, '-'), s.unmatched_attempts,
                      s.lead_date, canon.business_today() - s.lead_date)
             WHEN s.reason_code = 'NO_CANDIDATES' THEN
               format('Lead %s has no identity: NO_CANDIDATES (no driver has phone %s or plate %s yet, %s attempts); retried when a driver with that phone or plate arrives, else check the lead''s phone and plate.',
                      s.lead_source_pk, coalesce(s.park_phone, '-'), coalesce(s.asset_plate_number, '-'), s.unmatched_attempts)
             WHEN s.reason_code = 'MISSING_KEYS' THEN
               format('Lead %s has no identity: MISSING_KEYS (no phone, plate or license on the lead); complete the lead in the cabinet.',
                      s.lead_source_pk)
             ELSE
               format('Lead %s has no identity: %s; see canon.identity_unmatched.', s.lead_source_pk, s.reason_code)
           END
         WHEN 'NO_DRIVER' THEN
           format('Lead %s is linked to person %s, who has no driver link; link the person''s driver (canon.identity_links, source_table ''drivers'').',
                  s.lead_source_pk, s.person_key)
         WHEN 'NO_TRIPS_14D' THEN
           CASE
             WHEN s.window_end_14d IS NULL THEN
               format('Lead %s has no claim rule for lead date %s; add one to canon.claim_rules.', s.lead_source_pk, s.lead_date)
             WHEN s.window_status = 'OPEN' THEN
               format('Lead %s: driver %s has no trips yet in [%s, %s), window open for %s more day(s); wait for summary_daily.',
                      s.lead_source_pk, s.driver_id, s.lead_date, s.window_end_14d, s.window_end_14d - canon.business_today())
             ELSE
               format('Lead %s: driver %s had no trips in [%s, %s) and the window is closed; nothing to claim unless summary_daily is late (check ops.v_trip_rows_unparseable for driver %s).',
                      s.lead_source_pk, s.driver_id, s.lead_date, s.window_end_14d, s.driver_id)
           END
         WHEN 'TRIPS_NO_CLAIM' THEN
           format('Lead %s: driver %s reached %s with %s trips in [%s, %s) but has no claim for %s; run the pipeline, or SELECT canon.generate_cabinet_claims(NULL, DATE ''%s'') for a lead older than its days_back.',
                  s.lead_source_pk, s.driver_id,
                  concat_ws(', ', CASE WHEN s.reached_m1_14d THEN 'M1' END, CASE WHEN s.reached_m5_14d THEN 'M5' END, CASE WHEN s.reached_m25_14d THEN 'M25' END),
                  s.trips_14d, s.lead_date, s.window_end_14d,
                  concat_ws(', ', CASE WHEN s.reached_m1_14d AND NOT s.has_claim_m1 THEN 'M1' END,
                                  CASE WHEN s.reached_m5_14d AND NOT s.has_claim_m5 THEN 'M5' END,
                                  CASE WHEN s.reached_m25_14d AND NOT s.has_claim_m25 THEN 'M25' END),
                  s.lead_date)
         ELSE
           format('Lead %s is complete: driver %s, %s trips in [%s, %s), a claim for every milestone reached (%s).',
                  s.lead_source_pk, s.driver_id, s.trips_14d, s.lead_date, s.window_end_14d,
                  coalesce(nullif(concat_ws(', ', CASE WHEN s.reached_m1_14d THEN 'M1' END, CASE WHEN s.reached_m5_14d THEN 'M5' END,
                                                  CASE WHEN s.reached_m25_14d THEN 'M25' END), ''), 'none'))
       END AS limbo_reason_detail,
       s.reason_code,
       s.evaluated_at
FROM (
  SELECT c.lead_id,
         c.lead_source_pk,
         c.lead_date,
         date_trunc('week', c.lead_date::timestamp)::date AS week_start,
         l.park_phone::text AS park_phone,
         l.asset_plate_number::text AS asset_plate_number,
         nullif(btrim(regexp_replace(concat_ws(' ', l.first_name, l.middle_name, l.last_name), '\s+', ' ', 'g')), '') AS lead_name,
         c.person_key,
         c.driver_id,
         c.trips_in_window AS trips_14d,
         c.window_end AS window_end_14d,
         CASE WHEN c.window_end IS NULL THEN NULL
              -- today once per query (an InitPlan), not a settings lookup per lead
              WHEN (SELECT canon.business_today()) < c.window_end THEN 'OPEN'
              ELSE 'CLOSED' END AS window_status,
         c.reached_m1 AS reached_m1_14d,
         c.reached_m5 AS reached_m5_14d,
         c.reached_m25 AS reached_m25_14d,
         c.expected_amount AS expected_amount_14d,
         c.has_claim_m1,
         c.has_claim_m5,
         c.has_claim_m25,
         c.limbo_stage,
         CASE WHEN c.person_key IS NULL AND u.status <> 'RESOLVED' THEN u.reason_code END AS reason_code,
         CASE WHEN c.person_key IS NULL AND u.status <> 'RESOLVED' THEN u.status END AS unmatched_status,
         u.note AS unmatched_note,
         u.attempts AS unmatched_attempts,
         jsonb_array_length(u.candidates) AS candidate_count,
         (SELECT coalesce(string_agg(x.value->>'driver_id', ', '), 'none')
          FROM jsonb_array_elements(u.candidates) x) AS candidate_drivers,
         c.evaluated_at
  FROM canon.v_cabinet_lead_status_current c
  LEFT JOIN public.module_ct_cabinet_leads l
    ON l.id = c.lead_id
  LEFT JOIN canon.identity_unmatched u
    ON u.source_table = 'module_ct_cabinet_leads'
   AND u.source_pk = c.lead_source_pk
) s;
COMMENT ON VIEW ops.v_cabinet_leads_limbo IS
  'One row per cabinet lead with lead_created_at: identity, driver, trips in the 14-day window, milestones, claims of this lead, limbo_stage (NO_IDENTITY, NO_DRIVER, NO_TRIPS_14D, TRIPS_NO_CLAIM, OK) and an actionable limbo_reason_detail.';

-- snapshot of sql/ops/ops.v_review_queue.sql
-- ops.v_review_queue: the leads waiting for a person (SPEC 6: AMBIGUOUS, CONFLICT,
-- WEAK_MATCH_ONLY and SHARED_KEY are never decided by the job; PROBABLE_MATCH is the
-- probabilistic tier's middle band), one row per lead key,
-- ranked: most money at stake first, then the oldest. Candidates side by side as jsonb,
-- each with the driver as public.drivers holds it (name, park, phone, plate, hire
-- date), the rule, score and name similarity the matcher recorded at its last
-- attempt (canon.identity_unmatched.candidates), why it was not linked, and what the lead
-- would claim with that driver (trips in the lead's window, amounts of canon.claim_rules).
-- Read by `cabinet-leads review`; for psql:
--   SELECT review_rank, lead_source_pk, reason_code, money_at_stake, jsonb_pretty(candidates)
--   FROM ops.v_review_queue ORDER BY review_rank LIMIT 20;
-- Decide with ops.resolve_lead(key, driver_id, note) or ops.ignore_lead(key, note).
CREATE OR REPLACE VIEW ops.v_review_queue AS
WITH waiting AS (
  SELECT u.source_pk AS lead_source_pk, u.reason_code, u.candidates, u.attempts,
         u.first_attempt_at, u.last_attempt_at, u.details
  FROM canon.identity_unmatched u
  WHERE u.status = 'OPEN'
    AND u.source_table = 'module_ct_cabinet_leads'
    AND u.reason_code IN ('AMBIGUOUS', 'CONFLICT', 'WEAK_MATCH_ONLY', 'SHARED_KEY', 'PROBABLE_MATCH')
),
leads AS (
  -- the key's first dated row (rows sharing a key are one lead)
  SELECT w.*, k.lead_id, k.lead_date, k.lead_name,
         l.park_phone::text AS park_phone, l.asset_plate_number::text AS asset_plate_number,
         rp.window_days, rp.currency,
         rp.m1_trips_threshold, rp.m1_amount, rp.m5_trips_threshold, rp.m5_amount, rp.m25_trips_threshold, rp.m25_amount
  FROM waiting w
  LEFT JOIN LATERAL (
    SELECT k.lead_id, k.lead_date, k.lead_name
    FROM canon_internal.lead_keys k
    WHERE k.lead_source_pk = w.lead_source_pk
    ORDER BY k.lead_date IS NULL, k.lead_id
    LIMIT 1
  ) k ON true
  LEFT JOIN public.module_ct_cabinet_leads l ON l.id = k.lead_id
  LEFT JOIN canon.v_claim_rule_periods rp
    ON rp.period_from <= k.lead_date AND (rp.period_to IS NULL OR k.lead_date < rp.period_to)
),
candidates AS (
  SELECT le.lead_source_pk, c.pos,
         c.value->>'driver_id' AS driver_id,
         c.value->>'rule' AS rule,
         (c.value->>'score')::numeric AS score,
         (c.value->>'name_similarity')::numeric AS name_similarity,
         coalesce((c.value->>'kept')::boolean, c.value->>'reject_reason' IS NULL) AS kept,
         c.value->>'reject_reason' AS reject_reason,
         d.park_id, d.driver_name, d.phone, d.plate, d.hire_date,
         d.park_id IS NOT DISTINCT FROM canon.setting('target_park_id') AS in_target_park,
         d.driver_id IS NULL AS driver_gone,
         coalesce(t.trips, 0)::bigint AS trips_in_window,
         (CASE WHEN t.trips >= le.m1_trips_threshold THEN le.m1_amount ELSE 0 END
          + CASE WHEN t.trips >= le.m5_trips_threshold THEN le.m5_amount ELSE 0 END
          + CASE WHEN t.trips >= le.m25_trips_threshold THEN le.m25_amount ELSE 0 END)::numeric(12, 2) AS amount_in_window,
         CASE WHEN c.value->>'rule' = 'R4_PROBABILISTIC' THEN
           -- the tier's evidence in words, after why it was not linked
           concat_ws(': ',
             CASE WHEN c.value->>'reject_reason' = 'NAME_VETO' THEN 'a given name or surname differs (a relative?)'
                  WHEN c.value->>'reject_reason' = 'NOT_THIS_DRIVER' THEN 'a person said it is not this driver'
                  WHEN c.value->>'reject_reason' = 'DRIVER_DELETED' THEN 'the driver is no longer in public.drivers'
                  WHEN c.pos = 1 THEN CASE le.details->'probabilistic'->>'why_not_linked'
                                        WHEN 'SECOND_CANDIDATE_CLOSE' THEN 'another candidate is nearly as likely'
                                        WHEN 'COMMON_NAME_ONLY' THEN 'only a common name on another car'
                                        ELSE 'probable, not certain' END
                  ELSE 'less likely than the first' END
             || format(' (probability %s)', c.value->>'probability'),
             c.value->>'evidence')
         ELSE CASE c.value->>'reject_reason'
           WHEN 'NAME_NOT_SIMILAR' THEN format('the plate is the same, the name is not similar enough (%s, below 0.66)', c.value->>'name_similarity')
           WHEN 'NAME_VETO' THEN 'the plate is the same and the name close, but a given name or surname differs (a relative?)'
           WHEN 'NAME_LESS_SIMILAR_THAN_BEST' THEN 'another driver of this plate has a clearly more similar name'
           WHEN 'PHONE_SHARED_BY_LEADS' THEN 'the phone is on other leads under other names (an office phone): no evidence'
           WHEN 'PHONE_SHARED_BY_DRIVERS' THEN 'the phone belongs to several drivers with other names: no evidence'
           WHEN 'OTHER_PARK_TARGET_PREFERRED' THEN 'another park: a target park driver was found'
           WHEN 'DRIVER_DELETED' THEN 'the driver is no longer in public.drivers'
           WHEN 'NOT_THIS_DRIVER' THEN 'a person said it is not this driver'
           ELSE CASE le.reason_code
                  WHEN 'AMBIGUOUS' THEN 'fits as well as another driver of the same rule'
                  WHEN 'CONFLICT' THEN 'another rule points to another driver'
                  ELSE 'not decisive on its own'
                END
         END END AS why_not_linked
  FROM leads le
  CROSS JOIN LATERAL jsonb_array_elements(le.candidates) WITH ORDINALITY AS c (value, pos)
  -- The row as one value (to_jsonb): a view naming upstream columns would stop the
  -- upstream owner from altering them; the source contract already checks they exist.
  LEFT JOIN LATERAL (
    SELECT r->>'driver_id' AS driver_id, r->>'park_id' AS park_id,
           coalesce(nullif(btrim(r->>'full_name'), ''),
                    nullif(btrim(concat_ws(' ', r->>'first_name', r->>'middle_name', r->>'last_name')), '')) AS driver_name,
           r->>'phone' AS phone, coalesce(r->>'car_number', r->>'car_normalized_number') AS plate, (r->>'hire_date')::date AS hire_date
    FROM (SELECT to_jsonb(x) AS r FROM public.drivers x WHERE x.driver_id = c.value->>'driver_id' LIMIT 1) y
  ) d ON true
  -- trips of this candidate in the lead's window, as canon.v_cabinet_lead_chain counts them
  LEFT JOIN LATERAL (
    SELECT sum(sd.count_orders_completed) AS trips
    FROM public.summary_daily sd
    WHERE sd.driver_id = c.value->>'driver_id'
      AND canon.parse_date_file(sd.date_file) >= le.lead_date
      AND canon.parse_date_file(sd.date_file) < le.lead_date + le.window_days
  ) t ON true
),
per_lead AS (
  SELECT c.lead_source_pk,
         max(c.amount_in_window) AS money_at_stake,
         jsonb_agg(jsonb_build_object(
           'driver_id', c.driver_id, 'driver_name', c.driver_name, 'park_id', c.park_id,
           'in_target_park', c.in_target_park, 'phone', c.phone, 'plate', c.plate,
           'hire_date', c.hire_date, 'driver_gone', c.driver_gone,
           'rule', c.rule, 'score', c.score, 'name_similarity', c.name_similarity,
           'kept', c.kept, 'reject_reason', c.reject_reason, 'why_not_linked', c.why_not_linked,
           'trips_in_window', c.trips_in_window, 'amount_in_window', c.amount_in_window)
           ORDER BY c.pos) AS candidates
  FROM candidates c
  GROUP BY c.lead_source_pk
)
SELECT row_number() OVER (ORDER BY coalesce(p.money_at_stake, 0) DESC, le.lead_date NULLS LAST, le.lead_source_pk) AS review_rank,
       le.lead_source_pk,
       le.lead_id,
       le.lead_date,
       canon.business_today() - le.lead_date AS age_days,
       le.lead_name,
       le.park_phone,
       le.asset_plate_number,
       le.reason_code,
       coalesce(p.money_at_stake, 0)::numeric(12, 2) AS money_at_stake,
       coalesce(le.currency, 'PEN') AS currency,
       jsonb_array_length(le.candidates) AS candidate_count,
       coalesce(p.candidates, '[]'::jsonb) AS candidates,
       le.attempts,
       le.first_attempt_at,
       le.last_attempt_at
FROM leads le
LEFT JOIN per_lead p ON p.lead_source_pk = le.lead_source_pk;
COMMENT ON VIEW ops.v_review_queue IS
  'Leads waiting for a person (OPEN AMBIGUOUS, CONFLICT, WEAK_MATCH_ONLY, SHARED_KEY, PROBABLE_MATCH), one row per lead key, review_rank 1 first (most money at stake, then oldest), candidates side by side as jsonb (driver, park, phone, plate, hire date, rule, score, why not linked, what the lead would claim with it). Decide with ops.resolve_lead / ops.ignore_lead.';

-- snapshot of sql/ops/ops.v_trip_rows_unparseable.sql
-- ops.v_trip_rows_unparseable: every public.summary_daily row that cannot count as trips
-- of a driver on a day, with the reason, so that no trip row is silently dropped (SPEC 3,
-- 11). Filter on driver_id to use the index; the whole view scans the table.
CREATE OR REPLACE VIEW ops.v_trip_rows_unparseable AS
SELECT sd.driver_id::text AS driver_id,
       sd.date_file::text AS date_file,
       sd.count_orders_completed,
       CASE
         WHEN sd.driver_id IS NULL OR btrim(sd.driver_id) = '' THEN 'MISSING_DRIVER_ID'
         WHEN sd.date_file IS NULL OR btrim(sd.date_file, E' \t\r\n') = '' THEN 'MISSING_DATE'
         WHEN btrim(sd.date_file, E' \t\r\n') ~ '^([0-9]{2}-[0-9]{2}-[0-9]{4}|[0-9]{4}-[0-9]{2}-[0-9]{2})$' THEN 'IMPOSSIBLE_DATE'
         ELSE 'UNKNOWN_DATE_FORMAT'
       END AS reason
FROM public.summary_daily sd
WHERE sd.driver_id IS NULL
   OR btrim(sd.driver_id) = ''
   OR canon.parse_date_file(sd.date_file) IS NULL;
COMMENT ON VIEW ops.v_trip_rows_unparseable IS
  'summary_daily rows that count for no driver and day: MISSING_DRIVER_ID, MISSING_DATE, UNKNOWN_DATE_FORMAT (not DD-MM-YYYY or YYYY-MM-DD), IMPOSSIBLE_DATE (e.g. 31-02-2026).';
