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
