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
