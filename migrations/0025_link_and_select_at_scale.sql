-- Up Migration
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

-- snapshot of migrations/parts/0025_link_and_select_at_scale.sql
-- New persons get time-ordered keys (canon.new_person_key, UUID v7), also when a row is
-- inserted by hand without one. Existing keys stay as they are: v4 and v7 keys are both
-- uuids and compare fine; only where new keys land in the indexes changes.
ALTER TABLE canon.identity_registry ALTER COLUMN person_key SET DEFAULT canon.new_person_key();

-- The two "linked and OPEN" constraint triggers queue an event only for the rows their
-- function checks (its own first condition, now also the trigger's WHEN): a driver link
-- or an unmatched row that is not OPEN can never violate it. Each queued event is a
-- function call at commit: the pipeline's driver links and resolved rows were about
-- 2,000 such calls per run that could only return. Same rule, checked at the same time.
DROP TRIGGER IF EXISTS identity_links_lead_not_open ON canon.identity_links;
CREATE CONSTRAINT TRIGGER identity_links_lead_not_open
  AFTER INSERT OR UPDATE ON canon.identity_links
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW
  WHEN (NEW.source_table = 'module_ct_cabinet_leads')
  EXECUTE FUNCTION canon.enforce_lead_not_linked_and_open();
DROP TRIGGER IF EXISTS identity_unmatched_lead_not_linked ON canon.identity_unmatched;
CREATE CONSTRAINT TRIGGER identity_unmatched_lead_not_linked
  AFTER INSERT OR UPDATE ON canon.identity_unmatched
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW
  WHEN (NEW.source_table = 'module_ct_cabinet_leads' AND NEW.status = 'OPEN')
  EXECUTE FUNCTION canon.enforce_lead_not_linked_and_open();

-- snapshot of sql/canon/canon.match_cabinet_leads.sql
-- canon.match_cabinet_leads: pipeline steps 5 and 6. Keys new lead rows, selects the
-- batch (at most p_limit lead keys with lead_date >= p_scope_from that need matching:
-- never evaluated first, then the least recently attempted), decides every lead with
-- canon.lead_decisions and writes the outcome set-based: persons (only with their
-- links), lead and driver links, origins, resolved or upserted unmatched rows.
-- With p_only_limbo the batch also holds linked leads whose person has no driver
-- (NO_DRIVER), which get their missing driver link when it can be found.
CREATE OR REPLACE FUNCTION canon.match_cabinet_leads(p_run_id bigint, p_scope_from date, p_limit integer, p_only_limbo boolean)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET client_min_messages = warning
SET jit = off
AS $$
DECLARE
  v_t timestamptz;
  v_ms jsonb := '{}'::jsonb;
  v_keyed integer;
  v_selected integer;
  v_new_persons integer;
  v_driver_links integer;
  v_lead_links integer;
  v_origins integer;
  v_resolved integer;
  v_unmatched integer;
  v_no_driver_repaired integer := 0;
  v_stats jsonb;
  v_oversized integer;
  v_unkeyed integer[];
  v_max_keyed integer;
  v_gap_scan_scope boolean;
  v_index_changed_at timestamptz;
  v_pending_cleared integer;
  v_evaluated_cleared integer;
  v_retries_skipped integer;
  v_state_found boolean;
  v_retry_checked_from timestamptz;
  v_retry_checked_to timestamptz;
  v_retry_check text;
  v_marked_due integer := 0;
  v_changed_keys bigint;
  v_probe_by_key boolean;
  v_hashjoin text;
  v_mergejoin text;
  v_window bigint;
  v_window_rows bigint;
BEGIN
  -- Step 5a: keys of lead rows not seen before.
  v_t := clock_timestamp();
  v_max_keyed := coalesce((SELECT max(k.lead_id) FROM canon.lead_keys k), 0);
  v_keyed := canon.refresh_lead_keys('{}');
  -- Rows without a key: garbage keys (never keyed, only counted) and rows committed after
  -- higher ids were keyed (keyed now). The whole scope on the first run of the business
  -- day (the day's sweep, as for the lead state), else only rows newer than the keyed
  -- ones: an anti-join over every lead of the scope costs what the scope costs.
  v_gap_scan_scope := (SELECT m.last_sweep_date FROM canon.cabinet_lead_state_meta m) IS DISTINCT FROM canon.business_today();
  SELECT count(*) FILTER (WHERE length(canon.lead_source_pk(l.external_id, l.id)) > 200),
         coalesce(array_agg(l.id) FILTER (WHERE length(canon.lead_source_pk(l.external_id, l.id)) <= 200), '{}')
  INTO v_oversized, v_unkeyed
  FROM public.module_ct_cabinet_leads l
  WHERE l.lead_created_at >= p_scope_from::timestamp
    AND (v_gap_scan_scope OR l.id > v_max_keyed)
    AND NOT EXISTS (SELECT 1 FROM canon.lead_keys k WHERE k.lead_id = l.id);
  IF cardinality(v_unkeyed) > 0 THEN
    v_keyed := v_keyed + canon.refresh_lead_keys(v_unkeyed);
  END IF;
  v_ms := v_ms || jsonb_build_object('key_new_leads', round((extract(epoch FROM clock_timestamp() - v_t) * 1000)::numeric, 1));

  -- Step 5b: the batch, one row per lead key (duplicated keys: the first row stands for them),
  -- at the cost of the batch, not of the scope:
  -- * never evaluated: among the rows listed in canon.lead_keys_pending (new rows, and
  --   keys whose link or unmatched row was removed). A pending key found evaluated
  --   (linked, or unmatched OPEN / IGNORED) leaves the list. All in-scope rows of a
  --   never-evaluated key are pending (new rows are; removals list every row of the key).
  -- * OPEN unmatched leads due for a retry (retry_due, partial index), the least recently
  --   attempted first: only a change of a driver sharing one of their keys can change
  --   their outcome, so with nothing new the batch is empty (targeted retries below);
  -- * only-limbo: linked leads whose person has no driver (NO_DRIVER).
  v_t := clock_timestamp();
  -- Targeted retries: the OPEN leads that share a key (phone, plate, licence: the keys
  -- canon.lead_candidates joins on, normalised alike, so '+51 977...' and '977...' are one
  -- phone) with a driver indexed or re-indexed since the last check (driver_index.indexed_at,
  -- set by every upsert of canon.refresh_driver_index), or with a key a driver lost since
  -- (re-indexed with other keys, or removed: canon.driver_index_key_changes; a lead that had
  -- it as a candidate, e.g. AMBIGUOUS or CONFLICT, may now match), are marked retry_due.
  -- No change: two probes of the end of an index. Changes: the distinct changed keys, then
  -- index probes of canon.lead_keys by phone, plate and licence. The check covers changes up
  -- to now() (the transaction start: rows this run's refresh wrote are visible, later ones
  -- have a later indexed_at), which becomes retry_checked_at. Never checked: every OPEN
  -- lead is due.
  SELECT true, s.changed_at, s.retry_checked_at
  INTO v_state_found, v_index_changed_at, v_retry_checked_from
  FROM canon.driver_index_state s
  FOR UPDATE;
  v_retry_checked_to := now();
  IF v_retry_checked_from IS NULL THEN
    v_retry_check := 'all_open';
    UPDATE canon.identity_unmatched u SET retry_due = true
    WHERE u.status = 'OPEN' AND NOT u.retry_due;
    GET DIAGNOSTICS v_marked_due = ROW_COUNT;
  -- (max() is one probe of the end of each index; an EXISTS could be planned as a sequential
  -- scan that stops at the first hit, and read the whole table when there is none)
  ELSIF (SELECT max(i.indexed_at) FROM canon.driver_index i) > v_retry_checked_from
        OR (SELECT max(c.logged_at) FROM canon.driver_index_key_changes c) > v_retry_checked_from THEN
    v_retry_check := 'changed_keys';
    DROP TABLE IF EXISTS pg_temp.cabinet_changed_keys;
    CREATE TEMP TABLE cabinet_changed_keys ON COMMIT DROP AS
    SELECT DISTINCT x.kind, x.key
    FROM (SELECT i.phone_norm, i.license_norm, i.plate_norm
          FROM canon.driver_index i WHERE i.indexed_at > v_retry_checked_from
          UNION ALL
          SELECT c.phone_norm, c.license_norm, c.plate_norm
          FROM canon.driver_index_key_changes c WHERE c.logged_at > v_retry_checked_from) d
    CROSS JOIN LATERAL (VALUES ('PHONE', d.phone_norm), ('LICENSE', d.license_norm), ('PLATE', d.plate_norm)) x (kind, key)
    WHERE x.key IS NOT NULL;
    -- Few keys against the lead keys (the usual case): probe canon.lead_keys and
    -- identity_unmatched by key, hash and merge joins off for that statement (the planner
    -- would rather read both whole, as in canon.refresh_driver_index). Many (a bulk change
    -- upstream): the planner chooses, with the temp table's statistics. (Measured at 60k
    -- lead rows: 6,000 keys by probes 10 ms, by hash joins 35 ms; a probe costs about
    -- what reading 3 lead rows does, hence under a quarter.)
    v_changed_keys := (SELECT count(*) FROM pg_temp.cabinet_changed_keys);
    v_probe_by_key := v_changed_keys * 4 < (SELECT c.reltuples FROM pg_class c WHERE c.oid = 'canon.lead_keys'::regclass);
    IF v_probe_by_key THEN
      v_hashjoin := current_setting('enable_hashjoin');
      v_mergejoin := current_setting('enable_mergejoin');
      PERFORM set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true);
    ELSE
      ANALYZE pg_temp.cabinet_changed_keys;
    END IF;
    UPDATE canon.identity_unmatched u SET retry_due = true
    FROM (SELECT k.lead_source_pk FROM pg_temp.cabinet_changed_keys c
          JOIN canon.lead_keys k ON k.phone_norm = c.key AND k.phone_norm IS NOT NULL WHERE c.kind = 'PHONE'
          UNION
          SELECT k.lead_source_pk FROM pg_temp.cabinet_changed_keys c
          JOIN canon.lead_keys k ON k.plate_norm = c.key AND k.plate_norm IS NOT NULL WHERE c.kind = 'PLATE'
          UNION
          SELECT k.lead_source_pk FROM pg_temp.cabinet_changed_keys c
          JOIN canon.lead_keys k ON k.license_norm = c.key AND k.license_norm IS NOT NULL WHERE c.kind = 'LICENSE') m
    WHERE u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = m.lead_source_pk
      AND u.status = 'OPEN' AND NOT u.retry_due;
    GET DIAGNOSTICS v_marked_due = ROW_COUNT;
    IF v_probe_by_key THEN
      PERFORM set_config('enable_hashjoin', v_hashjoin, true), set_config('enable_mergejoin', v_mergejoin, true);
    END IF;
  ELSE
    v_retry_check := 'no_change';
  END IF;
  -- Checked: the lost keys are no longer needed.
  DELETE FROM canon.driver_index_key_changes c WHERE c.logged_at <= v_retry_checked_to;
  IF v_state_found THEN
    UPDATE canon.driver_index_state s SET retry_checked_at = v_retry_checked_to;
  ELSE
    INSERT INTO canon.driver_index_state (singleton, retry_checked_at) VALUES (true, v_retry_checked_to);
  END IF;
  v_ms := v_ms || jsonb_build_object('mark_retries_due', round((extract(epoch FROM clock_timestamp() - v_t) * 1000)::numeric, 1));

  v_t := clock_timestamp();
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
    FROM canon.lead_keys_pending q
    WHERE q.lead_date >= p_scope_from
    ORDER BY q.lead_id
    LIMIT v_window;
    GET DIAGNOSTICS v_window_rows = ROW_COUNT;
    DROP TABLE IF EXISTS pg_temp.cabinet_pending;
    CREATE TEMP TABLE cabinet_pending ON COMMIT DROP AS
    -- Every lookup is a probe per row (LATERAL ... LIMIT 1, which the planner cannot
    -- turn back into a join): as joins, a window of 20,000 rows was hashed against the
    -- whole of canon.lead_keys, identity_links and identity_unmatched, whose size grows
    -- with the backfill (one lead key row per lead id, one link and one unmatched row
    -- per key: LIMIT 1 changes nothing else).
    SELECT p.lead_source_pk, p.lead_id, p.rows_with_key,
           l.source_pk IS NOT NULL AS linked, u.status, u.last_attempt_at
    FROM (SELECT k.lead_source_pk, min(k.lead_id) AS lead_id, count(*) AS rows_with_key
          FROM pg_temp.cabinet_pending_rows q
          CROSS JOIN LATERAL (
            SELECT k.lead_source_pk, k.lead_id
            FROM canon.lead_keys k
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
  DELETE FROM canon.lead_keys_pending q
  USING canon.lead_keys k, pg_temp.cabinet_pending p
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
      FROM canon.lead_keys s
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
      FROM canon.lead_keys s
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
  -- Batch rows are re-keyed when their source values changed since they were keyed. Only
  -- rows whose source hash (as canon.refresh_lead_keys computes it) differs are passed:
  -- re-normalising unchanged rows costs as much as keying them.
  PERFORM canon.refresh_lead_keys(ARRAY(
    SELECT b.lead_id
    FROM pg_temp.cabinet_batch b
    JOIN public.module_ct_cabinet_leads l ON l.id = b.lead_id
    JOIN canon.lead_keys k ON k.lead_id = b.lead_id
    WHERE k.source_hash IS DISTINCT FROM
          md5(concat_ws(E'\x1f', l.external_id, l.lead_created_at::text, l.park_phone, l.asset_plate_number,
                        l.first_name, l.middle_name, l.last_name))));
  v_ms := v_ms || jsonb_build_object('select_batch', round((extract(epoch FROM clock_timestamp() - v_t) * 1000)::numeric, 1));

  -- Step 6: decisions for the whole batch at once.
  v_t := clock_timestamp();
  DROP TABLE IF EXISTS pg_temp.cabinet_decisions;
  CREATE TEMP TABLE cabinet_decisions ON COMMIT DROP AS
  SELECT d.*, b.batch_kind, b.person_key AS lead_person_key, k.lead_created_at,
         dl.person_key AS driver_person_key
  FROM canon.lead_decisions(ARRAY(SELECT b.lead_id FROM pg_temp.cabinet_batch b)) d
  JOIN pg_temp.cabinet_batch b ON b.lead_id = d.lead_id
  JOIN canon.lead_keys k ON k.lead_id = d.lead_id
  LEFT JOIN canon.identity_links dl ON dl.source_table = 'drivers' AND dl.source_pk = d.driver_id;
  v_ms := v_ms || jsonb_build_object('decide', round((extract(epoch FROM clock_timestamp() - v_t) * 1000)::numeric, 1));

  -- Linking: a person per matched driver that has none (created only with its links).
  v_t := clock_timestamp();
  DROP TABLE IF EXISTS pg_temp.cabinet_new_persons;
  CREATE TEMP TABLE cabinet_new_persons ON COMMIT DROP AS
  SELECT DISTINCT ON (d.driver_id)
         d.driver_id, canon.new_person_key() AS person_key, d.lead_source_pk AS first_lead_source_pk,
         d.match_rule, d.match_score, d.confidence_level
  FROM pg_temp.cabinet_decisions d
  WHERE d.decision = 'MATCH' AND d.batch_kind = 'NO_IDENTITY' AND d.driver_person_key IS NULL
  ORDER BY d.driver_id, d.lead_created_at, d.lead_source_pk;

  INSERT INTO canon.identity_registry (person_key, confidence_level, primary_phone, primary_license, primary_name, created_run_id)
  SELECT np.person_key, np.confidence_level, i.phone_norm, i.license_norm, i.name_norm, p_run_id
  FROM pg_temp.cabinet_new_persons np
  JOIN canon.driver_index i ON i.driver_id = np.driver_id;
  GET DIAGNOSTICS v_new_persons = ROW_COUNT;

  -- Driver links of the new persons and lead links in one statement: the statement
  -- triggers of identity_links (audit rows, lead state marks) run once, not twice.
  WITH inserted AS (
    INSERT INTO canon.identity_links (source_table, source_pk, person_key, match_rule, match_score, confidence_level, evidence, run_id)
    SELECT 'drivers', np.driver_id, np.person_key, np.match_rule, np.match_score, np.confidence_level,
           jsonb_build_object('linked_with_lead', np.first_lead_source_pk), p_run_id
    FROM pg_temp.cabinet_new_persons np
    UNION ALL
    SELECT 'module_ct_cabinet_leads', d.lead_source_pk, coalesce(d.driver_person_key, np.person_key),
           d.match_rule, d.match_score, d.confidence_level, d.evidence, p_run_id
    FROM pg_temp.cabinet_decisions d
    LEFT JOIN pg_temp.cabinet_new_persons np ON np.driver_id = d.driver_id
    WHERE d.decision = 'MATCH' AND d.batch_kind = 'NO_IDENTITY'
    RETURNING source_table
  )
  SELECT count(*) FILTER (WHERE i.source_table = 'drivers'), count(*) FILTER (WHERE i.source_table <> 'drivers')
  INTO v_driver_links, v_lead_links
  FROM inserted i;

  -- The origin of a person is the earliest lead that brought it.
  INSERT INTO canon.identity_origin (person_key, origin_tag, origin_source_id, confidence_level, origin_created_at, decided_by, run_id)
  SELECT DISTINCT ON (person_key) person_key, 'cabinet_lead', lead_source_pk, confidence_level, lead_created_at, 'system', p_run_id
  FROM (
    SELECT coalesce(d.driver_person_key, np.person_key) AS person_key, d.lead_source_pk, d.confidence_level, d.lead_created_at
    FROM pg_temp.cabinet_decisions d
    LEFT JOIN pg_temp.cabinet_new_persons np ON np.driver_id = d.driver_id
    WHERE d.decision = 'MATCH' AND d.batch_kind = 'NO_IDENTITY'
  ) m
  ORDER BY person_key, lead_created_at, lead_source_pk
  ON CONFLICT (person_key) DO NOTHING;
  GET DIAGNOSTICS v_origins = ROW_COUNT;

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
  DELETE FROM canon.lead_keys_pending q
  USING canon.lead_keys k, (SELECT DISTINCT d.lead_source_pk FROM pg_temp.cabinet_decisions d WHERE d.batch_kind = 'NO_IDENTITY') d
  WHERE k.lead_source_pk = d.lead_source_pk AND q.lead_id = k.lead_id;
  GET DIAGNOSTICS v_evaluated_cleared = ROW_COUNT;
  v_ms := v_ms || jsonb_build_object('link', round((extract(epoch FROM clock_timestamp() - v_t) * 1000)::numeric, 1));

  SELECT jsonb_build_object(
    'leads_keyed', v_keyed,
    'leads_selected', v_selected,
    'leads_evaluated', (SELECT count(*) FROM pg_temp.cabinet_decisions),
    'batch', jsonb_build_object(
      'no_identity', (SELECT count(*) FROM pg_temp.cabinet_batch WHERE batch_kind = 'NO_IDENTITY'),
      'no_driver', (SELECT count(*) FROM pg_temp.cabinet_batch WHERE batch_kind = 'NO_DRIVER'),
      'never_evaluated', (SELECT count(*) FROM pg_temp.cabinet_batch WHERE NOT evaluated_before),
      'retried', (SELECT count(*) FROM pg_temp.cabinet_batch WHERE evaluated_before),
      'duplicate_key_rows', (SELECT coalesce(sum(rows_with_key - 1), 0) FROM pg_temp.cabinet_batch)),
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
    -- (the predicate of identity_unmatched_open_idx, read index-only: the table holds
    -- cabinet leads only, its CHECK; with source_table in the filter it was a scan of
    -- every unmatched row each run)
    'open_unmatched_total', (SELECT count(*) FROM canon.identity_unmatched u WHERE u.status = 'OPEN'),
    'leads_without_lead_created_at', (SELECT count(*) FROM canon.lead_keys k WHERE k.lead_date IS NULL),
    'leads_with_oversized_key', v_oversized,
    'leads_keyed_late', cardinality(v_unkeyed),
    'unkeyed_rows_checked', CASE WHEN v_gap_scan_scope THEN 'scope' ELSE 'new_rows' END,
    'driver_index_changed_at', v_index_changed_at,
    'retries_skipped_no_index_change', v_retries_skipped,
    'retries_marked_due', v_marked_due,
    'retry_check', v_retry_check,
    'retry_changed_keys', v_changed_keys,
    'pending_flags_cleared', v_pending_cleared + v_evaluated_cleared,
    'durations_ms', v_ms)
  INTO v_stats;
  RETURN v_stats;
END
$$;
COMMENT ON FUNCTION canon.match_cabinet_leads(bigint, date, integer, boolean) IS 'Pipeline steps 5-6: key new leads, select the batch, decide, link set-based, record unmatched reasons. Returns step stats.';

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
  'Operator: link a lead to a driver by hand (MANUAL_RESOLUTION, 100, HIGH) with person, driver link, origin (manual) and unmatched RESOLVED, audited. p_force: add the lead to a person that already carries another lead. Returns what was done.';

-- snapshot of sql/canon/canon.lead_ids_of_keys.sql
-- canon.lead_ids_of_keys: the lead rows (ids) that carry the given lead keys, as keyed in
-- canon.lead_keys or stored in canon.cabinet_lead_state (a row re-keyed since it was
-- stored is found under both keys). What a changed key means for the lead state: used by
-- step 7 and ops.refresh_cabinet_lead_state to turn keys into rows to re-evaluate.
CREATE OR REPLACE FUNCTION canon.lead_ids_of_keys(p_keys text[])
RETURNS integer[]
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT ARRAY(
    SELECT k.lead_id FROM canon.lead_keys k WHERE k.lead_source_pk = ANY (p_keys)
    UNION
    -- (joined to the keys, not "= ANY (p_keys)": through the hash index that became a
    -- bitmap scan whose recheck compared every row of the blocks read with the whole
    -- array, 290 ms for 7,440 keys of a backfill run; probed key by key it is 10 ms)
    SELECT s.lead_id
    FROM unnest(p_keys) x (lead_source_pk)
    JOIN canon.cabinet_lead_state s ON s.lead_source_pk = x.lead_source_pk
    ORDER BY 1)
$$;
COMMENT ON FUNCTION canon.lead_ids_of_keys(text[]) IS
  'Lead row ids carrying the given lead keys (canon.lead_keys and canon.cabinet_lead_state).';
