-- canon.link_decisions: pipeline step 6. Decides every lead of the batch
-- (pg_temp.cabinet_batch) with canon.lead_decisions and writes the outcome set-based (links
-- through canon.write_lead_links, the one link writer), in
-- the run's transaction: a person per matched driver that has none (created only with its
-- links), lead and driver links, origins, unmatched rows resolved or upserted with their
-- reason, candidates and retry bookkeeping (an IGNORED decision is kept), the batch's keys
-- taken off the never-evaluated list. With p_only_limbo a NO_DRIVER lead's person gets the
-- driver it was missing when that driver is free. Returns step stats.
CREATE OR REPLACE FUNCTION canon.link_decisions(p_run_id bigint, p_only_limbo boolean)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET client_min_messages = warning
SET jit = off
AS $$
DECLARE
  v_t timestamptz;
  v_decide_ms numeric;
  v_new_persons integer;
  v_driver_links integer;
  v_lead_links integer;
  v_origins integer;
  v_resolved integer;
  v_unmatched integer;
  v_no_driver_repaired integer := 0;
  v_evaluated_cleared integer;
BEGIN
  -- Decisions for the whole batch at once.
  v_t := clock_timestamp();
  DROP TABLE IF EXISTS pg_temp.cabinet_decisions;
  CREATE TEMP TABLE cabinet_decisions ON COMMIT DROP AS
  SELECT d.*, b.batch_kind, b.person_key AS lead_person_key, k.lead_created_at,
         dl.person_key AS driver_person_key
  FROM canon.lead_decisions(ARRAY(SELECT b.lead_id FROM pg_temp.cabinet_batch b)) d
  JOIN pg_temp.cabinet_batch b ON b.lead_id = d.lead_id
  JOIN canon_internal.lead_keys k ON k.lead_id = d.lead_id
  LEFT JOIN canon.identity_links dl ON dl.source_table = 'drivers' AND dl.source_pk = d.driver_id;
  v_decide_ms := round((extract(epoch FROM clock_timestamp() - v_t) * 1000)::numeric, 1);

  -- Linking (canon.write_lead_links, the one link writer): persons, links, origins.
  v_t := clock_timestamp();
  DROP TABLE IF EXISTS pg_temp.cabinet_links_to_write;
  CREATE TEMP TABLE cabinet_links_to_write ON COMMIT DROP AS
  SELECT d.lead_source_pk, d.lead_created_at, d.driver_id, d.driver_person_key,
         d.match_rule, d.match_score, d.confidence_level, d.evidence, NULL::jsonb AS driver_evidence
  FROM pg_temp.cabinet_decisions d
  WHERE d.decision = 'MATCH' AND d.batch_kind = 'NO_IDENTITY';
  SELECT w.new_persons, w.driver_links, w.lead_links, w.origins
  INTO v_new_persons, v_driver_links, v_lead_links, v_origins
  FROM canon.write_lead_links(p_run_id) w;
  DROP TABLE pg_temp.cabinet_links_to_write;

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
  DELETE FROM canon_internal.lead_keys_pending q
  USING canon_internal.lead_keys k, (SELECT DISTINCT d.lead_source_pk FROM pg_temp.cabinet_decisions d WHERE d.batch_kind = 'NO_IDENTITY') d
  WHERE k.lead_source_pk = d.lead_source_pk AND q.lead_id = k.lead_id;
  GET DIAGNOSTICS v_evaluated_cleared = ROW_COUNT;
  RETURN jsonb_build_object(
    'leads_evaluated', (SELECT count(*) FROM pg_temp.cabinet_decisions),
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
    -- (the predicate of identity_unmatched_open_idx, read index-only)
    'open_unmatched_total', (SELECT count(*) FROM canon.identity_unmatched u WHERE u.status = 'OPEN'),
    'pending_cleared', v_evaluated_cleared,
    'durations_ms', jsonb_build_object(
      'decide', v_decide_ms,
      'link', round((extract(epoch FROM clock_timestamp() - v_t) * 1000)::numeric, 1)));
END
$$;
COMMENT ON FUNCTION canon.link_decisions(bigint, boolean) IS
  'Pipeline step 6: decides the batch (canon.lead_decisions) and writes persons, links, origins and unmatched reasons set-based. Returns step stats.';
