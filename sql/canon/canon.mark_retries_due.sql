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
