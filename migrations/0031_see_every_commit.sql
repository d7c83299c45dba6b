-- Up Migration
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

-- snapshot of sql/canon/canon.xmin_age_limit.sql
-- canon.xmin_age_limit: the largest age(xmin) of a row version written by a transaction
-- not older than p_seen (the oldest transaction in progress when a table was last read,
-- canon.source_scan_state.seen_xmin): `age(t.xmin) <= limit` selects the row versions that
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

-- snapshot of migrations/parts/0031_source_scan_state.sql
-- What the product has read of each upstream table, by commit order rather than by id,
-- page or timestamp (docs/change-detection.md). A row version written by a transaction
-- older than seen_xmin was visible to the last read; anything else is read again.
CREATE TABLE canon.source_scan_state (
  source_table           text PRIMARY KEY
    CHECK (source_table IN ('module_ct_cabinet_leads', 'drivers', 'summary_daily')),
  seen_xmin              xid8,
  seen_snapshot          pg_snapshot,
  full_seen_xmin         xid8,
  blocks                 bigint,
  relfilenode            oid,
  stats_epoch            text,
  tuples_accounted       bigint,
  tuples_updated         bigint,
  tuples_deleted         bigint,
  rows_read              bigint,
  rows_dated             bigint,
  full_read_at           timestamptz,
  read_at                timestamptz,
  run_id                 bigint
);
COMMENT ON TABLE canon.source_scan_state IS
  'Bookkeeping (internal): how far each upstream table has been read, by commit order. Written by canon.key_changed_leads, canon.refresh_driver_index and canon.trip_drivers_changed; see docs/change-detection.md.';
COMMENT ON COLUMN canon.source_scan_state.seen_xmin IS
  'Oldest transaction still in progress when the last read started (pg_snapshot_xmin of its snapshot): every row version written by an older transaction was read then. NULL: read every row.';
COMMENT ON COLUMN canon.source_scan_state.rows_dated IS
  'module_ct_cabinet_leads: dated rows (finite lead_created_at) at the last read; the lead state holds one row for each once evaluated.';
COMMENT ON COLUMN canon.source_scan_state.seen_snapshot IS
  'summary_daily: the snapshot of the last read of its appended pages; rows not visible to it are counted as new (for the insert accounting).';
COMMENT ON COLUMN canon.source_scan_state.full_seen_xmin IS
  'summary_daily: seen_xmin of the last read of the whole table; advances only with a whole read.';
COMMENT ON COLUMN canon.source_scan_state.blocks IS
  'summary_daily: its size in pages at the last read; pages from blocks - 1 on are read every run.';
COMMENT ON COLUMN canon.source_scan_state.tuples_accounted IS
  'summary_daily: inserts of the statistics system accounted for: found in appended pages one by one, or by a whole read.';
INSERT INTO canon.source_scan_state (source_table)
VALUES ('module_ct_cabinet_leads'), ('drivers'), ('summary_daily');

-- The old watermarks (max id, updated_at, page counts without the snapshot) go.
ALTER TABLE canon.cabinet_lead_state_meta
  DROP COLUMN IF EXISTS lead_id_watermark,
  DROP COLUMN IF EXISTS trips_relfilenode,
  DROP COLUMN IF EXISTS trips_inserted,
  DROP COLUMN IF EXISTS trips_modified,
  DROP COLUMN IF EXISTS trips_blocks;
COMMENT ON TABLE canon.cabinet_lead_state_meta IS
  'Lead state bookkeeping (internal): the last daily sweep, whether the claim rules changed (every lead is re-evaluated, and shown live until then), when the stored state last changed.';
ALTER TABLE canon.driver_index_state
  DROP COLUMN IF EXISTS watermark,
  DROP COLUMN IF EXISTS refreshed_snapshot;

-- Lead rows whose stored state must be evaluated again because the row itself changed
-- (new, re-keyed, re-dated, gone) or a row sharing its key did. Written with the lead
-- keys, in the same transaction; consumed by the lead state refresh.
CREATE TABLE canon.cabinet_lead_state_pending (
  lead_id    integer PRIMARY KEY,
  mark_seq   bigint GENERATED BY DEFAULT AS IDENTITY,
  marked_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE canon.cabinet_lead_state_pending IS
  'Bookkeeping (internal): lead rows whose stored state is to be evaluated again (the row or a row of its key changed). Written by canon.refresh_lead_keys (a mark again gets a new mark_seq); the lead state refresh removes exactly the marks it read.';

-- The lead rows that cannot be keyed (a key over 200 characters): counted, listed, and
-- part of the count that tells whether lead rows were deleted.
CREATE TABLE canon.lead_rows_unkeyed (
  lead_id    integer PRIMARY KEY,
  reason     text NOT NULL CHECK (reason IN ('OVERSIZED_KEY')),
  seen_at    timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE canon.lead_rows_unkeyed IS
  'Bookkeeping (internal): lead rows without a row in canon.lead_keys and why (OVERSIZED_KEY: a lead key over 200 characters). Maintained by canon.refresh_lead_keys.';

DROP FUNCTION IF EXISTS canon.summary_daily_writes();
DROP TYPE IF EXISTS canon.summary_daily_write_counts;
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

INSERT INTO canon.settings (key, value, description, value_type, min_value, max_value) VALUES
  ('source_full_read_hours', '24',
   'Hours after which summary_daily is read whole by the next run even when the statistics show no write it could not place (a bound on what lost statistics could hide).',
   'INTEGER', 1, 8760),
  ('doctor_lead_state_days', '45',
   'Days of leads (by lead date) whose stored state doctor compares value by value with the live definition (every lead is checked for membership).',
   'INTEGER', 0, 36500)
ON CONFLICT DO NOTHING;
UPDATE canon.settings
SET description = 'Hours between full reconciliations of canon.driver_index with public.drivers: removes deleted drivers (changed and new drivers are found by commit order on every run).'
WHERE key = 'driver_index_full_refresh_hours';
-- Trips are no longer re-read by a settle period: the setting goes (untyped first, as the
-- settings guard refuses deleting a typed one).
UPDATE canon.settings SET value_type = 'TEXT', min_value = NULL, max_value = NULL WHERE key = 'trips_settle_days';
DELETE FROM canon.settings WHERE key = 'trips_settle_days';

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

-- snapshot of sql/canon/canon.refresh_lead_keys.sql
-- canon.refresh_lead_keys: brings canon.lead_keys up to date for the given lead rows
-- (ids), whatever happened to them: a new or changed row is (re-)keyed when its source
-- values differ from what was keyed (source hash), a row whose key is over 200 characters
-- is listed in canon.lead_rows_unkeyed instead (no index can hold a 10 kB key), a row that
-- is gone loses its key. What depends on a row's key follows in the same statement:
-- * canon.lead_keys_pending (never-evaluated keys) lists a row keyed for the first time or
--   under another key or date;
-- * canon.identity_unmatched.retry_due is set for an OPEN unmatched key whose lead's phone,
--   plate, licence, name or date changed (its candidates may differ now);
-- * canon.cabinet_lead_state_pending lists the row, and every row sharing its old or new
--   key (their key_rows change), when it is new, gone, re-keyed or re-dated.
-- Callers: canon.key_changed_leads (every changed row of a run), ops.explain_lead (a
-- lead's rows before explaining it). Returns the number of lead_keys rows written or removed.
CREATE OR REPLACE FUNCTION canon.refresh_lead_keys(p_lead_ids integer[] DEFAULT '{}')
RETURNS integer
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
  v_written integer;
BEGIN
  IF coalesce(cardinality(p_lead_ids), 0) = 0 THEN
    RETURN 0;
  END IF;
  DROP TABLE IF EXISTS pg_temp.lead_keys_source;
  CREATE TEMP TABLE lead_keys_source ON COMMIT DROP AS
  SELECT x.lead_id, l.id IS NOT NULL AS present,
         canon.lead_source_pk(l.external_id, l.id) AS lead_source_pk,
         l.lead_created_at, l.park_phone, l.asset_plate_number, l.first_name, l.middle_name, l.last_name,
         md5(concat_ws(E'\x1f', l.external_id, l.lead_created_at::text, l.park_phone, l.asset_plate_number,
                       l.first_name, l.middle_name, l.last_name)) AS source_hash,
         k.lead_id IS NOT NULL AS was_keyed, k.source_hash AS old_hash, k.lead_source_pk AS old_key,
         k.lead_date AS old_date
  FROM (SELECT DISTINCT unnest(p_lead_ids) AS lead_id) x
  LEFT JOIN public.module_ct_cabinet_leads l ON l.id = x.lead_id
  LEFT JOIN canon.lead_keys k ON k.lead_id = x.lead_id;

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
    INSERT INTO canon.lead_keys AS k (
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
    DELETE FROM canon.lead_keys k
    USING pg_temp.lead_keys_source s
    WHERE k.lead_id = s.lead_id AND (NOT s.present OR length(s.lead_source_pk) > 200)
    RETURNING k.lead_id, k.lead_source_pk
  ),
  oversized AS (
    INSERT INTO canon.lead_rows_unkeyed AS u (lead_id, reason)
    SELECT s.lead_id, 'OVERSIZED_KEY' FROM pg_temp.lead_keys_source s
    WHERE s.present AND length(s.lead_source_pk) > 200
    ON CONFLICT (lead_id) DO NOTHING
  ),
  not_oversized AS (
    DELETE FROM canon.lead_rows_unkeyed u
    USING pg_temp.lead_keys_source s
    WHERE u.lead_id = s.lead_id AND (NOT s.present OR length(s.lead_source_pk) <= 200)
  ),
  -- keyed for the first time, or under another key or date: its key may never have been evaluated
  match_pending AS (
    INSERT INTO canon.lead_keys_pending AS q (lead_id, lead_date)
    SELECT w.lead_id, w.lead_date
    FROM keyed w
    JOIN pg_temp.lead_keys_source s ON s.lead_id = w.lead_id
    WHERE NOT s.was_keyed OR s.old_key <> w.lead_source_pk OR s.old_date IS DISTINCT FROM w.lead_date
    ON CONFLICT (lead_id) DO UPDATE SET lead_date = excluded.lead_date
  ),
  match_unpending AS (
    DELETE FROM canon.lead_keys_pending q USING unkeyed u WHERE q.lead_id = u.lead_id
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
    INSERT INTO canon.cabinet_lead_state_pending (lead_id)
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

-- snapshot of sql/canon/canon.local_snapshot_xmin.sql
-- canon.local_snapshot_xmin: the oldest transaction of a snapshot that could still write
-- this database's tables: the smallest xid of its in-progress list that is not this
-- transaction's own and not positively known to belong to another database (a transaction
-- writes one database only; pg_stat_activity names its database, while it runs), else its
-- xmax. A row version the snapshot did not show was written by such a transaction or a
-- later one (a subtransaction's xid follows its parent's), so its xmin is at least this:
-- what canon.source_scan_state.seen_xmin keeps. A long transaction in another database of
-- the cluster then does not make every run read again all that was written since it began.
-- An xid whose backend is gone by now counts (as if local): re-read, never skipped.
CREATE OR REPLACE FUNCTION canon.local_snapshot_xmin(p_snapshot pg_snapshot)
RETURNS xid8
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT coalesce(min(x.xid), pg_snapshot_xmax(p_snapshot))
  FROM pg_snapshot_xip(p_snapshot) x (xid)
  WHERE x.xid IS DISTINCT FROM pg_current_xact_id_if_assigned()
    AND NOT EXISTS (
      SELECT 1
      FROM pg_stat_activity a
      WHERE a.backend_xid IS NOT NULL
        AND a.backend_xid::text::bigint = x.xid::text::bigint % 4294967296
        AND a.datid IS DISTINCT FROM (SELECT d.oid FROM pg_database d WHERE d.datname = current_database()))
$$;
COMMENT ON FUNCTION canon.local_snapshot_xmin(pg_snapshot) IS
  'Oldest in-progress xid of the snapshot that could write this database (not ours, not known to be another database''s), else its xmax: the seen_xmin of a read taken with it.';

-- snapshot of sql/canon/canon.lead_rows_since_read.sql
-- canon.lead_rows_since_read: the lead rows written since the last read of
-- public.module_ct_cabinet_leads (by commit order: canon.source_scan_state.seen_xmin), with
-- their key and whether they are dated; every row when none was read yet. What canon.lead_keys
-- may not hold yet: canon.v_cabinet_lead_status counts a key's rows from both.
CREATE OR REPLACE FUNCTION canon.lead_rows_since_read()
RETURNS TABLE (lead_id integer, lead_source_pk text, dated boolean)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
  WITH seen AS (
    SELECT canon.xmin_age_limit((SELECT s.seen_xmin FROM canon.source_scan_state s
                                 WHERE s.source_table = 'module_ct_cabinet_leads')) AS age_limit
  )
  SELECT l.id, canon.lead_source_pk(l.external_id, l.id), isfinite(l.lead_created_at)
  FROM public.module_ct_cabinet_leads l
  CROSS JOIN seen
  WHERE seen.age_limit IS NULL OR age(l.xmin) <= seen.age_limit
$$;
COMMENT ON FUNCTION canon.lead_rows_since_read() IS
  'Lead rows written since the last read of the lead table (all rows before the first), with their lead_source_pk and whether they are dated.';

-- snapshot of sql/canon/canon.key_changed_leads.sql
-- canon.key_changed_leads: pipeline step 5a. Keys every lead row written since the last
-- read of public.module_ct_cabinet_leads, whatever its id, page or timestamp: one pass
-- over the lead rows takes the row versions written by transactions not older than the
-- oldest one in progress at the last read (canon.source_scan_state.seen_xmin, compared by
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
AS $$
DECLARE
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
  FROM canon.source_scan_state s
  WHERE s.source_table = 'module_ct_cabinet_leads'
  FOR UPDATE;
  v_limit := canon.xmin_age_limit(v_seen);
  PERFORM pg_stat_clear_snapshot(); -- (canon.local_snapshot_xmin reads pg_stat_activity as of now)

  -- One pass, no function per row. The snapshot is this statement's own: what it shows,
  -- the pass has read; the next read starts from its oldest local transaction.
  SELECT count(*),
         count(*) FILTER (WHERE isfinite(l.lead_created_at)),
         coalesce(array_agg(l.id) FILTER (WHERE v_limit IS NULL OR age(l.xmin) <= v_limit), '{}'),
         canon.local_snapshot_xmin(pg_current_snapshot())
  INTO v_rows, v_dated, v_changed, v_snapshot_xmin
  FROM public.module_ct_cabinet_leads l;

  v_written := canon.refresh_lead_keys(v_changed);

  -- Every row read is now keyed or listed unkeyed; more cached rows than lead rows means
  -- rows were deleted (fewer would be a drift): found by id, then keyed or unkeyed.
  v_cached := (SELECT count(*) FROM canon.lead_keys) + (SELECT count(*) FROM canon.lead_rows_unkeyed);
  IF v_cached <> v_rows THEN
    v_membership := ARRAY(
      SELECT coalesce(c.lead_id, l.id)
      FROM (SELECT k.lead_id FROM canon.lead_keys k UNION ALL SELECT u.lead_id FROM canon.lead_rows_unkeyed u) c
      FULL JOIN public.module_ct_cabinet_leads l ON l.id = c.lead_id
      WHERE c.lead_id IS NULL OR l.id IS NULL);
    v_written := v_written + canon.refresh_lead_keys(v_membership);
  END IF;

  UPDATE canon.source_scan_state
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
    'leads_with_oversized_key', (SELECT count(*) FROM canon.lead_rows_unkeyed u WHERE u.reason = 'OVERSIZED_KEY'),
    'read_since_xmin', v_seen);
END
$$;
COMMENT ON FUNCTION canon.key_changed_leads(bigint) IS
  'Pipeline step 5a: keys every lead row written since the last read (by commit order: any id, page or timestamp) and removes the keys of deleted rows. Returns step stats.';

-- snapshot of sql/canon/canon.take_lead_state_marks.sql
-- canon.take_lead_state_marks: the marks a lead state evaluation consumes, as visible now,
-- into pg_temp.lead_state_marks (lead rows of canon.cabinet_lead_state_pending, keys of
-- canon.cabinet_lead_state_dirty, each with its mark_seq); adds those not read yet when
-- called again in the same transaction. Returns the lead rows newly taken (marked rows
-- and the rows of marked keys). canon.clear_lead_state_marks removes exactly these marks
-- afterwards: a row or key marked again meanwhile has a new mark_seq and stays.
-- Callers: canon.generate_cabinet_claims (step 7), ops.refresh_cabinet_lead_state.
CREATE OR REPLACE FUNCTION canon.take_lead_state_marks()
RETURNS integer[]
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_ids integer[];
BEGIN
  CREATE TEMP TABLE IF NOT EXISTS lead_state_marks (lead_id integer, lead_source_pk text, mark_seq bigint NOT NULL)
    ON COMMIT DROP;
  WITH taken AS (
    INSERT INTO pg_temp.lead_state_marks
    SELECT p.lead_id, NULL, p.mark_seq
    FROM canon.cabinet_lead_state_pending p
    WHERE NOT EXISTS (SELECT 1 FROM pg_temp.lead_state_marks m WHERE m.lead_id = p.lead_id AND m.mark_seq = p.mark_seq)
    UNION ALL
    SELECT NULL, d.lead_source_pk, d.mark_seq
    FROM canon.cabinet_lead_state_dirty d
    WHERE NOT EXISTS (SELECT 1 FROM pg_temp.lead_state_marks m
                      WHERE m.lead_source_pk = d.lead_source_pk AND m.mark_seq = d.mark_seq)
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
  'Reads the lead state marks (pending rows, dirty keys) visible now into pg_temp.lead_state_marks and returns the lead rows they name; canon.clear_lead_state_marks removes exactly those marks.';

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
BEGIN
  IF to_regclass('pg_temp.lead_state_marks') IS NULL THEN
    RETURN 0;
  END IF;
  DELETE FROM canon.cabinet_lead_state_dirty d
  USING pg_temp.lead_state_marks m
  WHERE m.lead_source_pk IS NOT NULL AND d.lead_source_pk = m.lead_source_pk AND d.mark_seq = m.mark_seq;
  GET DIAGNOSTICS v_dirty = ROW_COUNT;
  DELETE FROM canon.cabinet_lead_state_pending p
  USING pg_temp.lead_state_marks m
  WHERE m.lead_id IS NOT NULL AND p.lead_id = m.lead_id AND p.mark_seq = m.mark_seq;
  GET DIAGNOSTICS v_pending = ROW_COUNT;
  DROP TABLE pg_temp.lead_state_marks;
  RETURN v_dirty + v_pending;
END
$$;
COMMENT ON FUNCTION canon.clear_lead_state_marks() IS
  'Removes exactly the lead state marks taken by canon.take_lead_state_marks in this transaction. Returns how many.';

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
AS $$
DECLARE
  v_state canon.source_scan_state%ROWTYPE;
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
  SELECT * INTO v_state FROM canon.source_scan_state s WHERE s.source_table = 'summary_daily' FOR UPDATE;
  -- counts as of now, not as cached earlier in this transaction
  PERFORM pg_stat_clear_snapshot();
  v_writes := canon.summary_daily_writes();
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
  -- the rows that are there.
  v_rows_may_be_gone := v_whole_reason IN ('first_read', 'statistics_off', 'table_rewritten', 'statistics_reset',
                                       'rows_updated_or_deleted', 'table_shrank');

  IF v_whole_reason IS NULL THEN
    -- The appended pages: row versions not older than the last look's snapshot; those it
    -- did not show are counted against the inserts the statistics report.
    v_limit := canon.xmin_age_limit(v_state.seen_xmin);
    SELECT coalesce(array_agg(DISTINCT t.driver_id::text) FILTER (WHERE t.driver_id IS NOT NULL), '{}'),
           count(*) FILTER (WHERE NOT pg_visible_in_snapshot(
             canon.xid8_of_recent(t.xmin, pg_snapshot_xmax(v_state.seen_snapshot)), v_state.seen_snapshot)),
           count(*),
           pg_current_snapshot(),
           canon.local_snapshot_xmin(pg_current_snapshot())
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
           canon.local_snapshot_xmin(pg_current_snapshot())
    INTO v_drivers, v_rows_read, v_snapshot, v_local_xmin
    FROM public.summary_daily t
    WHERE v_limit IS NULL OR age(t.xmin) <= v_limit;
  ELSIF v_whole_reason = 'first_read' THEN
    -- No earlier look to compare with: the caller re-reads every lead with a driver instead.
    v_drivers := '{}';
    SELECT pg_current_snapshot(), canon.local_snapshot_xmin(pg_current_snapshot()) INTO v_snapshot, v_local_xmin;
  END IF;

  DROP TABLE IF EXISTS pg_temp.trip_drivers_changed;
  CREATE TEMP TABLE trip_drivers_changed (driver_id text PRIMARY KEY) ON COMMIT DROP;
  INSERT INTO pg_temp.trip_drivers_changed SELECT DISTINCT unnest(v_drivers);
  ANALYZE pg_temp.trip_drivers_changed;

  UPDATE canon.source_scan_state
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

-- snapshot of sql/canon/canon.refresh_driver_index.sql
-- canon.refresh_driver_index: pipeline step 4. Brings canon.driver_index up to date with
-- public.drivers. Every run reads the driver ids with a row version written since its last
-- read, by commit order (the row's xmin against the oldest transaction in progress at that
-- read, canon.source_scan_state.seen_xmin): a late commit, a change in place and a driver
-- with a future or missing updated_at/created_at are all read by the next run, in one pass
-- over the drivers that also counts such odd timestamps (listed in
-- ops.v_drivers_odd_timestamps). Their rows are re-normalised only when their source values
-- changed (hash); the newest row of a driver_id wins. Every
-- driver_index_full_refresh_hours the whole table is reconciled, which also removes
-- deleted drivers (the matcher never proposes a deleted driver meanwhile: it checks).
-- Whenever a row of the index is written or removed, driver_index_state.changed_at is set
-- to now() (reported by runs). Which unmatched leads are worth retrying is decided by
-- canon.match_cabinet_leads from the rows indexed since its last check (indexed_at) and
-- the keys drivers lost (canon.driver_index_key_changes, written here). Returns step stats.
CREATE OR REPLACE FUNCTION canon.refresh_driver_index(p_run_id bigint)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
  v_state canon.driver_index_state%ROWTYPE;
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
  v_future_from timestamp := (now() AT TIME ZONE canon.setting('business_timezone')) + interval '1 day';
BEGIN
  SELECT * INTO v_state FROM canon.driver_index_state FOR UPDATE;
  v_full := NOT FOUND OR v_state.last_full_at IS NULL
            OR v_state.last_full_at < now() - make_interval(hours => canon.setting('driver_index_full_refresh_hours')::integer);
  SELECT s.seen_xmin INTO v_seen FROM canon.source_scan_state s WHERE s.source_table = 'drivers' FOR UPDATE;
  v_full := v_full OR v_seen IS NULL;
  v_limit := CASE WHEN NOT v_full THEN canon.xmin_age_limit(v_seen) END;
  v_full := v_full OR v_limit IS NULL;
  PERFORM pg_stat_clear_snapshot(); -- (canon.local_snapshot_xmin reads pg_stat_activity as of now)

  -- One pass over the drivers (one builtin per row): the ids with a row version not seen
  -- yet, and the odd timestamps. The snapshot is this statement's own.
  SELECT count(*),
         count(*) FILTER (WHERE d.updated_at > v_future_from OR d.created_at > v_future_from),
         count(*) FILTER (WHERE d.updated_at IS NULL AND d.created_at IS NULL),
         CASE WHEN v_full THEN NULL
              ELSE coalesce(array_agg(DISTINCT d.driver_id) FILTER (WHERE age(d.xmin) <= v_limit), '{}') END,
         canon.local_snapshot_xmin(pg_current_snapshot())
  INTO v_rows, v_future, v_no_time, v_changed_ids, v_snapshot_xmin
  FROM public.drivers d;

  -- The drivers to look at (all of them on a full refresh), newest row per driver_id.
  DROP TABLE IF EXISTS pg_temp.driver_index_source;
  CREATE TEMP TABLE driver_index_source ON COMMIT DROP AS
  SELECT s.*,
         md5(concat_ws(E'\x1f', s.park_id, s.phone, s.license_normalized_number, s.license_number,
                       s.car_normalized_number, s.car_number, s.full_name, s.first_name, s.middle_name,
                       s.last_name, s.hire_date::text)) AS source_hash
  FROM (
    SELECT DISTINCT ON (d.driver_id)
           d.driver_id, d.park_id, d.phone, d.license_normalized_number, d.license_number,
           d.car_normalized_number, d.car_number, d.full_name, d.first_name, d.middle_name, d.last_name, d.hire_date,
           coalesce(d.updated_at, d.created_at) AS changed_at
    FROM public.drivers d
    WHERE nullif(btrim(d.driver_id), '') IS NOT NULL
      AND length(d.driver_id) <= 200 -- garbage ids (10 kB) cannot be indexed: counted below
      AND (v_full OR d.driver_id IN (SELECT unnest(v_changed_ids)))
    ORDER BY d.driver_id, coalesce(d.updated_at, d.created_at) DESC NULLS LAST
  ) s;
  ANALYZE pg_temp.driver_index_source;
  v_scanned := (SELECT count(*) FROM pg_temp.driver_index_source);

  -- Few drivers against a large index: probe it by key. The planner would rather hash the
  -- whole index (it prices each probe as a random read); on a full refresh it should.
  v_probe_by_key := NOT v_full
    AND v_scanned * 10 < (SELECT c.reltuples FROM pg_class c WHERE c.oid = 'canon.driver_index'::regclass);
  IF v_probe_by_key THEN
    v_hashjoin := current_setting('enable_hashjoin');
    v_mergejoin := current_setting('enable_mergejoin');
    PERFORM set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true);
  END IF;

  -- Every written row gets indexed_at = now(): canon.match_cabinet_leads finds the changed
  -- drivers by it (driver_index_indexed_at_idx) and marks due the OPEN leads sharing a key.
  -- The keys a re-indexed driver no longer has are logged (driver_index_key_changes): a
  -- lead that had it as a candidate by such a key is due too.
  WITH changed AS (
    SELECT h.driver_id, h.park_id,
           canon.normalize_phone(h.phone) AS phone_norm,
           canon.normalize_license(coalesce(nullif(btrim(h.license_normalized_number), ''), h.license_number)) AS license_norm,
           canon.normalize_plate(coalesce(nullif(btrim(h.car_normalized_number), ''), h.car_number)) AS plate_norm,
           canon.normalize_name(coalesce(nullif(btrim(h.full_name), ''), concat_ws(' ', h.first_name, h.middle_name, h.last_name))) AS name_norm,
           h.hire_date, h.source_hash, h.changed_at,
           i.driver_id IS NOT NULL AS was_indexed,
           i.phone_norm AS old_phone_norm, i.license_norm AS old_license_norm, i.plate_norm AS old_plate_norm
    FROM pg_temp.driver_index_source h
    LEFT JOIN canon.driver_index i ON i.driver_id = h.driver_id
    WHERE i.driver_id IS NULL OR i.source_hash <> h.source_hash
  ),
  upserted AS (
    INSERT INTO canon.driver_index AS i (
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
    INSERT INTO canon.driver_index_key_changes (driver_id, change, phone_norm, license_norm, plate_norm, logged_at, run_id)
    SELECT c.driver_id, 'KEYS_CHANGED',
           CASE WHEN c.old_phone_norm IS DISTINCT FROM c.phone_norm THEN c.old_phone_norm END,
           CASE WHEN c.old_license_norm IS DISTINCT FROM c.license_norm THEN c.old_license_norm END,
           CASE WHEN c.old_plate_norm IS DISTINCT FROM c.plate_norm THEN c.old_plate_norm END,
           now(), p_run_id
    FROM changed c
    WHERE c.was_indexed
      AND ((c.old_phone_norm IS NOT NULL AND c.old_phone_norm IS DISTINCT FROM c.phone_norm)
           OR (c.old_license_norm IS NOT NULL AND c.old_license_norm IS DISTINCT FROM c.license_norm)
           OR (c.old_plate_norm IS NOT NULL AND c.old_plate_norm IS DISTINCT FROM c.plate_norm))
    RETURNING 1
  )
  SELECT count(*) INTO v_upserted FROM upserted;

  IF v_probe_by_key THEN
    PERFORM set_config('enable_hashjoin', v_hashjoin, true), set_config('enable_mergejoin', v_mergejoin, true);
  END IF;

  IF v_full THEN
    -- The keys of removed drivers are logged: the leads that had one as a candidate are due.
    WITH removed AS (
      DELETE FROM canon.driver_index i
      WHERE NOT EXISTS (SELECT 1 FROM public.drivers d WHERE d.driver_id = i.driver_id)
      RETURNING i.driver_id, i.phone_norm, i.license_norm, i.plate_norm
    ),
    logged AS (
      INSERT INTO canon.driver_index_key_changes (driver_id, change, phone_norm, license_norm, plate_norm, logged_at, run_id)
      SELECT r.driver_id, 'REMOVED', r.phone_norm, r.license_norm, r.plate_norm, now(), p_run_id
      FROM removed r
      WHERE num_nonnulls(r.phone_norm, r.license_norm, r.plate_norm) > 0
      RETURNING 1
    )
    SELECT count(*) INTO v_deleted FROM removed;
  END IF;
  DROP TABLE pg_temp.driver_index_source;

  -- The index changed (reported; retries are targeted by canon.match_cabinet_leads).
  IF v_upserted > 0 OR v_deleted > 0 THEN
    v_changed_at := now();
  END IF;

  INSERT INTO canon.driver_index_state AS s (singleton, last_full_at, last_refresh_at, last_run_id, changed_at)
  VALUES (true, CASE WHEN v_full THEN now() END, now(), p_run_id, v_changed_at)
  ON CONFLICT (singleton) DO UPDATE
    SET last_full_at = coalesce(excluded.last_full_at, s.last_full_at),
        last_refresh_at = excluded.last_refresh_at,
        last_run_id = excluded.last_run_id,
        changed_at = coalesce(excluded.changed_at, s.changed_at);
  UPDATE canon.source_scan_state
  SET seen_xmin = v_snapshot_xmin, read_at = now(), run_id = p_run_id,
      full_read_at = CASE WHEN v_full THEN now() ELSE full_read_at END
  WHERE source_table = 'drivers';

  RETURN jsonb_build_object(
    'mode', CASE WHEN v_full THEN 'full' ELSE 'incremental' END,
    'driver_rows', v_rows,
    'drivers_read_again', CASE WHEN v_full THEN NULL ELSE cardinality(v_changed_ids) END,
    'drivers_scanned', v_scanned,
    'drivers_with_future_timestamp', v_future,
    'drivers_without_timestamp', v_no_time,
    'drivers_reindexed', v_upserted,
    'drivers_removed', v_deleted,
    'drivers_indexed', CASE WHEN v_full THEN (SELECT count(*) FROM canon.driver_index) END,
    'drivers_skipped_bad_id', CASE WHEN v_full THEN (
      SELECT count(*) FROM public.drivers d
      WHERE nullif(btrim(d.driver_id), '') IS NULL OR length(d.driver_id) > 200) END,
    'index_changed', v_changed_at IS NOT NULL);
END
$$;
COMMENT ON FUNCTION canon.refresh_driver_index(bigint) IS 'Pipeline step 4: incremental (row versions written since the last read, by commit order) or full refresh of canon.driver_index from public.drivers; sets driver_index_state.changed_at when rows were written or removed and logs the keys drivers lost (canon.driver_index_key_changes). Returns step stats.';

-- snapshot of sql/canon/canon.match_cabinet_leads.sql
-- canon.match_cabinet_leads: pipeline steps 5 and 6. Keys changed lead rows, selects the
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
  v_selected integer;
  v_new_persons integer;
  v_driver_links integer;
  v_lead_links integer;
  v_origins integer;
  v_resolved integer;
  v_unmatched integer;
  v_no_driver_repaired integer := 0;
  v_stats jsonb;
  v_keys jsonb;
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
  -- Step 5a: every lead row written since the last read is keyed (canon.key_changed_leads).
  v_t := clock_timestamp();
  v_keys := canon.key_changed_leads(p_run_id);
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
    'leads_keyed', (v_keys->>'lead_rows_written')::integer,
    'lead_keys', v_keys,
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
    'leads_without_lead_created_at', (v_keys->>'lead_rows_undated')::bigint,
    'leads_with_oversized_key', (v_keys->>'leads_with_oversized_key')::integer,
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
-- per lead): canon.refresh_lead_state stores it in canon.cabinet_lead_state for the
-- leads that changed, and the views read the stored rows.
CREATE OR REPLACE VIEW canon.v_cabinet_lead_status AS
-- (read once per query, and only when a row's key_rows is computed)
WITH since_read AS MATERIALIZED (SELECT r.lead_id, r.lead_source_pk, r.dated FROM canon.lead_rows_since_read() r)
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
       -- Dated lead rows sharing this key: those keyed (canon.lead_keys) and not written
       -- since, and those written since the last read. 1 for almost every lead, which lets
       -- the per-key claim views skip sorting every lead.
       1 + (SELECT count(*)::integer FROM canon.lead_keys k2
            WHERE k2.lead_source_pk = c.lead_source_pk AND k2.lead_date IS NOT NULL AND k2.lead_id <> c.lead_id
              AND NOT EXISTS (SELECT 1 FROM since_read r WHERE r.lead_id = k2.lead_id))
         + (SELECT count(*)::integer FROM since_read r
            WHERE r.lead_source_pk = c.lead_source_pk AND r.dated AND r.lead_id <> c.lead_id) AS key_rows
FROM canon.v_cabinet_lead_chain c
LEFT JOIN canon.claims_yango_cabinet_14d c1 ON c1.lead_source_pk = c.lead_source_pk AND c1.milestone = 1
LEFT JOIN canon.claims_yango_cabinet_14d c5 ON c5.lead_source_pk = c.lead_source_pk AND c5.milestone = 5
LEFT JOIN canon.claims_yango_cabinet_14d c25 ON c25.lead_source_pk = c.lead_source_pk AND c25.milestone = 25;
COMMENT ON VIEW canon.v_cabinet_lead_status IS
  'Live state of every cabinet lead row with lead_created_at: chain, milestones, claims of this key, limbo_stage. Stored per lead in canon.cabinet_lead_state by the pipeline.';

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
-- * the stored row of canon.cabinet_lead_state (as of its evaluated_at) where it is still
--   current: it exists, its key and lead date are the lead row's own, its key is not marked
--   in canon.cabinet_lead_state_dirty (a link or claim changed, whoever wrote it), and the
--   claim rules have not changed since;
-- * any other dated lead row evaluated live (canon.lead_status_live, evaluated_at = now()):
--   a row committed since the last run whatever its id, a row re-keyed or re-dated
--   upstream, a lead whose claim was deleted or link changed in psql a moment ago.
-- So links, claims and the lead rows are always as the tables say; trips are as of the
-- last run that read them (docs/change-detection.md).
CREATE OR REPLACE VIEW canon.v_cabinet_lead_status_current AS
SELECT l.id AS lead_id,
       CASE WHEN v.lead_id IS NULL THEN s.lead_source_pk ELSE v.lead_source_pk END AS lead_source_pk,
       CASE WHEN v.lead_id IS NULL THEN s.lead_date ELSE v.lead_date END AS lead_date,
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
LEFT JOIN canon.cabinet_lead_state s ON s.lead_id = l.id
LEFT JOIN canon.cabinet_lead_state_dirty d ON d.lead_source_pk = s.lead_source_pk
-- (not current: evaluated live; the condition is a one-time filter of this subquery, so
-- a current row costs no evaluation)
LEFT JOIN LATERAL (
  SELECT x.*
  FROM canon.lead_status_live(l.id) x
  WHERE s.lead_id IS NULL
     OR s.lead_date IS DISTINCT FROM canon.lead_date_of(l.lead_created_at)
     OR s.lead_source_pk IS DISTINCT FROM canon.lead_source_pk(l.external_id, l.id)
     OR d.lead_source_pk IS NOT NULL
     OR (SELECT m.full_refresh_needed FROM canon.cabinet_lead_state_meta m)
  OFFSET 0
) v ON true
WHERE isfinite(l.lead_created_at);
COMMENT ON VIEW canon.v_cabinet_lead_status_current IS
  'One row per dated cabinet lead row: the stored state (canon.cabinet_lead_state) where it is current (same key and date, key not marked dirty, rules unchanged), else the live state. Read by ops.v_cabinet_leads_limbo and the claim views.';

-- snapshot of sql/canon/canon.generate_cabinet_claims.sql
-- canon.generate_cabinet_claims: pipeline step 7 (SPEC 7). Brings the lead state
-- (canon.cabinet_lead_state) up to date, then inserts, as 'generated', every missing
-- claim (lead_source_pk, milestone) whose milestone a lead of the scope
-- (lead_date >= p_scope_from, not only this run's batch) reached in
-- [lead_date, lead_date + window_days), with the rule's amount. Existing claims (paid,
-- rejected, any status) are never touched (INSERT ... ON CONFLICT DO NOTHING); a second
-- call inserts nothing. Two lead rows sharing a key get one set of claims (from the
-- earliest row that reached the milestone). A claim is decided on the lead's live chain
-- (canon.v_cabinet_lead_status), never on the stored state alone.
-- Which leads are re-evaluated (docs/change-detection.md):
--   * lead rows that changed (canon.cabinet_lead_state_pending, listed with their keys by
--     canon.refresh_lead_keys) and keys whose links or claims changed
--     (canon.cabinet_lead_state_dirty, marked by triggers); exactly the marks read are
--     removed, so a mark made meanwhile waits for the next evaluation;
--   * the leads (any scope) of the drivers with trip rows written since the last look
--     (canon.trip_drivers_changed); when rows may have gone (deletes, updates, a reset of
--     the statistics), every lead that had trip rows;
--   * a sweep, on the first run of each business day, when called without a run
--     (p_run_id NULL, by hand) or after the claim rules changed: every lead of the scope,
--     plus lead rows that appeared, vanished or changed key or date anywhere;
--   * with p_only_limbo, the scope's leads in NO_DRIVER and TRIPS_NO_CLAIM as well.
-- Returns step stats, including lead_state {mode, reasons, evaluated, written, removed}.
CREATE OR REPLACE FUNCTION canon.generate_cabinet_claims(p_run_id bigint, p_scope_from date, p_only_limbo boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
  v_today date := canon.business_today();
  v_meta canon.cabinet_lead_state_meta%ROWTYPE;
  v_sweep boolean;
  v_keys jsonb;
  v_trips jsonb;
  v_ids integer[];
  v_again_ids integer[];
  v_reasons jsonb;
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
  SELECT * INTO v_meta FROM canon.cabinet_lead_state_meta FOR UPDATE;
  v_sweep := p_run_id IS NULL OR v_meta.full_refresh_needed OR v_meta.last_sweep_date IS DISTINCT FROM v_today;
  -- By hand: the lead rows written since the last read are keyed first, as step 5 does.
  IF p_run_id IS NULL THEN
    v_keys := canon.key_changed_leads(NULL);
  END IF;
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
  JOIN canon.cabinet_lead_state s ON s.driver_id = d.driver_id
  ON CONFLICT DO NOTHING;

  -- Rows may have gone (deleted, or moved away by an update): only a lead that had trip
  -- rows can lose some (any scope); one without can only gain, and new rows are found.
  -- (the first look has nothing to compare with: every lead with a driver)
  IF (v_trips->>'rows_may_be_gone')::boolean THEN
    INSERT INTO pg_temp.lead_state_todo
    SELECT s.lead_id, 'trip_rows_gone'
    FROM canon.cabinet_lead_state s
    WHERE s.trip_rows_in_window > 0
       OR (v_trips->>'whole_read_reason' = 'first_read' AND s.driver_id IS NOT NULL)
    ON CONFLICT DO NOTHING;
  END IF;

  IF v_sweep THEN
    INSERT INTO pg_temp.lead_state_todo
    SELECT l.id, 'sweep_scope'
    FROM public.module_ct_cabinet_leads l
    WHERE l.lead_created_at >= p_scope_from::timestamp
    ON CONFLICT DO NOTHING;
    -- Lead rows evaluated but gone, undated, re-keyed or re-dated; dated rows never evaluated.
    INSERT INTO pg_temp.lead_state_todo
    SELECT coalesce(s.lead_id, l.id), 'sweep_membership'
    FROM canon.cabinet_lead_state s
    FULL JOIN (SELECT l.id, canon.lead_source_pk(l.external_id, l.id) AS lead_source_pk, canon.lead_date_of(l.lead_created_at) AS lead_date
               FROM public.module_ct_cabinet_leads l
               WHERE isfinite(l.lead_created_at)) l
      ON l.id = s.lead_id
    WHERE s.lead_id IS NULL OR l.id IS NULL
       OR s.lead_source_pk <> l.lead_source_pk OR s.lead_date <> l.lead_date
    ON CONFLICT DO NOTHING;
    IF v_meta.full_refresh_needed THEN
      INSERT INTO pg_temp.lead_state_todo
      SELECT s.lead_id, 'claim_rules_changed' FROM canon.cabinet_lead_state s
      ON CONFLICT DO NOTHING;
    END IF;
  END IF;

  IF p_only_limbo THEN
    INSERT INTO pg_temp.lead_state_todo
    SELECT s.lead_id, 'only_limbo'
    FROM canon.cabinet_lead_state s
    WHERE s.limbo_stage IN ('NO_DRIVER', 'TRIPS_NO_CLAIM') AND s.lead_date >= p_scope_from
    ON CONFLICT DO NOTHING;
  END IF;

  SELECT coalesce(jsonb_object_agg(r.reason, r.n), '{}'::jsonb) INTO v_reasons
  FROM (SELECT t.reason, count(*) AS n FROM pg_temp.lead_state_todo t GROUP BY t.reason) r;
  v_ids := ARRAY(SELECT t.lead_id FROM pg_temp.lead_state_todo t ORDER BY t.lead_id);
  v_state := canon.refresh_lead_state(p_run_id, v_ids);
  IF (v_state->>'written')::integer >= 10000 THEN
    ANALYZE canon.cabinet_lead_state;
  END IF;

  -- Claims of the scope present before this step (they are never touched), by status.
  SELECT coalesce(jsonb_object_agg(e.status, e.n), '{}'::jsonb) INTO v_existing
  FROM (SELECT cl.status, count(*) AS n
        FROM canon.claims_yango_cabinet_14d cl
        WHERE cl.lead_date >= p_scope_from
        GROUP BY cl.status) e;

  -- Stored rows with a claim missing that this step did not evaluate (a claim out of
  -- scope then, a claim insert that failed): evaluated again after the claims.
  v_again_ids := ARRAY(
    SELECT s.lead_id FROM canon.cabinet_lead_state s
    WHERE s.limbo_stage = 'TRIPS_NO_CLAIM' AND s.lead_date >= p_scope_from
      AND NOT EXISTS (SELECT 1 FROM pg_temp.lead_state_todo t WHERE t.lead_id = s.lead_id));

  -- Claims: every reached milestone without its claim.
  PERFORM set_config('cabinet.lead_state_marking', 'off', true);
  WITH
  -- Decided on the live chain of the leads the stored state shows with a claim missing:
  -- a trip row deleted since the state was stored cannot earn a claim.
  live AS MATERIALIZED (
    SELECT v.*
    FROM canon.v_cabinet_lead_status v
    WHERE v.lead_id IN (SELECT s.lead_id FROM canon.cabinet_lead_state s
                        WHERE s.limbo_stage = 'TRIPS_NO_CLAIM' AND s.lead_date >= p_scope_from)
  ),
  due AS (
    SELECT DISTINCT ON (s.lead_source_pk, m.milestone)
           s.lead_id, s.lead_source_pk, s.lead_date, s.person_key, s.driver_id, s.currency, m.milestone, m.amount
    FROM live s
    CROSS JOIN LATERAL (
      VALUES (1, s.m1_amount, s.reached_m1 AND NOT s.has_claim_m1),
             (5, s.m5_amount, s.reached_m5 AND NOT s.has_claim_m5),
             (25, s.m25_amount, s.reached_m25 AND NOT s.has_claim_m25)
    ) m (milestone, amount, missing)
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

  -- The claimed leads (every stored row of a claimed key): their claim flags and stage
  -- follow the claims just written. Their chain was evaluated by this step, or is stored
  -- and unchanged (a change would have marked it): their trips are not read again.
  WITH claimed AS (
    SELECT c.lead_source_pk,
           EXISTS (SELECT 1 FROM canon.claims_yango_cabinet_14d cl WHERE cl.lead_source_pk = c.lead_source_pk AND cl.milestone = 1) AS c1,
           EXISTS (SELECT 1 FROM canon.claims_yango_cabinet_14d cl WHERE cl.lead_source_pk = c.lead_source_pk AND cl.milestone = 5) AS c5,
           EXISTS (SELECT 1 FROM canon.claims_yango_cabinet_14d cl WHERE cl.lead_source_pk = c.lead_source_pk AND cl.milestone = 25) AS c25
    FROM (SELECT DISTINCT jsonb_array_elements_text(v_generated->'claimed_keys') AS lead_source_pk) c
  )
  UPDATE canon.cabinet_lead_state s
  SET has_claim_m1 = c.c1, has_claim_m5 = c.c5, has_claim_m25 = c.c25,
      limbo_stage = canon.limbo_stage_of(s.person_key, s.driver_id, s.trips_in_window,
                                         s.reached_m1, s.reached_m5, s.reached_m25, c.c1, c.c5, c.c25),
      evaluated_at = now(), evaluated_run_id = p_run_id
  FROM claimed c
  WHERE s.lead_source_pk = c.lead_source_pk
    AND (s.has_claim_m1, s.has_claim_m5, s.has_claim_m25) IS DISTINCT FROM (c.c1, c.c5, c.c25);
  GET DIAGNOSTICS v_claimed_written = ROW_COUNT;
  IF v_claimed_written > 0 THEN
    -- (as canon.refresh_lead_state does: counts and snapshots made before are stale)
    UPDATE canon.cabinet_lead_state_meta SET changed_at = now();
  END IF;
  -- Marks committed by others while this step ran (visible now) are evaluated too; then
  -- the marks taken are removed.
  v_state2 := canon.refresh_lead_state(p_run_id, v_again_ids || canon.take_lead_state_marks());
  PERFORM canon.clear_lead_state_marks();
  UPDATE canon.cabinet_lead_state_meta
  SET last_sweep_date = CASE WHEN v_sweep THEN v_today ELSE last_sweep_date END,
      last_sweep_at = CASE WHEN v_sweep THEN now() ELSE last_sweep_at END,
      full_refresh_needed = false,
      updated_at = now();

  -- The scope's figures, from the stored rows' counters (canon.cabinet_lead_state_counts,
  -- kept by a trigger as the state changes): a few hundred rows, whatever the scope holds.
  SELECT jsonb_build_object(
           'leads', coalesce(sum(c.leads), 0),
           'with_identity', coalesce(sum(c.leads) FILTER (WHERE c.with_identity), 0),
           'with_driver', coalesce(sum(c.leads) FILTER (WHERE c.with_driver), 0),
           'with_trips', coalesce(sum(c.leads) FILTER (WHERE c.with_trips), 0),
           'without_rule', coalesce(sum(c.leads) FILTER (WHERE NOT c.with_rule), 0),
           'trips_no_claim', coalesce(sum(c.leads) FILTER (WHERE c.limbo_stage = 'TRIPS_NO_CLAIM'), 0))
  INTO v_scope
  FROM canon.cabinet_lead_state_counts c
  WHERE c.lead_date >= p_scope_from;

  WITH
  -- Per key (sorts the scope): on sweeps only; NULL in incremental runs.
  scope_keys AS (
    SELECT count(DISTINCT s.lead_source_pk) AS lead_keys,
           count(DISTINCT s.lead_source_pk) FILTER (WHERE s.reached_m1)
             + count(DISTINCT s.lead_source_pk) FILTER (WHERE s.reached_m5)
             + count(DISTINCT s.lead_source_pk) FILTER (WHERE s.reached_m25) AS milestones_reached
    FROM canon.cabinet_lead_state s
    WHERE v_sweep AND s.lead_date >= p_scope_from
  ),
  -- (the evaluated ids joined, each probed by key: "lead_id = ANY (v_ids)" was planned as
  -- a scan of every stored row with a driver, each compared with the whole array)
  evaluated_drivers AS (
    SELECT DISTINCT s.driver_id
    FROM unnest(v_ids) x (lead_id)
    JOIN canon.cabinet_lead_state s ON s.lead_id = x.lead_id
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
      'trips', v_trips,
      'keys', v_keys,
      'reasons', v_reasons,
      'evaluated', (v_state->>'evaluated')::integer + (v_state2->>'evaluated')::integer,
      'written', (v_state->>'written')::integer + (v_state2->>'written')::integer + v_claimed_written,
      'claimed_rows_moved_on', v_claimed_written,
      'removed', (v_state->>'removed')::integer + (v_state2->>'removed')::integer)
  ) INTO v_stats;
  RETURN v_stats;
END
$$;
COMMENT ON FUNCTION canon.generate_cabinet_claims(bigint, date, boolean) IS
  'Pipeline step 7: re-evaluates the lead state that may have changed (canon.cabinet_lead_state), then inserts, as generated, every missing claim (lead_source_pk, milestone) reached in the window by leads with lead_date >= p_scope_from. Never touches existing claims. p_run_id NULL (by hand) sweeps the whole scope. Returns step stats.';

-- snapshot of sql/canon/canon.limbo_counts_delta.sql
-- canon.limbo_counts_delta: the stored lead state counted (canon.cabinet_lead_state_counts,
-- leads > 0) with, for the given lead rows, their stored rows taken off (leads = -1) and
-- their rows of the limbo view's state added (leads = 1, canon.v_cabinet_lead_status_current):
-- summed by week and stage it is the view's count when the given rows are every row whose
-- stored state may not be current. Used by canon.limbo_week_counts_of_state.
CREATE OR REPLACE FUNCTION canon.limbo_counts_delta(p_lead_ids integer[])
RETURNS TABLE (week_start date, limbo_stage text, with_identity boolean, with_driver boolean, leads bigint)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
  SELECT date_trunc('week', c.lead_date::timestamp)::date, c.limbo_stage, c.with_identity, c.with_driver, c.leads
  FROM canon.cabinet_lead_state_counts c
  UNION ALL
  SELECT date_trunc('week', s.lead_date::timestamp)::date, s.limbo_stage, s.person_key IS NOT NULL, s.driver_id IS NOT NULL, -1
  FROM unnest(p_lead_ids) x (lead_id)
  JOIN canon.cabinet_lead_state s ON s.lead_id = x.lead_id
  UNION ALL
  SELECT date_trunc('week', v.lead_date::timestamp)::date, v.limbo_stage, v.person_key IS NOT NULL, v.driver_id IS NOT NULL, 1
  FROM canon.v_cabinet_lead_status_current v
  WHERE v.lead_id IN (SELECT unnest(p_lead_ids))
$$;
COMMENT ON FUNCTION canon.limbo_counts_delta(integer[]) IS
  'Stored state counters, with the given lead rows'' stored rows taken off (-1) and their current rows added (+1): the limbo view''s counts when those are all the rows that may not be current.';

-- snapshot of sql/canon/canon.limbo_week_counts_of_state.sql
-- canon.limbo_week_counts_of_state: leads per limbo stage for each lead week, as
-- ops.v_cabinet_leads_limbo would count them, without a pass over every lead: the counters
-- of the stored state (canon.cabinet_lead_state_counts), less the stored rows that may not
-- be current, plus the view's rows for those leads. The rows that may not be current are
-- the marked ones (canon.cabinet_lead_state_pending, keys in canon.cabinet_lead_state_dirty)
-- and, with p_read_leads, the lead rows written since the last read (by commit order, one
-- pass over the lead rows without a function per row). When the total does not come to the
-- dated lead rows (rows deleted since, or a drift), or the claim rules changed, the view
-- is counted in full instead. Without p_read_leads the lead rows are taken as of the last
-- read (the snapshot of a run, moments after its own read).
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
  v_limit integer;
  v_dated bigint;
  v_ids integer[] := '{}';
  v_total bigint;
  v_full boolean;
BEGIN
  v_full := (SELECT m.full_refresh_needed FROM canon.cabinet_lead_state_meta m);
  IF NOT v_full THEN
    IF p_read_leads THEN
      v_limit := canon.xmin_age_limit((SELECT s.seen_xmin FROM canon.source_scan_state s
                                       WHERE s.source_table = 'module_ct_cabinet_leads'));
      SELECT count(*) FILTER (WHERE isfinite(l.lead_created_at)),
             coalesce(array_agg(l.id) FILTER (WHERE v_limit IS NULL OR age(l.xmin) <= v_limit), '{}')
      INTO v_dated, v_ids
      FROM public.module_ct_cabinet_leads l;
    ELSE
      v_dated := (SELECT s.rows_dated FROM canon.source_scan_state s WHERE s.source_table = 'module_ct_cabinet_leads');
    END IF;
    v_ids := v_ids
      || ARRAY(SELECT p.lead_id FROM canon.cabinet_lead_state_pending p)
      || canon.lead_ids_of_keys(ARRAY(SELECT d.lead_source_pk FROM canon.cabinet_lead_state_dirty d));
    v_ids := ARRAY(SELECT DISTINCT unnest(v_ids));
    SELECT coalesce(sum(x.leads), 0) INTO v_total FROM canon.limbo_counts_delta(v_ids) x;
    v_full := v_dated IS NULL OR v_total <> v_dated;
  END IF;

  IF v_full THEN
    RETURN QUERY
    SELECT v.week_start, count(*)::integer,
           count(*) FILTER (WHERE v.person_key IS NOT NULL)::integer,
           count(*) FILTER (WHERE v.driver_id IS NOT NULL)::integer,
           count(*) FILTER (WHERE v.limbo_stage = 'NO_IDENTITY')::integer,
           count(*) FILTER (WHERE v.limbo_stage = 'NO_DRIVER')::integer,
           count(*) FILTER (WHERE v.limbo_stage = 'NO_TRIPS_14D')::integer,
           count(*) FILTER (WHERE v.limbo_stage = 'TRIPS_NO_CLAIM')::integer,
           count(*) FILTER (WHERE v.limbo_stage = 'OK')::integer
    FROM ops.v_cabinet_leads_limbo v
    GROUP BY v.week_start
    ORDER BY v.week_start;
    RETURN;
  END IF;

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

-- snapshot of sql/ops/ops.limbo_week_counts.sql
-- ops.limbo_week_counts: leads per limbo stage for each lead week (week_start = ISO
-- Monday of lead_date), the one definition of the counts that snapshots store and alert
-- rules test. p_run_id NULL: live, the counts of ops.v_cabinet_leads_limbo without a
-- pass over every lead (canon.limbo_week_counts_of_state); a run id: the rows stored for that run in
-- ops.limbo_snapshot_weeks. PL/pgSQL so that only the branch taken is planned; jit off
-- (the live part's estimate over the lead view once triggered a JIT compilation that
-- took longer than the whole count).
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
    AND v_prev_at >= (SELECT m.changed_at FROM canon.cabinet_lead_state_meta m)
    AND NOT EXISTS (SELECT 1 FROM canon.cabinet_lead_state_pending)
    AND NOT EXISTS (SELECT 1 FROM canon.cabinet_lead_state_dirty);

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
AS $$
DECLARE
  v_ids integer[];
  v_out jsonb;
BEGIN
  BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('cabinet_leads'), hashtext('reconcile_cabinet_leads_pipeline'));
  EXCEPTION WHEN lock_not_available THEN
    RAISE EXCEPTION 'a pipeline run (or an identity change) holds the job lock for more than 30 s: try again when it has finished'
      USING ERRCODE = '55P03';
  END;
  -- Lead rows written since the last read are keyed (and marked) first.
  PERFORM canon.key_changed_leads(NULL);
  v_ids := canon.take_lead_state_marks();
  IF p_lead_keys IS NULL THEN
    v_ids := ARRAY(
      SELECT l.id FROM public.module_ct_cabinet_leads l WHERE isfinite(l.lead_created_at)
      UNION
      SELECT s.lead_id FROM canon.cabinet_lead_state s);
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

-- snapshot of sql/canon/canon.lead_keys_drift.sql
-- canon.lead_keys_drift: lead rows whose cache row in canon.lead_keys is not what
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
    FROM canon.source_scan_state s
    WHERE s.source_table = 'module_ct_cabinet_leads'
  ),
  leads AS (
    SELECT l.id, canon.lead_source_pk(l.external_id, l.id) AS lead_source_pk,
           md5(concat_ws(E'\x1f', l.external_id, l.lead_created_at::text, l.park_phone, l.asset_plate_number,
                         l.first_name, l.middle_name, l.last_name)) AS source_hash,
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
  FULL JOIN canon.lead_keys k ON k.lead_id = l.id
  FULL JOIN canon.lead_rows_unkeyed u ON u.lead_id = coalesce(l.id, k.lead_id)
  WHERE NOT coalesce(l.written_since_read, false)
    AND (l.id IS NULL
         OR (k.lead_id IS NULL AND (u.lead_id IS NULL OR length(l.lead_source_pk) <= 200))
         OR (k.lead_id IS NOT NULL AND (k.lead_source_pk <> l.lead_source_pk OR k.source_hash <> l.source_hash)))
    AND NOT (l.id IS NULL AND coalesce((SELECT se.deleted_since FROM seen se), true))
$$;
COMMENT ON FUNCTION canon.lead_keys_drift() IS
  'Lead rows whose canon.lead_keys (or lead_rows_unkeyed) row differs from what keying them now would write; the next run''s work excepted.';

-- snapshot of sql/canon/canon.lead_state_drift.sql
-- canon.lead_state_drift: lead rows whose stored state (canon.cabinet_lead_state) is not
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
    FROM canon.source_scan_state s
  ),
  rules_changed AS (
    SELECT m.full_refresh_needed AS changed FROM canon.cabinet_lead_state_meta m
  ),
  marked AS (
    SELECT p.lead_id FROM canon.cabinet_lead_state_pending p
    UNION
    SELECT unnest(canon.lead_ids_of_keys(ARRAY(SELECT d.lead_source_pk FROM canon.cabinet_lead_state_dirty d)))
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
    FULL JOIN canon.cabinet_lead_state s ON s.lead_id = l.id
    WHERE (s.lead_id IS NULL OR l.id IS NULL OR s.lead_source_pk <> l.lead_source_pk OR s.lead_date <> l.lead_date)
      AND NOT coalesce(l.written_since_read, false)
  ),
  recent AS (
    SELECT s.*
    FROM canon.cabinet_lead_state s
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
           s.has_claim_m1, s.has_claim_m5, s.has_claim_m25, s.limbo_stage, s.key_rows)
          IS DISTINCT FROM
          (v.person_key, v.driver_id, v.window_end, v.trips_in_window, v.trip_rows_in_window,
           v.reached_m1, v.reached_m5, v.reached_m25, v.expected_amount,
           v.has_claim_m1, v.has_claim_m5, v.has_claim_m25, v.limbo_stage, v.key_rows)
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
-- pending lead row (canon.cabinet_lead_state_pending) or dirty key
-- (canon.cabinet_lead_state_dirty) marked before the start of the last completed,
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
  FROM canon.cabinet_lead_state_pending p CROSS JOIN last_run r
  WHERE p.marked_at < r.started_at
  UNION ALL
  SELECT NULL, d.lead_source_pk, format('lead key %s marked at %s', left(d.lead_source_pk, 40), d.marked_at)
  FROM canon.cabinet_lead_state_dirty d CROSS JOIN last_run r
  WHERE d.marked_at < r.started_at
$$;
COMMENT ON FUNCTION canon.lead_state_marks_drift() IS
  'Lead state marks older than the start of the last completed run (which would have consumed them).';

-- snapshot of sql/canon/canon.never_evaluated_drift.sql
-- canon.never_evaluated_drift: dated lead keys neither linked nor unmatched none of whose
-- rows is listed in canon.lead_keys_pending: no batch would ever select them. Read by
-- ops.check_caches, repaired by ops.repair_caches.
CREATE OR REPLACE FUNCTION canon.never_evaluated_drift()
RETURNS TABLE (lead_id integer, example text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT min(k.lead_id), format('lead key %s (lead id %s) is not listed', left(k.lead_source_pk, 40), min(k.lead_id))
  FROM canon.lead_keys k
  WHERE k.lead_date IS NOT NULL
    AND NOT EXISTS (SELECT 1 FROM canon.identity_links l WHERE l.source_table = 'module_ct_cabinet_leads' AND l.source_pk = k.lead_source_pk)
    AND NOT EXISTS (SELECT 1 FROM canon.identity_unmatched u WHERE u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = k.lead_source_pk)
  GROUP BY k.lead_source_pk
  HAVING NOT bool_or(EXISTS (SELECT 1 FROM canon.lead_keys_pending q WHERE q.lead_id = k.lead_id))
$$;
COMMENT ON FUNCTION canon.never_evaluated_drift() IS
  'Dated lead keys never evaluated (no link, no unmatched row) with no row in canon.lead_keys_pending.';

-- snapshot of sql/canon/canon.retry_due_drift.sql
-- canon.retry_due_drift: OPEN unmatched leads sharing a key (phone, plate, licence) with a
-- driver indexed after their last attempt, when the retry check has run since that driver
-- was indexed, yet not due for a retry. Read by ops.check_caches, repaired by
-- ops.repair_caches.
CREATE OR REPLACE FUNCTION canon.retry_due_drift()
RETURNS TABLE (lead_source_pk text, example text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT u.source_pk,
         format('lead key %s: driver %s indexed at %s, last attempt %s', left(u.source_pk, 40), min(i.driver_id), min(i.indexed_at), u.last_attempt_at)
  FROM canon.identity_unmatched u
  JOIN canon.lead_keys k ON k.lead_source_pk = u.source_pk
  CROSS JOIN canon.driver_index_state st
  JOIN canon.driver_index i
    ON (i.phone_norm = k.phone_norm OR i.plate_norm = k.plate_norm OR i.license_norm = k.license_norm)
  WHERE u.status = 'OPEN' AND NOT u.retry_due
    AND i.indexed_at > u.last_attempt_at
    AND i.indexed_at <= st.retry_checked_at
  GROUP BY u.source_pk, u.last_attempt_at
$$;
COMMENT ON FUNCTION canon.retry_due_drift() IS
  'OPEN unmatched leads that a driver change since their last attempt makes due, not marked retry_due.';

-- snapshot of sql/canon/canon.driver_index_drift.sql
-- canon.driver_index_drift: drivers (the newest row of each valid driver_id) not indexed
-- in canon.driver_index, or indexed with other source values (hash); drivers written since
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
    FROM canon.source_scan_state s WHERE s.source_table = 'drivers'
  ),
  drivers AS (
    SELECT DISTINCT ON (d.driver_id)
           d.driver_id::text AS driver_id,
           md5(concat_ws(E'\x1f', d.park_id, d.phone, d.license_normalized_number, d.license_number,
                         d.car_normalized_number, d.car_number, d.full_name, d.first_name, d.middle_name,
                         d.last_name, d.hire_date::text)) AS source_hash
    FROM public.drivers d
    WHERE nullif(btrim(d.driver_id), '') IS NOT NULL AND length(d.driver_id) <= 200
    ORDER BY d.driver_id, coalesce(d.updated_at, d.created_at) DESC NULLS LAST
  )
  SELECT d.driver_id,
         format('driver %s: %s', d.driver_id,
                CASE WHEN i.driver_id IS NULL THEN 'not indexed' ELSE 'indexed with values that are not the driver''s' END)
  FROM drivers d
  LEFT JOIN canon.driver_index i ON i.driver_id = d.driver_id
  CROSS JOIN seen se
  WHERE (i.driver_id IS NULL OR i.source_hash <> d.source_hash)
    AND se.age_limit IS NOT NULL
    AND NOT EXISTS (SELECT 1 FROM public.drivers w WHERE w.driver_id = d.driver_id AND age(w.xmin) <= se.age_limit)
$$;
COMMENT ON FUNCTION canon.driver_index_drift() IS
  'Drivers not indexed, or indexed with other source values than their newest row; drivers written since the last read excepted.';

-- snapshot of sql/ops/ops.check_caches.sql
-- ops.check_caches: every cache the product keeps, against its live definition
-- (docs/change-detection.md): the lead keys, the lead state, the marks that schedule its
-- re-evaluation, the never-evaluated list, the retry marks and the driver index. One row
-- per cache with the rows that drifted and up to 5 examples; the next run's work (rows
-- written upstream since the last read, marks, trips to read) is not drift. The detail of
-- each is a function of its own (canon.*_drift), which ops.repair_caches() repairs from.
-- Part of ops.check_invariants (ord 10-15, doctor). Read-only. Cost: a pass over the lead
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
  ),
  caches (ord, invariant, description) AS (
    VALUES
      (10, 'LEAD_KEYS_CURRENT', 'every lead row keyed in canon.lead_keys with its current values (or listed unkeyed), no key of a row gone; rows written since the last read excepted'),
      (11, 'LEAD_STATE_CURRENT', 'one stored state row per dated lead row, equal to the live definition (values checked for the last doctor_lead_state_days days); marked rows and trips written or deleted since the last look excepted'),
      (12, 'LEAD_STATE_MARKS_CONSUMED', 'no pending row or dirty key marked before the start of the last completed run (every run evaluates and clears the marks it reads)'),
      (13, 'NEVER_EVALUATED_LISTED', 'every dated lead key neither linked nor unmatched has a row in canon.lead_keys_pending (else no batch selects it)'),
      (14, 'RETRY_DUE_MARKED', 'every OPEN unmatched lead sharing a key with a driver indexed after its last attempt (and checked since) is due for a retry'),
      (15, 'DRIVER_INDEX_CURRENT', 'every driver indexed in canon.driver_index with the values of its newest row; drivers written since the last read excepted')
  )
  SELECT c.ord, c.invariant,
         (SELECT count(*) FROM drift d WHERE d.ord = c.ord),
         coalesce((SELECT jsonb_agg(x.example) FROM (SELECT d.example FROM drift d WHERE d.ord = c.ord ORDER BY d.example LIMIT 5) x), '[]'::jsonb),
         c.description
  FROM caches c
  ORDER BY c.ord
$$;
COMMENT ON FUNCTION ops.check_caches() IS
  'Each cache (lead keys, lead state, its marks, the never-evaluated list, retry marks, driver index) against its live definition: rows drifted and examples (ord 10-15 of ops.check_invariants). ops.repair_caches() repairs.';

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
                              OR EXISTS (SELECT 1 FROM canon.lead_keys k WHERE k.lead_source_pk = t.trimmed))::int
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
              SELECT DISTINCT 'claims_settled', s.lead_source_pk FROM canon.claims_settled s
              WHERE s.unsettled_at IS NULL AND canon.lead_source_pk(s.lead_source_pk, NULL) IS DISTINCT FROM s.lead_source_pk
              UNION ALL
              SELECT DISTINCT 'lead_keys', k.lead_source_pk FROM canon.lead_keys k
              WHERE canon.lead_source_pk(k.lead_source_pk, NULL) IS DISTINCT FROM k.lead_source_pk
              UNION ALL
              SELECT DISTINCT 'cabinet_lead_state', s.lead_source_pk FROM canon.cabinet_lead_state s
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
    FROM canon.name_token_stats c
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
    FROM canon.driver_index i
    FULL JOIN canon.driver_name_roles r ON r.driver_id = i.driver_id
    WHERE i.driver_id IS NULL OR r.driver_id IS NULL OR r.indexed_at <> i.indexed_at
    UNION ALL
    SELECT format('driver %s: name roles %s / %s, source %s / %s', r.driver_id,
                  coalesce(r.given_names::text, '-'), coalesce(r.surnames::text, '-'),
                  coalesce(v.given_names::text, '-'), coalesce(v.surnames::text, '-'))
    FROM canon.driver_name_roles_live(ARRAY(
           SELECT x.driver_id FROM canon.driver_index x WHERE abs(hashtext(x.driver_id)) % 64 = 0
           UNION
           (SELECT x.driver_id FROM canon.driver_index x ORDER BY x.indexed_at DESC LIMIT 1000))) v
    JOIN canon.driver_name_roles r ON r.driver_id = v.driver_id
    WHERE v.source_indexed
      AND (r.given_names, r.surnames) IS DISTINCT FROM (v.given_names, v.surnames)
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
    SELECT 7, 'SETTLED_CLAIM_CHANGED', 'paid or rejected claims that differ from canon.claims_settled (changed, deleted or settled while the guard was off)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM settled_changed ORDER BY example LIMIT 5) x), (SELECT count(*) FROM settled_changed)
    UNION ALL
    SELECT 8, 'LEAD_STATE_COUNTS', 'canon.cabinet_lead_state_counts must count the stored lead state rows (by lead date, stage and flags)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM state_counts ORDER BY example LIMIT 5) x), (SELECT count(*) FROM state_counts)
    UNION ALL
    -- 10-19: each cache against its live definition
    SELECT x.ord, x.invariant, x.description, x.examples, x.violations FROM ops.check_caches() x
    UNION ALL
    SELECT 20, 'SETTLED_CLAIM_REMOVED', 'paid or rejected claims deleted, or moved back to an unsettled status, with no note saying why (their record in canon.claims_settled stays, stamped unsettled_*)',
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
    SELECT 50, 'NAME_TOKEN_STATS', 'canon.name_token_stats must count the stored name roles per token (canon.v_name_token_stats)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM name_token_stats_drift ORDER BY example LIMIT 5) x), (SELECT count(*) FROM name_token_stats_drift)
    UNION ALL
    SELECT 51, 'DRIVER_NAME_ROLES', 'canon.driver_name_roles must hold one row per driver index row, written with it, with the name fields of its source row (canon.v_driver_name_roles; content checked on the 1,000 drivers indexed last and every 64th)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM driver_name_roles_drift ORDER BY example LIMIT 5) x), (SELECT count(*) FROM driver_name_roles_drift)
  )
  SELECT c.invariant, c.n, coalesce(c.examples, '[]'::jsonb), c.description FROM checks c ORDER BY c.ord
$$;
COMMENT ON FUNCTION ops.check_invariants() IS
  'Every spec invariant with its violation count (0 = holds) and up to 5 examples: SELECT * FROM ops.check_invariants() WHERE violations > 0; cabinet-leads doctor exits 1 when any is violated.';

-- snapshot of sql/ops/ops.repair_caches.sql
-- ops.repair_caches: brings every drifted cache back to its live definition, rewriting
-- only what drifted (what ops.check_caches reports; `cabinet-leads doctor --repair`):
-- lead keys re-keyed, never-evaluated keys listed, retry marks set, the driver index
-- reconciled in full (re-normalising only the drivers whose values differ), marked and
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
BEGIN
  BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('cabinet_leads'), hashtext('reconcile_cabinet_leads_pipeline'));
  EXCEPTION WHEN lock_not_available THEN
    RAISE EXCEPTION 'a pipeline run (or an identity change) holds the job lock for more than 30 s: try again when it has finished'
      USING ERRCODE = '55P03';
  END;

  v_keys := canon.refresh_lead_keys(ARRAY(SELECT d.lead_id FROM canon.lead_keys_drift() d));

  INSERT INTO canon.lead_keys_pending (lead_id, lead_date)
  SELECT k.lead_id, k.lead_date FROM canon.never_evaluated_drift() d JOIN canon.lead_keys k ON k.lead_id = d.lead_id
  ON CONFLICT (lead_id) DO NOTHING;
  GET DIAGNOSTICS v_listed = ROW_COUNT;

  UPDATE canon.identity_unmatched u SET retry_due = true
  FROM canon.retry_due_drift() d
  WHERE u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = d.lead_source_pk AND u.status = 'OPEN';
  GET DIAGNOSTICS v_retry = ROW_COUNT;

  IF EXISTS (SELECT 1 FROM canon.driver_index_drift()) THEN
    UPDATE canon.driver_index_state SET last_full_at = NULL;
    v_drivers := canon.refresh_driver_index(NULL);
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
    'state_counts_recounted', v_counts);
END
$$;
COMMENT ON FUNCTION ops.repair_caches() IS
  'Repairs what ops.check_caches finds (and the state counters), rewriting only what drifted; takes the job lock. Returns what it repaired per cache. CLI: cabinet-leads doctor --repair.';

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
       CASE WHEN d.updated_at IS NULL AND d.created_at IS NULL THEN 'NO_TIMESTAMP' ELSE 'FUTURE_TIMESTAMP' END AS why
FROM public.drivers d
WHERE (d.updated_at IS NULL AND d.created_at IS NULL)
   OR d.updated_at > (now() AT TIME ZONE canon.setting('business_timezone')) + interval '1 day'
   OR d.created_at > (now() AT TIME ZONE canon.setting('business_timezone')) + interval '1 day';
COMMENT ON VIEW ops.v_drivers_odd_timestamps IS
  'Driver rows with a timestamp more than a day in the future (FUTURE_TIMESTAMP) or none at all (NO_TIMESTAMP): indexed all the same (by commit order), listed for upstream to fix.';

-- snapshot of migrations/parts/0031_after.sql
-- After the views stop reading it: the max(id) watermark goes.
DROP FUNCTION IF EXISTS canon.lead_state_watermark();
-- An infinite lead_created_at is no lead date (canon.lead_date_of): such rows are undated.
UPDATE canon.lead_keys SET lead_date = NULL WHERE lead_date IS NOT NULL AND NOT isfinite(lead_date);
UPDATE canon.lead_keys_pending SET lead_date = NULL WHERE lead_date IS NOT NULL AND NOT isfinite(lead_date);
DELETE FROM canon.cabinet_lead_state WHERE NOT isfinite(lead_date);
