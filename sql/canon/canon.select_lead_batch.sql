-- canon.select_lead_batch: pipeline step 5b. The batch of the run in pg_temp.cabinet_batch:
-- at most p_limit lead keys with lead_date >= p_scope_from that need matching, one row per
-- key (its first row stands for the key's duplicates), at the cost of the batch, not of the
-- scope:
-- * never evaluated first: among the rows listed in canon_internal.lead_keys_pending (new or
--   re-keyed rows, keys whose link or unmatched row was removed); a listed key found
--   evaluated (linked, or unmatched OPEN / IGNORED) leaves the list;
-- * then OPEN unmatched leads due for a retry (canon.mark_retries_due), the least recently
--   attempted first;
-- * with p_only_limbo, linked leads whose person has no driver (NO_DRIVER) too.
-- Returns {leads_selected, batch {...}, pending_cleared, retries_skipped_no_index_change}.
CREATE OR REPLACE FUNCTION canon.select_lead_batch(p_scope_from date, p_limit integer, p_only_limbo boolean)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET client_min_messages = warning
SET jit = off
AS $$
DECLARE
  v_window bigint;
  v_window_rows bigint;
  v_pending_cleared integer;
  v_retries_skipped integer;
  v_selected integer;
BEGIN
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
    FROM canon_internal.lead_keys_pending q
    WHERE q.lead_date >= p_scope_from
    ORDER BY q.lead_id
    LIMIT v_window;
    GET DIAGNOSTICS v_window_rows = ROW_COUNT;
    DROP TABLE IF EXISTS pg_temp.cabinet_pending;
    CREATE TEMP TABLE cabinet_pending ON COMMIT DROP AS
    -- Every lookup is a probe per row (LATERAL ... LIMIT 1, which the planner cannot
    -- turn back into a join): as joins, a window of 20,000 rows was hashed against the
    -- whole of canon_internal.lead_keys, identity_links and identity_unmatched, whose size grows
    -- with the backfill (one lead key row per lead id, one link and one unmatched row
    -- per key: LIMIT 1 changes nothing else).
    SELECT p.lead_source_pk, p.lead_id, p.rows_with_key,
           l.source_pk IS NOT NULL AS linked, u.status, u.last_attempt_at
    FROM (SELECT k.lead_source_pk, min(k.lead_id) AS lead_id, count(*) AS rows_with_key
          FROM pg_temp.cabinet_pending_rows q
          CROSS JOIN LATERAL (
            SELECT k.lead_source_pk, k.lead_id
            FROM canon_internal.lead_keys k
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
  DELETE FROM canon_internal.lead_keys_pending q
  USING canon_internal.lead_keys k, pg_temp.cabinet_pending p
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
      FROM canon_internal.lead_keys s
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
      FROM canon_internal.lead_keys s
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
  RETURN jsonb_build_object(
    'leads_selected', v_selected,
    'batch', jsonb_build_object(
      'no_identity', (SELECT count(*) FROM pg_temp.cabinet_batch WHERE batch_kind = 'NO_IDENTITY'),
      'no_driver', (SELECT count(*) FROM pg_temp.cabinet_batch WHERE batch_kind = 'NO_DRIVER'),
      'never_evaluated', (SELECT count(*) FROM pg_temp.cabinet_batch WHERE NOT evaluated_before),
      'retried', (SELECT count(*) FROM pg_temp.cabinet_batch WHERE evaluated_before),
      'duplicate_key_rows', (SELECT coalesce(sum(rows_with_key - 1), 0) FROM pg_temp.cabinet_batch)),
    'pending_cleared', v_pending_cleared,
    'retries_skipped_no_index_change', v_retries_skipped);
END
$$;
COMMENT ON FUNCTION canon.select_lead_batch(date, integer, boolean) IS
  'Pipeline step 5b: the batch (pg_temp.cabinet_batch): never-evaluated lead keys of the scope first, then OPEN leads due for a retry, at most p_limit. Returns step stats.';
