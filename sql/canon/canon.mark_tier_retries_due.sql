-- canon.mark_tier_retries_due: part of canon.mark_retries_due (step 4b). Marks due the OPEN
-- unmatched leads the probabilistic tier would pair with a changed driver
-- (pg_temp.cabinet_changed_drivers: drivers indexed since the last check, and the plates and
-- names drivers had before a change or removal): the pairs of canon.fs_blocked_pairs, found
-- from the drivers' side. Plate block: a lead plate equal or one edit away with a shared
-- name token (canon.fs_plate_block_pair). Name block: one of the lead's rare keys
-- (canon.fs_rare_name_keys) that is a key of the driver's name and blocks
-- (canon.fs_name_block). Only leads the tier sees: the rules left them NO_CANDIDATES or
-- WEAK_MATCH_ONLY, or the tier sent them to review (a change of their exact keys is the
-- exact branch's). Returns the leads marked.
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
  v_marked integer;
BEGIN
  -- The changed plates' deletion keys (canon.plate_edit_keys), each with its plate and name.
  DROP TABLE IF EXISTS pg_temp.cabinet_changed_plate_keys;
  CREATE TEMP TABLE cabinet_changed_plate_keys ON COMMIT DROP AS
  SELECT DISTINCT e.key, d.plate_norm, d.name_norm
  FROM pg_temp.cabinet_changed_drivers d
  CROSS JOIN LATERAL unnest(canon.plate_edit_keys(d.plate_norm)) AS e (key)
  WHERE d.plate_norm IS NOT NULL AND d.name_norm IS NOT NULL;
  v_plate_keys := ARRAY(SELECT DISTINCT c.key FROM pg_temp.cabinet_changed_plate_keys c);
  -- The changed names' keys (canon.name_phonetic_keys), less those of a token more than
  -- name_block_max_drivers drivers type in one role (canon_internal.name_token_stats): its
  -- key's block is larger still and blocks nothing, and counting it would read the key's
  -- whole posting list (30 ms for a common name at 1M drivers). None in a base too small to
  -- tell a rare name.
  IF v_rare_max >= 1 THEN
    v_name_keys := ARRAY(
      SELECT x.key
      FROM pg_temp.cabinet_changed_drivers d
      CROSS JOIN LATERAL unnest(string_to_array(d.name_norm, ' ')) AS t (token)
      CROSS JOIN LATERAL (SELECT canon.name_phonetic(t.token) AS key) x
      LEFT JOIN canon_internal.name_token_stats s ON s.token = t.token
      WHERE length(t.token) >= 3
      GROUP BY x.key
      HAVING NOT bool_or(coalesce(greatest(s.as_given, s.as_surname), 0) > v_block_max));
  END IF;

  -- The candidate pairs, from the lead keys' GIN indexes probed once with all the keys of a
  -- side (the pending list of a run's new leads is read once, not per key).
  DROP TABLE IF EXISTS pg_temp.cabinet_tier_pairs;
  CREATE TEMP TABLE cabinet_tier_pairs ON COMMIT DROP AS
  WITH near AS (
    SELECT k.lead_source_pk, k.plate_norm, k.name_norm
    FROM canon_internal.lead_keys k
    WHERE canon.plate_edit_keys(k.plate_norm) && v_plate_keys AND k.plate_norm IS NOT NULL
  ),
  near_pairs AS (
    SELECT DISTINCT n.lead_source_pk, n.plate_norm, n.name_norm, c.plate_norm AS driver_plate, c.name_norm AS driver_name
    FROM near n
    CROSS JOIN LATERAL unnest(canon.plate_edit_keys(n.plate_norm)) AS e (key)
    JOIN pg_temp.cabinet_changed_plate_keys c ON c.key = e.key
  )
  SELECT p.lead_source_pk, NULL::text AS name_key
  FROM near_pairs p
  WHERE canon.fs_plate_block_pair(p.plate_norm, p.name_norm, p.driver_plate, p.driver_name)
  UNION
  SELECT k.lead_source_pk, r.key
  FROM canon_internal.lead_keys k
  CROSS JOIN LATERAL canon.fs_rare_name_keys(k.name_norm, v_rare_max) AS r (key)
  WHERE canon.name_phonetic_keys(k.name_norm) && v_name_keys AND k.name_norm IS NOT NULL
    AND r.key = ANY (v_name_keys);

  -- The leads the tier sees; a name key counts when it blocks (looked up for those only).
  WITH open_pairs AS MATERIALIZED (
    SELECT p.lead_source_pk, p.name_key
    FROM pg_temp.cabinet_tier_pairs p
    JOIN canon.identity_unmatched u ON u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = p.lead_source_pk
    WHERE u.status = 'OPEN' AND NOT u.retry_due
      AND u.reason_code IN ('NO_CANDIDATES', 'WEAK_MATCH_ONLY', 'PROBABLE_MATCH')
  ),
  blocking AS MATERIALIZED (
    SELECT x.key
    FROM (SELECT DISTINCT o.name_key AS key FROM open_pairs o WHERE o.name_key IS NOT NULL) x
    WHERE canon.fs_name_block(x.key, v_block_max) IS NOT NULL
  )
  UPDATE canon.identity_unmatched u SET retry_due = true
  FROM (SELECT DISTINCT o.lead_source_pk FROM open_pairs o
        WHERE o.name_key IS NULL OR o.name_key IN (SELECT b.key FROM blocking b)) due
  WHERE u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = due.lead_source_pk
    AND u.status = 'OPEN' AND NOT u.retry_due;
  GET DIAGNOSTICS v_marked = ROW_COUNT;
  RETURN v_marked;
END
$$;
COMMENT ON FUNCTION canon.mark_tier_retries_due() IS
  'Part of canon.mark_retries_due: marks due the OPEN leads the probabilistic tier would pair with a changed driver (pg_temp.cabinet_changed_drivers): a plate one edit away with a shared name token, a blocking name key among the lead''s rare keys. Returns the leads marked.';
