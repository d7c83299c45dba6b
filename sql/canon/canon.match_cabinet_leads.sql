-- canon.match_cabinet_leads: pipeline steps 5 and 6. Keys new lead rows, selects the
-- batch (at most p_limit lead keys with lead_date >= p_scope_from that need matching:
-- never evaluated first, then the least recently attempted), decides every lead with
-- canon.lead_decisions and writes the outcome set-based: persons (only with their
-- links), lead and driver links, origins, resolved or upserted unmatched rows.
-- With p_only_limbo the batch also holds linked leads whose person has no driver
-- (NO_DRIVER), which get their missing driver link when it can be found.
CREATE OR REPLACE FUNCTION canon.match_cabinet_leads(p_run_id bigint, p_scope_from date, p_limit integer, p_only_limbo boolean)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET client_min_messages = warning
AS $$
DECLARE
  v_t timestamptz;
  v_ms jsonb := '{}'::jsonb;
  v_keyed integer;
  v_selected integer;
  v_new_persons integer;
  v_driver_links integer;
  v_lead_links integer;
  v_origins integer;
  v_resolved integer;
  v_unmatched integer;
  v_no_driver_repaired integer := 0;
  v_stats jsonb;
BEGIN
  -- Step 5a: keys of lead rows not seen before.
  v_t := clock_timestamp();
  v_keyed := canon.refresh_lead_keys('{}');
  v_ms := v_ms || jsonb_build_object('key_new_leads', round((extract(epoch FROM clock_timestamp() - v_t) * 1000)::numeric, 1));

  -- Step 5b: the batch, one row per lead key (duplicated keys: the first row stands for them).
  v_t := clock_timestamp();
  DROP TABLE IF EXISTS pg_temp.cabinet_batch;
  CREATE TEMP TABLE cabinet_batch ON COMMIT DROP AS
  WITH scoped AS (
    SELECT canon.lead_source_pk(l.external_id, l.id) AS lead_source_pk,
           min(l.id) AS lead_id,
           count(*) AS rows_with_key
    FROM public.module_ct_cabinet_leads l
    WHERE l.lead_created_at >= p_scope_from::timestamp
      AND length(canon.lead_source_pk(l.external_id, l.id)) <= 200
    GROUP BY 1
  ),
  candidates AS (
    SELECT s.lead_id, s.lead_source_pk, s.rows_with_key,
           CASE WHEN k.source_pk IS NULL THEN 'NO_IDENTITY' ELSE 'NO_DRIVER' END AS batch_kind,
           k.person_key,
           u.source_pk IS NOT NULL AS evaluated_before,
           u.last_attempt_at
    FROM scoped s
    LEFT JOIN canon.identity_links k
      ON k.source_table = 'module_ct_cabinet_leads' AND k.source_pk = s.lead_source_pk
    LEFT JOIN canon.identity_unmatched u
      ON u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = s.lead_source_pk
    WHERE coalesce(u.status, 'OPEN') <> 'IGNORED'
      AND (k.source_pk IS NULL
           OR (p_only_limbo AND NOT EXISTS (
                 SELECT 1 FROM canon.identity_links dl
                 WHERE dl.source_table = 'drivers' AND dl.person_key = k.person_key)))
  )
  SELECT c.*
  FROM candidates c
  ORDER BY c.evaluated_before, c.last_attempt_at NULLS FIRST, c.lead_id
  LIMIT p_limit;
  GET DIAGNOSTICS v_selected = ROW_COUNT;
  -- Batch rows are re-keyed when their source values changed since they were keyed.
  PERFORM canon.refresh_lead_keys(ARRAY(SELECT b.lead_id FROM pg_temp.cabinet_batch b));
  v_ms := v_ms || jsonb_build_object('select_batch', round((extract(epoch FROM clock_timestamp() - v_t) * 1000)::numeric, 1));

  -- Step 6: decisions for the whole batch at once.
  v_t := clock_timestamp();
  DROP TABLE IF EXISTS pg_temp.cabinet_decisions;
  CREATE TEMP TABLE cabinet_decisions ON COMMIT DROP AS
  SELECT d.*, b.batch_kind, b.person_key AS lead_person_key, k.lead_created_at,
         dl.person_key AS driver_person_key
  FROM canon.lead_decisions(ARRAY(SELECT b.lead_id FROM pg_temp.cabinet_batch b)) d
  JOIN pg_temp.cabinet_batch b ON b.lead_id = d.lead_id
  JOIN canon.lead_keys k ON k.lead_id = d.lead_id
  LEFT JOIN canon.identity_links dl ON dl.source_table = 'drivers' AND dl.source_pk = d.driver_id;
  v_ms := v_ms || jsonb_build_object('decide', round((extract(epoch FROM clock_timestamp() - v_t) * 1000)::numeric, 1));

  -- Linking: a person per matched driver that has none (created only with its links).
  v_t := clock_timestamp();
  DROP TABLE IF EXISTS pg_temp.cabinet_new_persons;
  CREATE TEMP TABLE cabinet_new_persons ON COMMIT DROP AS
  SELECT DISTINCT ON (d.driver_id)
         d.driver_id, gen_random_uuid() AS person_key, d.lead_source_pk AS first_lead_source_pk,
         d.match_rule, d.match_score, d.confidence_level
  FROM pg_temp.cabinet_decisions d
  WHERE d.decision = 'MATCH' AND d.batch_kind = 'NO_IDENTITY' AND d.driver_person_key IS NULL
  ORDER BY d.driver_id, d.lead_created_at, d.lead_source_pk;

  INSERT INTO canon.identity_registry (person_key, confidence_level, primary_phone, primary_license, primary_name, created_run_id)
  SELECT np.person_key, np.confidence_level, i.phone_norm, i.license_norm, i.name_norm, p_run_id
  FROM pg_temp.cabinet_new_persons np
  JOIN canon.driver_index i ON i.driver_id = np.driver_id;
  GET DIAGNOSTICS v_new_persons = ROW_COUNT;

  INSERT INTO canon.identity_links (source_table, source_pk, person_key, match_rule, match_score, confidence_level, evidence, run_id)
  SELECT 'drivers', np.driver_id, np.person_key, np.match_rule, np.match_score, np.confidence_level,
         jsonb_build_object('linked_with_lead', np.first_lead_source_pk), p_run_id
  FROM pg_temp.cabinet_new_persons np;
  GET DIAGNOSTICS v_driver_links = ROW_COUNT;

  INSERT INTO canon.identity_links (source_table, source_pk, person_key, match_rule, match_score, confidence_level, evidence, run_id)
  SELECT 'module_ct_cabinet_leads', d.lead_source_pk, coalesce(d.driver_person_key, np.person_key),
         d.match_rule, d.match_score, d.confidence_level, d.evidence, p_run_id
  FROM pg_temp.cabinet_decisions d
  LEFT JOIN pg_temp.cabinet_new_persons np ON np.driver_id = d.driver_id
  WHERE d.decision = 'MATCH' AND d.batch_kind = 'NO_IDENTITY';
  GET DIAGNOSTICS v_lead_links = ROW_COUNT;

  -- The origin of a person is the earliest lead that brought it.
  INSERT INTO canon.identity_origin (person_key, origin_tag, origin_source_id, confidence_level, origin_created_at, decided_by, run_id)
  SELECT DISTINCT ON (person_key) person_key, 'cabinet_lead', lead_source_pk, confidence_level, lead_created_at, 'system', p_run_id
  FROM (
    SELECT coalesce(d.driver_person_key, np.person_key) AS person_key, d.lead_source_pk, d.confidence_level, d.lead_created_at
    FROM pg_temp.cabinet_decisions d
    LEFT JOIN pg_temp.cabinet_new_persons np ON np.driver_id = d.driver_id
    WHERE d.decision = 'MATCH' AND d.batch_kind = 'NO_IDENTITY'
  ) m
  ORDER BY person_key, lead_created_at, lead_source_pk
  ON CONFLICT (person_key) DO NOTHING;
  GET DIAGNOSTICS v_origins = ROW_COUNT;

  UPDATE canon.identity_unmatched u
  SET status = 'RESOLVED', resolved_at = now(), last_attempt_at = now(), last_run_id = p_run_id,
      attempts = u.attempts + 1
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
        attempts = u.attempts + 1;
  GET DIAGNOSTICS v_unmatched = ROW_COUNT;
  v_ms := v_ms || jsonb_build_object('link', round((extract(epoch FROM clock_timestamp() - v_t) * 1000)::numeric, 1));

  SELECT jsonb_build_object(
    'leads_keyed', v_keyed,
    'leads_selected', v_selected,
    'leads_evaluated', (SELECT count(*) FROM pg_temp.cabinet_decisions),
    'batch', jsonb_build_object(
      'no_identity', (SELECT count(*) FROM pg_temp.cabinet_batch WHERE batch_kind = 'NO_IDENTITY'),
      'no_driver', (SELECT count(*) FROM pg_temp.cabinet_batch WHERE batch_kind = 'NO_DRIVER'),
      'never_evaluated', (SELECT count(*) FROM pg_temp.cabinet_batch WHERE NOT evaluated_before),
      'retried', (SELECT count(*) FROM pg_temp.cabinet_batch WHERE evaluated_before),
      'duplicate_key_rows', (SELECT coalesce(sum(rows_with_key - 1), 0) FROM pg_temp.cabinet_batch)),
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
    'open_unmatched_total', (SELECT count(*) FROM canon.identity_unmatched u
                             WHERE u.source_table = 'module_ct_cabinet_leads' AND u.status = 'OPEN'),
    'leads_without_lead_created_at', (SELECT count(*) FROM canon.lead_keys k WHERE k.lead_date IS NULL),
    'leads_with_oversized_key', (SELECT count(*) FROM public.module_ct_cabinet_leads l
                                 WHERE l.lead_created_at >= p_scope_from::timestamp
                                   AND length(canon.lead_source_pk(l.external_id, l.id)) > 200),
    'durations_ms', v_ms)
  INTO v_stats;
  RETURN v_stats;
END
$$;
COMMENT ON FUNCTION canon.match_cabinet_leads(bigint, date, integer, boolean) IS 'Pipeline steps 5-6: key new leads, select the batch, decide, link set-based, record unmatched reasons. Returns step stats.';
