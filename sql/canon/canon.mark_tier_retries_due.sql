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
