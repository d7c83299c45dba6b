-- Up Migration
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
  v_oversized integer;
  v_unkeyed integer[];
  v_max_keyed integer;
  v_gap_scan_scope boolean;
  v_index_changed_at timestamptz;
  v_pending_cleared integer;
  v_evaluated_cleared integer;
  v_retries_skipped integer;
BEGIN
  -- Step 5a: keys of lead rows not seen before.
  v_t := clock_timestamp();
  v_max_keyed := coalesce((SELECT max(k.lead_id) FROM canon.lead_keys k), 0);
  v_keyed := canon.refresh_lead_keys('{}');
  -- Rows without a key: garbage keys (never keyed, only counted) and rows committed after
  -- higher ids were keyed (keyed now). The whole scope on the first run of the business
  -- day (the day's sweep, as for the lead state), else only rows newer than the keyed
  -- ones: an anti-join over every lead of the scope costs what the scope costs.
  v_gap_scan_scope := (SELECT m.last_sweep_date FROM canon.cabinet_lead_state_meta m) IS DISTINCT FROM canon.business_today();
  SELECT count(*) FILTER (WHERE length(canon.lead_source_pk(l.external_id, l.id)) > 200),
         coalesce(array_agg(l.id) FILTER (WHERE length(canon.lead_source_pk(l.external_id, l.id)) <= 200), '{}')
  INTO v_oversized, v_unkeyed
  FROM public.module_ct_cabinet_leads l
  WHERE l.lead_created_at >= p_scope_from::timestamp
    AND (v_gap_scan_scope OR l.id > v_max_keyed)
    AND NOT EXISTS (SELECT 1 FROM canon.lead_keys k WHERE k.lead_id = l.id);
  IF cardinality(v_unkeyed) > 0 THEN
    v_keyed := v_keyed + canon.refresh_lead_keys(v_unkeyed);
  END IF;
  v_ms := v_ms || jsonb_build_object('key_new_leads', round((extract(epoch FROM clock_timestamp() - v_t) * 1000)::numeric, 1));

  -- Step 5b: the batch, one row per lead key (duplicated keys: the first row stands for them),
  -- at the cost of the batch, not of the scope:
  -- * never evaluated: among the rows marked match_pending (new rows, and keys whose link
  --   or unmatched row was removed; partial index). A pending key found evaluated (linked,
  --   or unmatched OPEN / IGNORED) loses the flag. All in-scope rows of a never-evaluated
  --   key are pending (new rows are; removals mark every row of the key).
  -- * OPEN unmatched leads, the least recently attempted first, only if the driver index
  --   changed since their last attempt (driver_index_state.changed_at): nothing else can
  --   turn them into a match, so with nothing new the batch is empty;
  -- * only-limbo: linked leads whose person has no driver (NO_DRIVER).
  v_t := clock_timestamp();
  SELECT s.changed_at INTO v_index_changed_at FROM canon.driver_index_state s;
  DROP TABLE IF EXISTS pg_temp.cabinet_pending;
  CREATE TEMP TABLE cabinet_pending ON COMMIT DROP AS
  SELECT p.lead_source_pk, p.lead_id, p.rows_with_key,
         k.source_pk IS NOT NULL AS linked, u.status, u.last_attempt_at
  FROM (SELECT k.lead_source_pk, min(k.lead_id) AS lead_id, count(*) AS rows_with_key
        FROM canon.lead_keys k
        WHERE k.match_pending AND k.lead_date >= p_scope_from
        GROUP BY k.lead_source_pk) p
  LEFT JOIN canon.identity_links k
    ON k.source_table = 'module_ct_cabinet_leads' AND k.source_pk = p.lead_source_pk
  LEFT JOIN canon.identity_unmatched u
    ON u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = p.lead_source_pk;
  ANALYZE pg_temp.cabinet_pending;
  UPDATE canon.lead_keys k SET match_pending = false
  FROM pg_temp.cabinet_pending p
  WHERE (p.linked OR p.status IN ('OPEN', 'IGNORED'))
    AND k.lead_source_pk = p.lead_source_pk AND k.match_pending;
  GET DIAGNOSTICS v_pending_cleared = ROW_COUNT;
  -- OPEN leads (of any scope) not worth retrying: attempted since the index last changed.
  -- (identity_unmatched holds cabinet leads only: its CHECK on source_table.)
  SELECT count(*) INTO v_retries_skipped
  FROM canon.identity_unmatched u
  WHERE u.status = 'OPEN' AND u.last_attempt_at >= coalesce(v_index_changed_at, '-infinity');

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
      FROM canon.lead_keys s
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
      FROM canon.lead_keys s
      WHERE s.lead_source_pk = u.source_pk
    ) m
    WHERE u.status = 'OPEN'
      AND u.last_attempt_at < coalesce(v_index_changed_at, '-infinity')
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
  -- Batch rows are re-keyed when their source values changed since they were keyed. Only
  -- rows whose source hash (as canon.refresh_lead_keys computes it) differs are passed:
  -- re-normalising unchanged rows costs as much as keying them.
  PERFORM canon.refresh_lead_keys(ARRAY(
    SELECT b.lead_id
    FROM pg_temp.cabinet_batch b
    JOIN public.module_ct_cabinet_leads l ON l.id = b.lead_id
    JOIN canon.lead_keys k ON k.lead_id = b.lead_id
    WHERE k.source_hash IS DISTINCT FROM
          md5(concat_ws(E'\x1f', l.external_id, l.lead_created_at::text, l.park_phone, l.asset_plate_number,
                        l.first_name, l.middle_name, l.last_name))));
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
  -- Every NO_IDENTITY lead of the batch is now linked or unmatched: no longer pending.
  UPDATE canon.lead_keys k SET match_pending = false
  FROM (SELECT DISTINCT d.lead_source_pk FROM pg_temp.cabinet_decisions d WHERE d.batch_kind = 'NO_IDENTITY') d
  WHERE k.lead_source_pk = d.lead_source_pk AND k.match_pending;
  GET DIAGNOSTICS v_evaluated_cleared = ROW_COUNT;
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
    'leads_with_oversized_key', v_oversized,
    'leads_keyed_late', cardinality(v_unkeyed),
    'unkeyed_rows_checked', CASE WHEN v_gap_scan_scope THEN 'scope' ELSE 'new_rows' END,
    'driver_index_changed_at', v_index_changed_at,
    'retries_skipped_no_index_change', v_retries_skipped,
    'pending_flags_cleared', v_pending_cleared + v_evaluated_cleared,
    'durations_ms', v_ms)
  INTO v_stats;
  RETURN v_stats;
END
$$;
COMMENT ON FUNCTION canon.match_cabinet_leads(bigint, date, integer, boolean) IS 'Pipeline steps 5-6: key new leads, select the batch, decide, link set-based, record unmatched reasons. Returns step stats.';

-- snapshot of sql/canon/canon.generate_cabinet_claims.sql
-- canon.generate_cabinet_claims: pipeline step 7 (SPEC 7). Brings the lead state
-- (canon.cabinet_lead_state) up to date, then inserts, as 'generated', every missing
-- claim (lead_source_pk, milestone) whose milestone a lead of the scope
-- (lead_date >= p_scope_from, not only this run's batch) reached in
-- [lead_date, lead_date + window_days), with the rule's amount. Existing claims (paid,
-- rejected, any status) are never touched (INSERT ... ON CONFLICT DO NOTHING); a second
-- call inserts nothing. Two lead rows sharing a key get one set of claims (from the
-- earliest row that reached the milestone).
-- Which leads are re-evaluated (trip windows summed again):
--   * lead rows never evaluated (id above the watermark), leads whose links or claims
--     changed (canon.cabinet_lead_state_dirty, marked by triggers);
--   * when summary_daily changed (canon.summary_daily_fingerprint): the leads of the
--     scope with a driver whose window is open or closed less than trips_settle_days ago;
--   * a sweep, on the first run of each business day, when called without a run
--     (p_run_id NULL, by hand) or after the claim rules changed: every lead of the scope,
--     plus lead rows that appeared, vanished or changed key or date anywhere;
--   * with p_only_limbo, the scope's leads in NO_DRIVER and TRIPS_NO_CLAIM as well.
-- Returns step stats, including lead_state {mode, reasons, evaluated, written, removed}.
CREATE OR REPLACE FUNCTION canon.generate_cabinet_claims(p_run_id bigint, p_scope_from date, p_only_limbo boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
  v_today date := canon.business_today();
  v_meta canon.cabinet_lead_state_meta%ROWTYPE;
  v_fingerprint text := canon.summary_daily_fingerprint();
  v_settle integer := canon.setting('trips_settle_days')::integer;
  v_sweep boolean;
  v_trips_changed boolean;
  v_max_mark bigint;
  v_max_lead_id integer;
  v_ids integer[];
  v_reasons jsonb;
  v_state jsonb;
  v_state2 jsonb;
  v_claimed_ids integer[];
  v_generated jsonb;
  v_existing jsonb;
  v_stats jsonb;
BEGIN
  IF p_scope_from IS NULL THEN
    RAISE EXCEPTION 'canon.generate_cabinet_claims: p_scope_from is NULL: expected the first lead date of the scope'
      USING ERRCODE = '22023';
  END IF;
  SELECT * INTO v_meta FROM canon.cabinet_lead_state_meta FOR UPDATE;
  v_sweep := p_run_id IS NULL OR v_meta.full_refresh_needed OR v_meta.last_sweep_date IS DISTINCT FROM v_today;
  v_trips_changed := v_fingerprint IS NULL OR v_fingerprint IS DISTINCT FROM v_meta.trips_fingerprint;
  SELECT max(d.mark_seq) INTO v_max_mark FROM canon.cabinet_lead_state_dirty d;
  SELECT max(l.id) INTO v_max_lead_id FROM public.module_ct_cabinet_leads l;

  -- The lead rows to re-evaluate, with the first reason that put them there.
  DROP TABLE IF EXISTS pg_temp.lead_state_todo;
  CREATE TEMP TABLE lead_state_todo (lead_id integer PRIMARY KEY, reason text NOT NULL) ON COMMIT DROP;

  INSERT INTO pg_temp.lead_state_todo
  SELECT l.id, 'new_lead'
  FROM public.module_ct_cabinet_leads l
  WHERE l.id > v_meta.lead_id_watermark AND l.lead_created_at IS NOT NULL
  ON CONFLICT DO NOTHING;

  INSERT INTO pg_temp.lead_state_todo
  SELECT x.lead_id, 'links_or_claims_changed'
  FROM (
    SELECT k.lead_id
    FROM canon.cabinet_lead_state_dirty d
    JOIN canon.lead_keys k ON k.lead_source_pk = d.lead_source_pk
    UNION
    SELECT s.lead_id
    FROM canon.cabinet_lead_state_dirty d
    JOIN canon.cabinet_lead_state s ON s.lead_source_pk = d.lead_source_pk
  ) x
  ON CONFLICT DO NOTHING;

  IF v_sweep THEN
    INSERT INTO pg_temp.lead_state_todo
    SELECT l.id, 'sweep_scope'
    FROM public.module_ct_cabinet_leads l
    WHERE l.lead_created_at >= p_scope_from::timestamp
    ON CONFLICT DO NOTHING;
    -- Lead rows evaluated but gone, undated, re-keyed or re-dated; dated rows never evaluated.
    INSERT INTO pg_temp.lead_state_todo
    SELECT coalesce(s.lead_id, l.id), 'sweep_membership'
    FROM canon.cabinet_lead_state s
    FULL JOIN (SELECT l.id, canon.lead_source_pk(l.external_id, l.id) AS lead_source_pk, l.lead_created_at::date AS lead_date
               FROM public.module_ct_cabinet_leads l
               WHERE l.lead_created_at IS NOT NULL) l
      ON l.id = s.lead_id
    WHERE s.lead_id IS NULL OR l.id IS NULL
       OR s.lead_source_pk <> l.lead_source_pk OR s.lead_date <> l.lead_date
    ON CONFLICT DO NOTHING;
    IF v_meta.full_refresh_needed THEN
      INSERT INTO pg_temp.lead_state_todo
      SELECT s.lead_id, 'claim_rules_changed' FROM canon.cabinet_lead_state s
      ON CONFLICT DO NOTHING;
    END IF;
  ELSIF v_trips_changed THEN
    INSERT INTO pg_temp.lead_state_todo
    SELECT s.lead_id, 'trips_changed'
    FROM canon.cabinet_lead_state s
    WHERE s.driver_id IS NOT NULL
      AND s.window_end > v_today - v_settle
      AND s.lead_date >= p_scope_from
    ON CONFLICT DO NOTHING;
  END IF;

  IF p_only_limbo THEN
    INSERT INTO pg_temp.lead_state_todo
    SELECT s.lead_id, 'only_limbo'
    FROM canon.cabinet_lead_state s
    WHERE s.limbo_stage IN ('NO_DRIVER', 'TRIPS_NO_CLAIM') AND s.lead_date >= p_scope_from
    ON CONFLICT DO NOTHING;
  END IF;

  SELECT coalesce(jsonb_object_agg(r.reason, r.n), '{}'::jsonb) INTO v_reasons
  FROM (SELECT t.reason, count(*) AS n FROM pg_temp.lead_state_todo t GROUP BY t.reason) r;
  v_ids := ARRAY(SELECT t.lead_id FROM pg_temp.lead_state_todo t ORDER BY t.lead_id);
  v_state := canon.refresh_lead_state(p_run_id, v_ids);
  IF (v_state->>'written')::integer >= 10000 THEN
    ANALYZE canon.cabinet_lead_state;
  END IF;

  -- Claims of the scope present before this step (they are never touched), by status.
  SELECT coalesce(jsonb_object_agg(e.status, e.n), '{}'::jsonb) INTO v_existing
  FROM (SELECT cl.status, count(*) AS n
        FROM canon.claims_yango_cabinet_14d cl
        WHERE cl.lead_date >= p_scope_from
        GROUP BY cl.status) e;

  -- Claims: every reached milestone without its claim, from the stored state of the scope.
  PERFORM set_config('cabinet.lead_state_marking', 'off', true);
  WITH due AS (
    SELECT DISTINCT ON (s.lead_source_pk, m.milestone)
           s.lead_id, s.lead_source_pk, s.lead_date, s.person_key, s.driver_id, s.currency, m.milestone, m.amount
    FROM canon.cabinet_lead_state s
    CROSS JOIN LATERAL (
      VALUES (1, s.m1_amount, s.reached_m1 AND NOT s.has_claim_m1),
             (5, s.m5_amount, s.reached_m5 AND NOT s.has_claim_m5),
             (25, s.m25_amount, s.reached_m25 AND NOT s.has_claim_m25)
    ) m (milestone, amount, missing)
    WHERE s.limbo_stage = 'TRIPS_NO_CLAIM'
      AND s.lead_date >= p_scope_from
      AND m.missing
    ORDER BY s.lead_source_pk, m.milestone, s.lead_date, s.lead_id
  ),
  inserted AS (
    INSERT INTO canon.claims_yango_cabinet_14d AS cl (
      lead_source_pk, milestone, person_key, driver_id, lead_date, amount_expected, currency,
      status, generated_at, run_id
    )
    SELECT d.lead_source_pk, d.milestone, d.person_key, d.driver_id, d.lead_date, d.amount, d.currency,
           'generated', now(), p_run_id
    FROM due d
    ORDER BY d.lead_source_pk, d.milestone
    ON CONFLICT (lead_source_pk, milestone) DO NOTHING
    RETURNING cl.lead_source_pk, cl.milestone, cl.amount_expected
  ),
  per_milestone AS (
    SELECT m.milestone, count(i.milestone) AS n, coalesce(sum(i.amount_expected), 0) AS amount
    FROM (VALUES (1), (5), (25)) m (milestone)
    LEFT JOIN inserted i ON i.milestone = m.milestone
    GROUP BY m.milestone
  )
  SELECT jsonb_build_object(
           'claims_generated', (SELECT count(*) FROM inserted),
           'claims_generated_amount', (SELECT coalesce(sum(i.amount_expected), 0) FROM inserted i),
           'claims_generated_by_milestone', (SELECT jsonb_object_agg('M' || p.milestone, jsonb_build_object('count', p.n, 'amount', p.amount))
                                             FROM per_milestone p),
           'claimed_keys', (SELECT coalesce(jsonb_agg(DISTINCT i.lead_source_pk), '[]'::jsonb) FROM inserted i))
  INTO v_generated;
  PERFORM set_config('cabinet.lead_state_marking', 'on', true);

  -- The claimed leads' flags and stage, and whatever was marked while this step ran.
  v_claimed_ids := ARRAY(
    SELECT s.lead_id FROM canon.cabinet_lead_state s
    WHERE s.lead_source_pk IN (SELECT jsonb_array_elements_text(v_generated->'claimed_keys'))
    UNION
    SELECT k.lead_id FROM canon.cabinet_lead_state_dirty d JOIN canon.lead_keys k ON k.lead_source_pk = d.lead_source_pk
    WHERE d.mark_seq > coalesce(v_max_mark, 0));
  v_state2 := canon.refresh_lead_state(p_run_id, v_claimed_ids);

  DELETE FROM canon.cabinet_lead_state_dirty d WHERE d.mark_seq <= coalesce(v_max_mark, 0);
  UPDATE canon.cabinet_lead_state_meta
  SET lead_id_watermark = greatest(lead_id_watermark, coalesce(v_max_lead_id, 0)),
      last_sweep_date = CASE WHEN v_sweep THEN v_today ELSE last_sweep_date END,
      last_sweep_at = CASE WHEN v_sweep THEN now() ELSE last_sweep_at END,
      trips_fingerprint = CASE WHEN v_sweep OR v_trips_changed THEN v_fingerprint ELSE trips_fingerprint END,
      full_refresh_needed = false,
      updated_at = now();

  -- The scope's figures in one pass over its stored rows.
  WITH scope AS (
    SELECT count(*) AS leads,
           count(*) FILTER (WHERE s.person_key IS NOT NULL) AS with_identity,
           count(*) FILTER (WHERE s.driver_id IS NOT NULL) AS with_driver,
           count(*) FILTER (WHERE s.trips_in_window > 0) AS with_trips,
           count(*) FILTER (WHERE s.window_days IS NULL) AS without_rule,
           count(*) FILTER (WHERE s.limbo_stage = 'TRIPS_NO_CLAIM') AS trips_no_claim
    FROM canon.cabinet_lead_state s
    WHERE s.lead_date >= p_scope_from
  ),
  -- Per key (sorts the scope): on sweeps only; NULL in incremental runs.
  scope_keys AS (
    SELECT count(DISTINCT s.lead_source_pk) AS lead_keys,
           count(DISTINCT s.lead_source_pk) FILTER (WHERE s.reached_m1)
             + count(DISTINCT s.lead_source_pk) FILTER (WHERE s.reached_m5)
             + count(DISTINCT s.lead_source_pk) FILTER (WHERE s.reached_m25) AS milestones_reached
    FROM canon.cabinet_lead_state s
    WHERE v_sweep AND s.lead_date >= p_scope_from
  ),
  evaluated_drivers AS (
    SELECT DISTINCT s.driver_id
    FROM canon.cabinet_lead_state s
    WHERE s.lead_id = ANY (v_ids) AND s.driver_id IS NOT NULL AND s.lead_date >= p_scope_from
  ),
  unparseable AS (
    SELECT count(*) AS n
    FROM evaluated_drivers sd
    JOIN public.summary_daily t
      ON t.driver_id = sd.driver_id
     AND canon.parse_date_file(t.date_file) IS NULL
  )
  SELECT jsonb_build_object(
    'scope_from', p_scope_from,
    'leads_in_scope', sc.leads,
    'lead_keys_in_scope', CASE WHEN v_sweep THEN (SELECT k.lead_keys FROM scope_keys k) END,
    'leads_with_identity', sc.with_identity,
    'leads_with_driver', sc.with_driver,
    'leads_with_trips', sc.with_trips,
    'leads_without_claim_rule', sc.without_rule,
    'leads_in_trips_no_claim', sc.trips_no_claim,
    'trip_rows_read', (v_state->>'trip_rows_read')::bigint,
    'trip_rows_unparseable_scope_drivers', (SELECT n FROM unparseable),
    'milestones_reached', CASE WHEN v_sweep THEN (SELECT k.milestones_reached FROM scope_keys k) END,
    'claims_generated', v_generated->'claims_generated',
    'claims_generated_amount', v_generated->'claims_generated_amount',
    'claims_generated_by_milestone', v_generated->'claims_generated_by_milestone',
    'claims_already_present', (SELECT coalesce(sum(e.value::bigint), 0) FROM jsonb_each_text(v_existing) e),
    'claims_skipped_paid_or_rejected', (SELECT coalesce(sum(e.value::bigint), 0) FROM jsonb_each_text(v_existing) e
                                        WHERE e.key IN ('paid', 'rejected')),
    'claims_already_present_by_status', v_existing,
    'lead_state', jsonb_build_object(
      'mode', CASE WHEN v_sweep THEN 'sweep' ELSE 'incremental' END,
      'trips_changed', v_trips_changed,
      'reasons', v_reasons,
      'evaluated', (v_state->>'evaluated')::integer + (v_state2->>'evaluated')::integer,
      'written', (v_state->>'written')::integer + (v_state2->>'written')::integer,
      'removed', (v_state->>'removed')::integer + (v_state2->>'removed')::integer,
      'watermark', greatest(v_meta.lead_id_watermark, coalesce(v_max_lead_id, 0)))
  ) INTO v_stats
  FROM scope sc;
  RETURN v_stats;
END
$$;
COMMENT ON FUNCTION canon.generate_cabinet_claims(bigint, date, boolean) IS
  'Pipeline step 7: re-evaluates the lead state that may have changed (canon.cabinet_lead_state), then inserts, as generated, every missing claim (lead_source_pk, milestone) reached in the window by leads with lead_date >= p_scope_from. Never touches existing claims. p_run_id NULL (by hand) sweeps the whole scope. Returns step stats.';
