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
  JOIN canon_internal.lead_keys k ON k.lead_source_pk = u.source_pk
  CROSS JOIN canon_internal.driver_index_state st
  JOIN canon_internal.driver_index i
    ON (i.phone_norm = k.phone_norm OR i.plate_norm = k.plate_norm OR i.license_norm = k.license_norm)
  WHERE u.status = 'OPEN' AND NOT u.retry_due
    AND i.indexed_at > u.last_attempt_at
    AND i.indexed_at <= st.retry_checked_at
  GROUP BY u.source_pk, u.last_attempt_at
$$;
COMMENT ON FUNCTION canon.retry_due_drift() IS
  'OPEN unmatched leads that a driver change since their last attempt makes due, not marked retry_due.';
