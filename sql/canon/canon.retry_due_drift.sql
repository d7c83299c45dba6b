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
