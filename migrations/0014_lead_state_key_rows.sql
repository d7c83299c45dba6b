-- Up Migration
-- snapshot of migrations/parts/0014_lead_state_key_rows.sql
-- Lead state: key_rows, the number of lead rows sharing a row's key, so that the per-key
-- claim views (and the weekly funnel) sort only the rare shared keys (issue 7: the funnel
-- took 28 s at 1M leads sorting every lead x milestone).
ALTER TABLE canon.cabinet_lead_state ADD COLUMN key_rows integer NOT NULL DEFAULT 1;
UPDATE canon.cabinet_lead_state s
SET key_rows = k.n
FROM (SELECT x.lead_source_pk, count(*)::integer AS n
      FROM canon.cabinet_lead_state x
      GROUP BY x.lead_source_pk
      HAVING count(*) > 1) k
WHERE s.lead_source_pk = k.lead_source_pk;

-- snapshot of sql/canon/canon.v_cabinet_lead_status.sql
-- canon.v_cabinet_lead_status: the one live definition of a lead's state on the chain
-- lead -> person -> driver -> trips in window -> claims (SPEC 8), one row per lead row
-- with lead_created_at: canon.v_cabinet_lead_chain plus the claims present for THIS
-- lead's key (any status) and the limbo stage, first that applies: NO_IDENTITY,
-- NO_DRIVER, NO_TRIPS_14D, TRIPS_NO_CLAIM, OK. Costly over every lead (one trip lookup
-- per lead): canon.refresh_lead_state stores it in canon.cabinet_lead_state for the
-- leads that changed, and the views read the stored rows.
CREATE OR REPLACE VIEW canon.v_cabinet_lead_status AS
SELECT c.lead_id,
       c.lead_source_pk,
       c.lead_date,
       c.person_key,
       c.driver_id,
       c.window_days,
       c.window_end,
       c.trips_in_window,
       c.trip_rows_in_window,
       c.currency,
       c.m1_trips_threshold,
       c.m1_amount,
       c.reached_m1,
       c.m5_trips_threshold,
       c.m5_amount,
       c.reached_m5,
       c.m25_trips_threshold,
       c.m25_amount,
       c.reached_m25,
       c.expected_amount,
       (c1.lead_source_pk IS NOT NULL) AS has_claim_m1,
       (c5.lead_source_pk IS NOT NULL) AS has_claim_m5,
       (c25.lead_source_pk IS NOT NULL) AS has_claim_m25,
       CASE
         WHEN c.person_key IS NULL THEN 'NO_IDENTITY'
         WHEN c.driver_id IS NULL THEN 'NO_DRIVER'
         WHEN c.trips_in_window <= 0 THEN 'NO_TRIPS_14D'
         WHEN (c.reached_m1 AND c1.lead_source_pk IS NULL)
           OR (c.reached_m5 AND c5.lead_source_pk IS NULL)
           OR (c.reached_m25 AND c25.lead_source_pk IS NULL) THEN 'TRIPS_NO_CLAIM'
         ELSE 'OK'
       END AS limbo_stage,
       -- Dated lead rows sharing this key (this one, the keyed others, and others newer
       -- than the keyed rows): 1 for almost every lead, which lets the per-key claim views
       -- skip sorting every lead.
       1 + (SELECT count(*)::integer FROM canon.lead_keys k2
            WHERE k2.lead_source_pk = c.lead_source_pk AND k2.lead_date IS NOT NULL AND k2.lead_id <> c.lead_id)
         + (SELECT count(*)::integer FROM public.module_ct_cabinet_leads l2
            WHERE l2.id > (SELECT coalesce(max(k3.lead_id), 0) FROM canon.lead_keys k3)
              AND l2.id <> c.lead_id AND l2.lead_created_at IS NOT NULL
              AND canon.lead_source_pk(l2.external_id, l2.id) = c.lead_source_pk) AS key_rows
FROM canon.v_cabinet_lead_chain c
LEFT JOIN canon.claims_yango_cabinet_14d c1 ON c1.lead_source_pk = c.lead_source_pk AND c1.milestone = 1
LEFT JOIN canon.claims_yango_cabinet_14d c5 ON c5.lead_source_pk = c.lead_source_pk AND c5.milestone = 5
LEFT JOIN canon.claims_yango_cabinet_14d c25 ON c25.lead_source_pk = c.lead_source_pk AND c25.milestone = 25;
COMMENT ON VIEW canon.v_cabinet_lead_status IS
  'Live state of every cabinet lead row with lead_created_at: chain, milestones, claims of this key, limbo_stage. Stored per lead in canon.cabinet_lead_state by the pipeline.';

-- snapshot of sql/canon/canon.v_cabinet_lead_status_current.sql
-- canon.v_cabinet_lead_status_current: the state every view reads, one row per lead row
-- with lead_created_at: the stored row of canon.cabinet_lead_state (as of its
-- evaluated_at, the last run that touched the lead), and, for lead rows newer than the
-- last evaluation, the live row of canon.v_cabinet_lead_status (evaluated_at = now()).
-- The second branch reads only leads above the watermark (primary key range), so counting
-- every lead's stage is one pass over the stored rows.
CREATE OR REPLACE VIEW canon.v_cabinet_lead_status_current AS
SELECT s.lead_id, s.lead_source_pk, s.lead_date, s.person_key, s.driver_id, s.window_days, s.window_end,
       s.trips_in_window, s.trip_rows_in_window, s.currency,
       s.m1_trips_threshold, s.m1_amount, s.reached_m1,
       s.m5_trips_threshold, s.m5_amount, s.reached_m5,
       s.m25_trips_threshold, s.m25_amount, s.reached_m25,
       s.expected_amount, s.has_claim_m1, s.has_claim_m5, s.has_claim_m25, s.limbo_stage,
       s.evaluated_at, s.key_rows
FROM canon.cabinet_lead_state s
UNION ALL
SELECT v.lead_id, v.lead_source_pk, v.lead_date, v.person_key, v.driver_id, v.window_days, v.window_end,
       v.trips_in_window, v.trip_rows_in_window, v.currency,
       v.m1_trips_threshold, v.m1_amount, v.reached_m1,
       v.m5_trips_threshold, v.m5_amount, v.reached_m5,
       v.m25_trips_threshold, v.m25_amount, v.reached_m25,
       v.expected_amount, v.has_claim_m1, v.has_claim_m5, v.has_claim_m25, v.limbo_stage,
       now() AS evaluated_at, v.key_rows
FROM canon.v_cabinet_lead_status v
WHERE v.lead_id > canon.lead_state_watermark()
  AND NOT EXISTS (SELECT 1 FROM canon.cabinet_lead_state s WHERE s.lead_id = v.lead_id);
COMMENT ON VIEW canon.v_cabinet_lead_status_current IS
  'One row per cabinet lead row with lead_created_at: stored state (canon.cabinet_lead_state) or, for leads newer than the last evaluation, the live state. Read by ops.v_cabinet_leads_limbo and the claim views.';

-- snapshot of sql/canon/canon.refresh_lead_state.sql
-- canon.refresh_lead_state: re-evaluates the given lead rows from the live definition
-- (canon.v_cabinet_lead_status) into canon.cabinet_lead_state, set-based: a row is
-- rewritten only when something in it changed (a rerun on unchanged data writes
-- nothing), and removed when its lead row is gone or has lost its lead_created_at.
-- Returns {evaluated, written, removed, trip_rows_read}. Callers: canon.generate_cabinet_claims
-- (the pipeline's step 7) and ops.refresh_cabinet_lead_state (people).
CREATE OR REPLACE FUNCTION canon.refresh_lead_state(p_run_id bigint, p_lead_ids integer[])
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
  v_evaluated integer;
  v_written integer;
  v_removed integer;
  v_trip_rows bigint;
BEGIN
  IF coalesce(cardinality(p_lead_ids), 0) = 0 THEN
    RETURN jsonb_build_object('evaluated', 0, 'written', 0, 'removed', 0, 'trip_rows_read', 0);
  END IF;

  DROP TABLE IF EXISTS pg_temp.lead_state_fresh;
  CREATE TEMP TABLE lead_state_fresh ON COMMIT DROP AS
  SELECT v.*
  FROM canon.v_cabinet_lead_status v
  WHERE v.lead_id = ANY (p_lead_ids);
  GET DIAGNOSTICS v_evaluated = ROW_COUNT;
  SELECT coalesce(sum(f.trip_rows_in_window), 0) INTO v_trip_rows FROM pg_temp.lead_state_fresh f;

  INSERT INTO canon.cabinet_lead_state AS s (
    lead_id, lead_source_pk, lead_date, person_key, driver_id, window_days, window_end,
    trips_in_window, trip_rows_in_window, currency,
    m1_trips_threshold, m1_amount, reached_m1, m5_trips_threshold, m5_amount, reached_m5,
    m25_trips_threshold, m25_amount, reached_m25, expected_amount,
    has_claim_m1, has_claim_m5, has_claim_m25, limbo_stage, key_rows, evaluated_at, evaluated_run_id)
  SELECT f.lead_id, f.lead_source_pk, f.lead_date, f.person_key, f.driver_id, f.window_days, f.window_end,
         f.trips_in_window, f.trip_rows_in_window, f.currency,
         f.m1_trips_threshold, f.m1_amount, f.reached_m1, f.m5_trips_threshold, f.m5_amount, f.reached_m5,
         f.m25_trips_threshold, f.m25_amount, f.reached_m25, f.expected_amount,
         f.has_claim_m1, f.has_claim_m5, f.has_claim_m25, f.limbo_stage, f.key_rows, now(), p_run_id
  FROM pg_temp.lead_state_fresh f
  ORDER BY f.lead_id
  ON CONFLICT (lead_id) DO UPDATE
    SET lead_source_pk = excluded.lead_source_pk, lead_date = excluded.lead_date,
        person_key = excluded.person_key, driver_id = excluded.driver_id,
        window_days = excluded.window_days, window_end = excluded.window_end,
        trips_in_window = excluded.trips_in_window, trip_rows_in_window = excluded.trip_rows_in_window,
        currency = excluded.currency,
        m1_trips_threshold = excluded.m1_trips_threshold, m1_amount = excluded.m1_amount, reached_m1 = excluded.reached_m1,
        m5_trips_threshold = excluded.m5_trips_threshold, m5_amount = excluded.m5_amount, reached_m5 = excluded.reached_m5,
        m25_trips_threshold = excluded.m25_trips_threshold, m25_amount = excluded.m25_amount, reached_m25 = excluded.reached_m25,
        expected_amount = excluded.expected_amount,
        has_claim_m1 = excluded.has_claim_m1, has_claim_m5 = excluded.has_claim_m5, has_claim_m25 = excluded.has_claim_m25,
        limbo_stage = excluded.limbo_stage, key_rows = excluded.key_rows, evaluated_at = excluded.evaluated_at, evaluated_run_id = excluded.evaluated_run_id
    WHERE (s.lead_source_pk, s.lead_date, s.person_key, s.driver_id, s.window_days, s.window_end,
           s.trips_in_window, s.trip_rows_in_window, s.currency,
           s.m1_trips_threshold, s.m1_amount, s.reached_m1, s.m5_trips_threshold, s.m5_amount, s.reached_m5,
           s.m25_trips_threshold, s.m25_amount, s.reached_m25, s.expected_amount,
           s.has_claim_m1, s.has_claim_m5, s.has_claim_m25, s.limbo_stage, s.key_rows)
          IS DISTINCT FROM
          (excluded.lead_source_pk, excluded.lead_date, excluded.person_key, excluded.driver_id, excluded.window_days, excluded.window_end,
           excluded.trips_in_window, excluded.trip_rows_in_window, excluded.currency,
           excluded.m1_trips_threshold, excluded.m1_amount, excluded.reached_m1, excluded.m5_trips_threshold, excluded.m5_amount, excluded.reached_m5,
           excluded.m25_trips_threshold, excluded.m25_amount, excluded.reached_m25, excluded.expected_amount,
           excluded.has_claim_m1, excluded.has_claim_m5, excluded.has_claim_m25, excluded.limbo_stage, excluded.key_rows);
  GET DIAGNOSTICS v_written = ROW_COUNT;

  DELETE FROM canon.cabinet_lead_state s
  WHERE s.lead_id = ANY (p_lead_ids)
    AND NOT EXISTS (SELECT 1 FROM pg_temp.lead_state_fresh f WHERE f.lead_id = s.lead_id);
  GET DIAGNOSTICS v_removed = ROW_COUNT;

  DROP TABLE pg_temp.lead_state_fresh;
  RETURN jsonb_build_object('evaluated', v_evaluated, 'written', v_written, 'removed', v_removed,
                            'trip_rows_read', v_trip_rows);
END
$$;
COMMENT ON FUNCTION canon.refresh_lead_state(bigint, integer[]) IS
  'Re-evaluates the given lead rows into canon.cabinet_lead_state from canon.v_cabinet_lead_status (rows rewritten only when changed, removed when the lead is gone). Returns {evaluated, written, removed, trip_rows_read}.';

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

  -- A new row sharing a key with stored rows changes their key_rows.
  INSERT INTO pg_temp.lead_state_todo
  SELECT s.lead_id, 'key_sibling'
  FROM pg_temp.lead_state_todo t
  JOIN public.module_ct_cabinet_leads l ON l.id = t.lead_id
  JOIN canon.cabinet_lead_state s ON s.lead_source_pk = canon.lead_source_pk(l.external_id, l.id)
  WHERE t.reason = 'new_lead' AND s.lead_id <> t.lead_id
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

-- snapshot of sql/ops/ops.v_cabinet_claims_expected_14d.sql
-- ops.v_cabinet_claims_expected_14d: one row per lead key and milestone of the claim rules
-- on its lead date: whether a claim is expected (the lead's driver reached the threshold in
-- [lead_date, window_end_14d)) and why, next to the claim actually present for THIS key.
-- Same lead state as the limbo view and canon.generate_cabinet_claims
-- (canon.v_cabinet_lead_status_current: stored by the pipeline, live for newer leads).
-- A key shared by two lead rows is shown once, from the earliest row that reached the
-- milestone (else the earliest row), which is the row generation takes; only those keys
-- (key_rows > 1 in the lead state) are sorted.
CREATE OR REPLACE VIEW ops.v_cabinet_claims_expected_14d AS
SELECT e.lead_source_pk,
       e.lead_id,
       e.lead_date,
       e.person_key,
       e.driver_id,
       e.milestone,
       e.trips_threshold,
       e.amount,
       e.trips_14d,
       e.window_end_14d,
       CASE WHEN e.window_end_14d IS NULL THEN NULL
            WHEN canon.business_today() < e.window_end_14d THEN 'OPEN'
            ELSE 'CLOSED' END AS window_status,
       e.expected,
       CASE
         WHEN e.person_key IS NULL THEN 'NO_IDENTITY'
         WHEN e.driver_id IS NULL THEN 'NO_DRIVER'
         WHEN e.expected THEN 'REACHED'
         ELSE 'NOT_REACHED'
       END AS reason,
       cl.status AS claim_status,
       date_trunc('week', e.lead_date::timestamp)::date AS week_start,
       e.currency,
       cl.amount_expected AS claim_amount
FROM (
  -- A key held by one lead row (almost all): that row, no sort.
  SELECT c.lead_source_pk, c.lead_id, c.lead_date, c.person_key, c.driver_id,
         m.milestone, m.trips_threshold, m.amount, c.currency,
         c.trips_in_window AS trips_14d, c.window_end AS window_end_14d,
         m.reached AS expected
  FROM canon.v_cabinet_lead_status_current c
  CROSS JOIN LATERAL (
    VALUES (1, c.m1_trips_threshold, c.m1_amount, c.reached_m1),
           (5, c.m5_trips_threshold, c.m5_amount, c.reached_m5),
           (25, c.m25_trips_threshold, c.m25_amount, c.reached_m25)
  ) m (milestone, trips_threshold, amount, reached)
  WHERE m.trips_threshold IS NOT NULL
    AND c.key_rows = 1
  UNION ALL
  (SELECT DISTINCT ON (c.lead_source_pk, m.milestone)
         c.lead_source_pk, c.lead_id, c.lead_date, c.person_key, c.driver_id,
         m.milestone, m.trips_threshold, m.amount, c.currency,
         c.trips_in_window AS trips_14d, c.window_end AS window_end_14d,
         m.reached AS expected
  FROM canon.v_cabinet_lead_status_current c
  CROSS JOIN LATERAL (
    VALUES (1, c.m1_trips_threshold, c.m1_amount, c.reached_m1),
           (5, c.m5_trips_threshold, c.m5_amount, c.reached_m5),
           (25, c.m25_trips_threshold, c.m25_amount, c.reached_m25)
  ) m (milestone, trips_threshold, amount, reached)
  WHERE m.trips_threshold IS NOT NULL
    AND c.key_rows > 1
  ORDER BY c.lead_source_pk, m.milestone, m.reached DESC, c.lead_date, c.lead_id)
) e
LEFT JOIN canon.claims_yango_cabinet_14d cl
  ON cl.lead_source_pk = e.lead_source_pk
 AND cl.milestone = e.milestone;
COMMENT ON VIEW ops.v_cabinet_claims_expected_14d IS
  'Lead key x milestone: trips threshold and amount from canon.claim_rules, trips in window, expected (reached) and reason (REACHED, NOT_REACHED, NO_DRIVER, NO_IDENTITY), and the status of the claim present for this key.';
