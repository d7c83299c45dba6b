-- Up Migration
-- snapshot of sql/canon/canon.setting.sql
-- canon.setting: the value of one product setting (canon.settings), for SQL that
-- must agree with the job (target park, business time zone). Raises on unknown keys.
CREATE OR REPLACE FUNCTION canon.setting(p_key text)
RETURNS text
LANGUAGE plpgsql
STABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_value text;
BEGIN
  SELECT s.value INTO v_value FROM canon.settings s WHERE s.key = p_key;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'unknown setting "%": known settings are listed in canon.settings', p_key
      USING ERRCODE = '22023';
  END IF;
  RETURN v_value;
END
$$;
COMMENT ON FUNCTION canon.setting(text) IS 'Value of a product setting from canon.settings; raises on an unknown key.';

-- snapshot of sql/canon/canon.business_today.sql
-- canon.business_today: "today" in the business time zone (setting business_timezone,
-- default America/Lima), never the server's. Every window, scope and alert uses it.
CREATE OR REPLACE FUNCTION canon.business_today()
RETURNS date
LANGUAGE sql
STABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT (now() AT TIME ZONE canon.setting('business_timezone'))::date
$$;
COMMENT ON FUNCTION canon.business_today() IS 'Current date in the business time zone (canon.settings.business_timezone).';

-- snapshot of sql/canon/canon.refresh_lead_keys.sql
-- canon.refresh_lead_keys: normalised matching keys of cabinet lead rows into
-- canon.lead_keys: every row newer than the last one keyed, plus the given rows (the
-- run's batch), re-keyed only when their source values changed. Returns rows written.
-- A lead key over 200 characters is garbage (no index can hold a 10 kB key): such rows
-- are never keyed nor evaluated; each run counts them (match.leads_with_oversized_key).
CREATE OR REPLACE FUNCTION canon.refresh_lead_keys(p_lead_ids integer[] DEFAULT '{}')
RETURNS integer
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_max_id integer := coalesce((SELECT max(k.lead_id) FROM canon.lead_keys k), 0);
  v_written integer;
BEGIN
  WITH source AS (
    SELECT l.id, l.external_id, l.lead_created_at, l.park_phone, l.asset_plate_number,
           l.first_name, l.middle_name, l.last_name,
           md5(concat_ws(E'\x1f', l.external_id, l.lead_created_at::text, l.park_phone, l.asset_plate_number,
                         l.first_name, l.middle_name, l.last_name)) AS source_hash
    FROM public.module_ct_cabinet_leads l
    WHERE l.id > v_max_id
      AND length(canon.lead_source_pk(l.external_id, l.id)) <= 200
    UNION ALL
    SELECT l.id, l.external_id, l.lead_created_at, l.park_phone, l.asset_plate_number,
           l.first_name, l.middle_name, l.last_name,
           md5(concat_ws(E'\x1f', l.external_id, l.lead_created_at::text, l.park_phone, l.asset_plate_number,
                         l.first_name, l.middle_name, l.last_name))
    FROM public.module_ct_cabinet_leads l
    WHERE l.id = ANY (p_lead_ids) AND l.id <= v_max_id
      AND length(canon.lead_source_pk(l.external_id, l.id)) <= 200
  ),
  written AS (
    INSERT INTO canon.lead_keys AS k (
      lead_id, lead_source_pk, lead_created_at, lead_date, phone_norm, plate_norm, license_norm,
      name_norm, lead_name, source_hash, indexed_at)
    SELECT s.id,
           canon.lead_source_pk(s.external_id, s.id),
           s.lead_created_at,
           s.lead_created_at::date,
           canon.normalize_phone(s.park_phone),
           canon.normalize_plate(s.asset_plate_number),
           NULL, -- the cabinet export carries no licence number: R2 cannot fire for leads
           canon.normalize_name(concat_ws(' ', s.first_name, s.middle_name, s.last_name)),
           nullif(left(regexp_replace(btrim(concat_ws(' ', s.first_name, s.middle_name, s.last_name)), '\s+', ' ', 'g'), 200), ''),
           s.source_hash,
           now()
    FROM source s
    ON CONFLICT (lead_id) DO UPDATE
      SET lead_source_pk = excluded.lead_source_pk, lead_created_at = excluded.lead_created_at,
          lead_date = excluded.lead_date, phone_norm = excluded.phone_norm, plate_norm = excluded.plate_norm,
          license_norm = excluded.license_norm, name_norm = excluded.name_norm, lead_name = excluded.lead_name,
          source_hash = excluded.source_hash, indexed_at = excluded.indexed_at
      WHERE k.source_hash <> excluded.source_hash
    RETURNING 1
  )
  SELECT count(*) INTO v_written FROM written;
  RETURN v_written;
END
$$;
COMMENT ON FUNCTION canon.refresh_lead_keys(integer[]) IS 'Keys every new lead row and re-keys the given rows when their source changed; returns rows written.';

-- snapshot of sql/canon/canon.refresh_driver_index.sql
-- canon.refresh_driver_index: pipeline step 4. Brings canon.driver_index up to date with
-- public.drivers: incrementally (drivers whose updated_at/created_at is past the
-- watermark, re-normalised only when their source values changed), and fully every
-- driver_index_full_refresh_hours (also removes deleted drivers). Returns step stats.
CREATE OR REPLACE FUNCTION canon.refresh_driver_index(p_run_id bigint)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_state canon.driver_index_state%ROWTYPE;
  v_full boolean;
  v_since timestamp;
  v_scanned integer;
  v_upserted integer;
  v_deleted integer := 0;
  v_watermark timestamp;
BEGIN
  SELECT * INTO v_state FROM canon.driver_index_state FOR UPDATE;
  v_full := NOT FOUND OR v_state.last_full_at IS NULL OR v_state.watermark IS NULL
            OR v_state.last_full_at < now() - make_interval(hours => canon.setting('driver_index_full_refresh_hours')::integer);
  -- An hour of overlap catches rows committed late with an older updated_at.
  v_since := CASE WHEN v_full THEN NULL ELSE v_state.watermark - interval '1 hour' END;

  WITH source AS (
    SELECT DISTINCT ON (d.driver_id)
           d.driver_id, d.park_id, d.phone, d.license_normalized_number, d.license_number,
           d.car_normalized_number, d.car_number, d.full_name, d.first_name, d.middle_name, d.last_name, d.hire_date,
           coalesce(d.updated_at, d.created_at) AS changed_at
    FROM public.drivers d
    WHERE nullif(btrim(d.driver_id), '') IS NOT NULL
      AND length(d.driver_id) <= 200 -- garbage ids (10 kB) cannot be indexed: counted below
      AND (v_since IS NULL OR coalesce(d.updated_at, d.created_at) >= v_since)
    ORDER BY d.driver_id, coalesce(d.updated_at, d.created_at) DESC NULLS LAST
  ),
  hashed AS (
    SELECT s.*,
           md5(concat_ws(E'\x1f', s.park_id, s.phone, s.license_normalized_number, s.license_number,
                         s.car_normalized_number, s.car_number, s.full_name, s.first_name, s.middle_name,
                         s.last_name, s.hire_date::text)) AS source_hash
    FROM source s
  ),
  changed AS (
    SELECT h.*
    FROM hashed h
    LEFT JOIN canon.driver_index i ON i.driver_id = h.driver_id
    WHERE i.driver_id IS NULL OR i.source_hash <> h.source_hash
  ),
  upserted AS (
    INSERT INTO canon.driver_index AS i (
      driver_id, park_id, phone_norm, license_norm, plate_norm, name_norm, hire_date,
      source_hash, source_changed_at, indexed_at, indexed_run_id)
    SELECT c.driver_id, c.park_id,
           canon.normalize_phone(c.phone),
           canon.normalize_license(coalesce(nullif(btrim(c.license_normalized_number), ''), c.license_number)),
           canon.normalize_plate(coalesce(nullif(btrim(c.car_normalized_number), ''), c.car_number)),
           canon.normalize_name(coalesce(nullif(btrim(c.full_name), ''), concat_ws(' ', c.first_name, c.middle_name, c.last_name))),
           c.hire_date, c.source_hash, c.changed_at, now(), p_run_id
    FROM changed c
    ON CONFLICT (driver_id) DO UPDATE
      SET park_id = excluded.park_id, phone_norm = excluded.phone_norm, license_norm = excluded.license_norm,
          plate_norm = excluded.plate_norm, name_norm = excluded.name_norm, hire_date = excluded.hire_date,
          source_hash = excluded.source_hash, source_changed_at = excluded.source_changed_at,
          indexed_at = excluded.indexed_at, indexed_run_id = excluded.indexed_run_id
    RETURNING 1
  )
  SELECT (SELECT count(*) FROM hashed), (SELECT count(*) FROM upserted), (SELECT max(changed_at) FROM hashed)
  INTO v_scanned, v_upserted, v_watermark;

  IF v_full THEN
    DELETE FROM canon.driver_index i
    WHERE NOT EXISTS (SELECT 1 FROM public.drivers d WHERE d.driver_id = i.driver_id);
    GET DIAGNOSTICS v_deleted = ROW_COUNT;
  END IF;

  INSERT INTO canon.driver_index_state AS s (singleton, watermark, last_full_at, last_refresh_at, last_run_id)
  VALUES (true, v_watermark, CASE WHEN v_full THEN now() END, now(), p_run_id)
  ON CONFLICT (singleton) DO UPDATE
    SET watermark = greatest(s.watermark, excluded.watermark),
        last_full_at = coalesce(excluded.last_full_at, s.last_full_at),
        last_refresh_at = excluded.last_refresh_at,
        last_run_id = excluded.last_run_id
  WHERE s.watermark IS DISTINCT FROM greatest(s.watermark, excluded.watermark)
     OR excluded.last_full_at IS NOT NULL;

  RETURN jsonb_build_object(
    'mode', CASE WHEN v_full THEN 'full' ELSE 'incremental' END,
    'drivers_scanned', v_scanned,
    'drivers_reindexed', v_upserted,
    'drivers_removed', v_deleted,
    'drivers_indexed', CASE WHEN v_full THEN (SELECT count(*) FROM canon.driver_index) END,
    'drivers_skipped_bad_id', CASE WHEN v_full THEN (
      SELECT count(*) FROM public.drivers d
      WHERE nullif(btrim(d.driver_id), '') IS NULL OR length(d.driver_id) > 200) END);
END
$$;
COMMENT ON FUNCTION canon.refresh_driver_index(bigint) IS 'Pipeline step 4: incremental (watermark) or full refresh of canon.driver_index from public.drivers. Returns step stats.';

-- snapshot of sql/canon/canon.match_cabinet_leads.sql
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

-- snapshot of sql/ops/ops.reconcile_cabinet_leads_pipeline.sql
-- ops.reconcile_cabinet_leads_pipeline: the one entry point of a reconciliation run
-- (SPEC 7), called by the graphile-worker task, the CLI and people in psql:
--   CALL ops.reconcile_cabinet_leads_pipeline(p_days_back => 30, p_limit => 2000);
-- It commits the RUNNING row first (visible at once), takes the job lock (or logs
-- SKIPPED), then runs steps 3-8 in one subtransaction: a failure rolls all of them
-- back and is logged as FAILED; a dry run rolls them back on purpose and keeps stats.
-- A procedure, not a function, because it must commit; so it has no SET clause and
-- qualifies every name. CALL it outside an explicit transaction block.
CREATE OR REPLACE PROCEDURE ops.reconcile_cabinet_leads_pipeline(
  p_days_back integer DEFAULT 30,
  p_limit integer DEFAULT 2000,
  p_dry_run boolean DEFAULT false,
  p_only_limbo boolean DEFAULT false,
  p_context jsonb DEFAULT '{}'::jsonb,
  p_raise_on_failure boolean DEFAULT true,
  INOUT run jsonb DEFAULT NULL
)
LANGUAGE plpgsql
AS $$
DECLARE
  c_job_name constant text := 'reconcile_cabinet_leads_pipeline';
  v_run_id bigint;
  v_today date;
  v_scope_from date;
  v_abandoned integer;
  v_status text;
  v_stats jsonb;
  v_steps jsonb := '[]'::jsonb;
  v_step_out jsonb;
  v_prev_snapshot bigint;
  v_t0 timestamptz;
  v_t timestamptz;
  v_sqlstate text;
  v_message text;
  v_detail text;
  v_context text;
BEGIN
  IF p_days_back IS NULL OR p_days_back < 0 OR p_days_back > 36500 THEN
    RAISE EXCEPTION 'invalid days_back %: expected an integer from 0 to 36500', coalesce(p_days_back::text, 'NULL')
      USING ERRCODE = '22023';
  END IF;
  IF p_limit IS NULL OR p_limit < 0 THEN
    RAISE EXCEPTION 'invalid limit %: expected an integer >= 0', coalesce(p_limit::text, 'NULL')
      USING ERRCODE = '22023';
  END IF;
  IF p_context IS NULL OR jsonb_typeof(p_context) <> 'object' THEN
    RAISE EXCEPTION 'invalid context %: expected a json object', coalesce(p_context::text, 'NULL')
      USING ERRCODE = '22023';
  END IF;

  v_t0 := clock_timestamp();
  v_today := canon.business_today();
  v_scope_from := v_today - p_days_back;

  -- Step 1: runs whose backend is gone are abandoned; log this run as RUNNING and commit.
  v_abandoned := canon.mark_abandoned_runs();
  INSERT INTO canon.ingestion_runs (
    job_name, status, dry_run, source_tables, params, scope_date_from, scope_date_to,
    trigger, client_host, client_pid, worker_job_id, backend_pid, backend_start
  )
  SELECT c_job_name, 'RUNNING', p_dry_run,
         '["module_ct_cabinet_leads", "drivers", "summary_daily"]'::jsonb,
         jsonb_build_object('days_back', p_days_back, 'limit', p_limit, 'dry_run', p_dry_run,
                            'only_limbo', p_only_limbo, 'business_today', v_today),
         v_scope_from, v_today,
         coalesce(p_context->>'trigger', 'psql'),
         coalesce(p_context->>'client_host', host(inet_client_addr())),
         (p_context->>'client_pid')::integer,
         p_context->>'worker_job_id',
         pg_backend_pid(),
         (SELECT a.backend_start FROM pg_catalog.pg_stat_activity a WHERE a.pid = pg_backend_pid())
  RETURNING id INTO v_run_id;
  COMMIT;

  -- Step 2: one run at a time, across every host. The lock lasts until the final commit.
  IF NOT pg_try_advisory_xact_lock(hashtext('cabinet_leads'), hashtext(c_job_name)) THEN
    UPDATE canon.ingestion_runs
    SET status = 'SKIPPED',
        completed_at = clock_timestamp(),
        stats = jsonb_build_object(
          'skipped_reason', 'another run holds the job lock',
          'running_run_ids', (SELECT coalesce(jsonb_agg(r.id ORDER BY r.id), '[]'::jsonb)
                              FROM canon.ingestion_runs r
                              WHERE r.job_name = c_job_name AND r.status = 'RUNNING' AND r.id <> v_run_id),
          'abandoned_runs_marked', v_abandoned)
    WHERE id = v_run_id;
    COMMIT;
    SELECT to_jsonb(r) INTO run FROM canon.ingestion_runs r WHERE r.id = v_run_id;
    RETURN;
  END IF;
  -- Settled claims are out of the run's reach (trigger claims_protect_settled).
  PERFORM set_config('cabinet.in_pipeline', 'on', true);
  -- A canon table locked by someone else fails the run instead of hanging it: after 30 s,
  -- or sooner when the session asks for less (e.g. PGOPTIONS='-c lock_timeout=5s').
  IF (SELECT s.setting::bigint FROM pg_catalog.pg_settings s WHERE s.name = 'lock_timeout') NOT BETWEEN 1 AND 30000 THEN
    PERFORM set_config('lock_timeout', '30s', true);
  END IF;

  v_stats := jsonb_build_object('abandoned_runs_marked', v_abandoned);

  -- Steps 3-8: all or nothing.
  BEGIN
    v_t := clock_timestamp();
    v_stats := v_stats || jsonb_build_object('source_contract_columns', canon.check_source_contract());
    v_steps := v_steps || jsonb_build_object('step', 'check_source_contract', 'status', 'done',
      'ms', round((extract(epoch FROM clock_timestamp() - v_t) * 1000)::numeric, 1));

    -- Limbo is counted once per run (a pass over every lead): "before" is the snapshot of
    -- the previous completed run (live counts only when there is none yet), "after" is
    -- this run's own snapshot in step 8.
    SELECT jsonb_build_object(
             'NO_IDENTITY', s.limbo_no_identity, 'NO_DRIVER', s.limbo_no_driver,
             'NO_TRIPS_14D', s.limbo_no_trips_14d, 'TRIPS_NO_CLAIM', s.limbo_trips_no_claim, 'OK', s.limbo_ok),
           s.run_id
    INTO v_step_out, v_prev_snapshot
    FROM ops.limbo_snapshots s
    ORDER BY s.taken_at DESC, s.run_id DESC
    LIMIT 1;
    v_stats := v_stats || jsonb_build_object(
      'limbo_before', coalesce(v_step_out, ops.limbo_stage_counts()),
      'limbo_before_as_of_run', v_prev_snapshot);

    v_t := clock_timestamp();
    v_step_out := canon.refresh_driver_index(v_run_id);
    PERFORM canon.failpoint('after_refresh_driver_index');
    v_stats := v_stats || jsonb_build_object('driver_index', v_step_out);
    v_steps := v_steps || jsonb_build_object('step', 'refresh_driver_index',
      'status', CASE WHEN v_step_out->'implemented' = 'false'::jsonb THEN 'not_implemented' ELSE 'done' END,
      'ms', round((extract(epoch FROM clock_timestamp() - v_t) * 1000)::numeric, 1));

    v_t := clock_timestamp();
    v_step_out := canon.match_cabinet_leads(v_run_id, v_scope_from, p_limit, p_only_limbo);
    PERFORM canon.failpoint('after_match');
    v_stats := v_stats || jsonb_build_object('match', v_step_out);
    v_steps := v_steps || jsonb_build_object('step', 'match_cabinet_leads',
      'status', CASE WHEN v_step_out->'implemented' = 'false'::jsonb THEN 'not_implemented' ELSE 'done' END,
      'ms', round((extract(epoch FROM clock_timestamp() - v_t) * 1000)::numeric, 1));

    v_t := clock_timestamp();
    v_step_out := canon.generate_cabinet_claims(v_run_id, v_scope_from);
    PERFORM canon.failpoint('after_claims');
    v_stats := v_stats || jsonb_build_object('claims', v_step_out);
    v_steps := v_steps || jsonb_build_object('step', 'generate_cabinet_claims',
      'status', CASE WHEN v_step_out->'implemented' = 'false'::jsonb THEN 'not_implemented' ELSE 'done' END,
      'ms', round((extract(epoch FROM clock_timestamp() - v_t) * 1000)::numeric, 1));

    v_t := clock_timestamp();
    v_step_out := ops.snapshot_limbo(v_run_id);
    PERFORM canon.failpoint('after_snapshot');
    v_stats := v_stats || jsonb_build_object('snapshot', v_step_out, 'limbo_after', v_step_out->'stages');
    v_steps := v_steps || jsonb_build_object('step', 'snapshot_limbo',
      'status', CASE WHEN v_step_out->'implemented' = 'false'::jsonb THEN 'not_implemented' ELSE 'done' END,
      'ms', round((extract(epoch FROM clock_timestamp() - v_t) * 1000)::numeric, 1));

    v_status := 'COMPLETED';
    IF p_dry_run THEN
      -- Roll back every write of steps 3-8; the variables keep the stats.
      RAISE EXCEPTION 'dry run' USING ERRCODE = 'CL0DR';
    END IF;
  EXCEPTION
    WHEN SQLSTATE 'CL0DR' THEN
      v_status := 'COMPLETED';
    WHEN OTHERS THEN
      GET STACKED DIAGNOSTICS v_sqlstate = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                              v_detail = PG_EXCEPTION_DETAIL, v_context = PG_EXCEPTION_CONTEXT;
      v_status := 'FAILED';
    -- OTHERS does not include a cancel (statement_timeout, Ctrl-C): log those too.
    WHEN query_canceled THEN
      GET STACKED DIAGNOSTICS v_sqlstate = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                              v_detail = PG_EXCEPTION_DETAIL, v_context = PG_EXCEPTION_CONTEXT;
      v_status := 'FAILED';
  END;

  -- Step 9: outcome, in the same transaction as the writes of steps 4-8.
  v_stats := v_stats || jsonb_build_object(
    'steps', v_steps,
    'steps_not_implemented', (SELECT coalesce(jsonb_agg(s->'step'), '[]'::jsonb)
                              FROM jsonb_array_elements(v_steps) s
                              WHERE s->>'status' = 'not_implemented'),
    'durations_ms', (SELECT coalesce(jsonb_object_agg(s->>'step', s->'ms'), '{}'::jsonb)
                     FROM jsonb_array_elements(v_steps) s)
                    || jsonb_build_object('total', round((extract(epoch FROM clock_timestamp() - v_t0) * 1000)::numeric, 1)));
  IF v_status = 'FAILED' THEN
    v_stats := v_stats || jsonb_build_object('error', jsonb_build_object(
      'sqlstate', v_sqlstate, 'detail', v_detail, 'context', v_context));
  END IF;

  UPDATE canon.ingestion_runs
  SET status = v_status,
      stats = v_stats,
      completed_at = clock_timestamp(),
      error_message = CASE WHEN v_status = 'FAILED' THEN v_message END,
      error_sqlstate = CASE WHEN v_status = 'FAILED' THEN v_sqlstate END
  WHERE id = v_run_id;
  COMMIT;

  SELECT to_jsonb(r) INTO run FROM canon.ingestion_runs r WHERE r.id = v_run_id;
  IF v_status = 'FAILED' AND p_raise_on_failure THEN
    RAISE EXCEPTION 'run % FAILED: %', v_run_id, v_message
      USING ERRCODE = v_sqlstate,
            DETAIL = coalesce(v_detail, ''),
            HINT = format('The run is logged: SELECT * FROM canon.ingestion_runs WHERE id = %s', v_run_id);
  END IF;
END
$$;
COMMENT ON PROCEDURE ops.reconcile_cabinet_leads_pipeline(integer, integer, boolean, boolean, jsonb, boolean, jsonb) IS
  'One reconciliation run (SPEC 7): CALL ops.reconcile_cabinet_leads_pipeline(p_days_back => 30, p_limit => 2000, p_dry_run => false). Returns the run row as jsonb; raises after logging when the run FAILED.';
