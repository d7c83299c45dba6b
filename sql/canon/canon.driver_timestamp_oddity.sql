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
