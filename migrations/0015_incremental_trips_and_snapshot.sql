-- Up Migration
-- snapshot of migrations/parts/0015_incremental_trips_and_snapshot.sql
-- Step 7 notices appended trip rows precisely (the drivers in the pages appended since the
-- last look) instead of re-reading every open window; the snapshot copies the previous
-- counts when no lead state changed (issue 7: steady run < 2 s, idle run < 300 ms).
CREATE TYPE canon.summary_daily_write_counts AS (
  relfilenode  oid,
  inserted     bigint,
  modified     bigint,
  blocks       bigint
);
COMMENT ON TYPE canon.summary_daily_write_counts IS
  'public.summary_daily file node, cumulative inserted and updated+deleted rows, size in pages (canon.summary_daily_writes()).';

ALTER TABLE canon.cabinet_lead_state_meta
  DROP COLUMN trips_fingerprint,
  ADD COLUMN trips_relfilenode oid,
  ADD COLUMN trips_inserted bigint,
  ADD COLUMN trips_modified bigint,
  ADD COLUMN trips_blocks bigint,
  ADD COLUMN changed_at timestamptz NOT NULL DEFAULT now();
COMMENT ON COLUMN canon.cabinet_lead_state_meta.trips_blocks IS
  'Size of public.summary_daily in pages when step 7 last read its new rows: appended rows are looked for from there.';
COMMENT ON COLUMN canon.cabinet_lead_state_meta.changed_at IS
  'Last time a stored lead state row was written or removed: a limbo snapshot taken after it copies the previous counts.';

DROP FUNCTION canon.summary_daily_fingerprint();

-- snapshot of sql/canon/canon.summary_daily_writes.sql
-- canon.summary_daily_writes: how much public.summary_daily has been written, without a
-- trigger on the upstream table: its file node (changed by TRUNCATE or a rewrite), the
-- cumulative counts of rows inserted and of rows updated or deleted from the statistics
-- system, and its size in pages. Step 7 compares them with the values it last acted on:
-- more inserts only = rows appended (found in the new pages); anything else = re-read the
-- open windows. Statistics reach shared memory when the writing session goes idle (up to
-- about 10 s after its commit, at once when it disconnects): a load committed just before
-- a run is seen by the next run. inserted/modified are NULL when track_counts is off.
CREATE OR REPLACE FUNCTION canon.summary_daily_writes()
RETURNS canon.summary_daily_write_counts
LANGUAGE sql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT ROW(c.relfilenode,
             CASE WHEN current_setting('track_counts')::boolean THEN pg_stat_get_tuples_inserted(c.oid) END,
             CASE WHEN current_setting('track_counts')::boolean
                  THEN pg_stat_get_tuples_updated(c.oid) + pg_stat_get_tuples_deleted(c.oid) END,
             pg_relation_size(c.oid) / current_setting('block_size')::bigint)::canon.summary_daily_write_counts
  FROM pg_class c
  WHERE c.oid = 'public.summary_daily'::regclass
$$;
COMMENT ON FUNCTION canon.summary_daily_writes() IS
  'File node, cumulative inserted and updated+deleted row counts (NULL when track_counts is off) and size in pages of public.summary_daily: how step 7 notices new trips.';

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
  -- What the limbo snapshot compares with to know whether it must recount.
  IF v_written + v_removed > 0 THEN
    UPDATE canon.cabinet_lead_state_meta SET changed_at = now();
  END IF;
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
--   * when rows were appended to summary_daily (canon.summary_daily_writes: insert count
--     of the statistics system grew): the scope's leads of the drivers found in the pages
--     appended since the last look (a TID range scan, no trigger on the upstream table);
--     when rows were updated or deleted, or the table was truncated or statistics are off:
--     the scope's leads with a driver whose window is open or closed less than
--     trips_settle_days ago;
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
  v_trips canon.summary_daily_write_counts;
  v_trips_mode text := 'unchanged';
  v_trip_drivers integer;
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
  v_trips := canon.summary_daily_writes();
  v_trips_mode := CASE
    WHEN v_trips.inserted IS NULL OR v_meta.trips_inserted IS NULL
      OR v_trips.relfilenode IS DISTINCT FROM v_meta.trips_relfilenode
      OR v_trips.modified IS DISTINCT FROM v_meta.trips_modified
      OR v_trips.blocks < v_meta.trips_blocks THEN 'rewritten'
    WHEN v_trips.inserted <> v_meta.trips_inserted THEN 'appended'
    ELSE 'unchanged' END;
  v_trips_changed := v_trips_mode <> 'unchanged';
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
  ELSIF v_trips_mode = 'appended' THEN
    -- Appended rows are in the pages added since the last look (and the last page then).
    DROP TABLE IF EXISTS pg_temp.lead_state_trip_drivers;
    CREATE TEMP TABLE lead_state_trip_drivers ON COMMIT DROP AS
    SELECT DISTINCT t.driver_id::text AS driver_id
    FROM public.summary_daily t
    WHERE t.ctid >= format('(%s,0)', greatest(v_meta.trips_blocks - 1, 0))::tid
      AND t.driver_id IS NOT NULL;
    GET DIAGNOSTICS v_trip_drivers = ROW_COUNT;
    ANALYZE pg_temp.lead_state_trip_drivers;
    INSERT INTO pg_temp.lead_state_todo
    SELECT s.lead_id, 'trips_appended'
    FROM pg_temp.lead_state_trip_drivers d
    JOIN canon.cabinet_lead_state s ON s.driver_id = d.driver_id
    WHERE s.lead_date >= p_scope_from
    ON CONFLICT DO NOTHING;
  ELSIF v_trips_mode = 'rewritten' THEN
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
      -- Kept as they were when nothing was read: statistics published late are then
      -- compared with the last values acted upon, and the appended pages scanned from there.
      trips_relfilenode = CASE WHEN v_sweep OR v_trips_changed THEN v_trips.relfilenode ELSE trips_relfilenode END,
      trips_inserted = CASE WHEN v_sweep OR v_trips_changed THEN v_trips.inserted ELSE trips_inserted END,
      trips_modified = CASE WHEN v_sweep OR v_trips_changed THEN v_trips.modified ELSE trips_modified END,
      trips_blocks = CASE WHEN v_sweep OR v_trips_changed THEN v_trips.blocks ELSE trips_blocks END,
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
      'trips', v_trips_mode,
      'trip_drivers_appended', v_trip_drivers,
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

-- snapshot of sql/ops/ops.snapshot_limbo.sql
-- ops.snapshot_limbo: pipeline step 8 (SPEC 7, 9). In one pass over
-- ops.v_cabinet_leads_limbo (ops.limbo_week_counts), or by copying the previous snapshot
-- when no lead state changed since, it stores the run's limbo counts per lead week
-- (ops.limbo_snapshot_weeks) and over all leads (ops.limbo_snapshots), then evaluates the
-- alert rules on that snapshot and records the firing alerts (ops.check_limbo_alerts).
-- It runs inside the run's all-or-nothing transaction: a failed or dry run keeps nothing,
-- so only COMPLETED runs have snapshots. Calling it again for a run replaces its snapshot.
-- Returns the step's stats: counts, rows written, alerts firing (codes, new ones).
CREATE OR REPLACE FUNCTION ops.snapshot_limbo(p_run_id bigint)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_snap jsonb;
  v_weeks integer;
  v_alerts jsonb;
  v_prev_run bigint;
  v_prev_at timestamptz;
  v_reused boolean;
BEGIN
  IF p_run_id IS NULL THEN
    RAISE EXCEPTION 'ops.snapshot_limbo: p_run_id is NULL: expected the id of a row of canon.ingestion_runs'
      USING ERRCODE = '22023';
  END IF;

  DELETE FROM ops.limbo_snapshots s WHERE s.run_id = p_run_id;

  -- The counts are those of the previous snapshot when no stored lead state changed since
  -- it was taken and no lead row is newer than the last evaluation (the view would give
  -- the same numbers): copied, not recounted over every lead.
  SELECT s.run_id, s.taken_at INTO v_prev_run, v_prev_at
  FROM ops.limbo_snapshots s
  ORDER BY s.taken_at DESC, s.run_id DESC
  LIMIT 1;
  v_reused := v_prev_run IS NOT NULL
    AND v_prev_at >= (SELECT m.changed_at FROM canon.cabinet_lead_state_meta m)
    AND NOT EXISTS (SELECT 1 FROM public.module_ct_cabinet_leads l
                    WHERE l.id > canon.lead_state_watermark() AND l.lead_created_at IS NOT NULL);

  WITH weeks AS (
    SELECT w.* FROM ops.limbo_week_counts(CASE WHEN v_reused THEN v_prev_run END) w
  ),
  snapshot AS (
    INSERT INTO ops.limbo_snapshots (
      run_id, taken_at, business_date, leads, leads_with_identity, leads_with_driver,
      limbo_no_identity, limbo_no_driver, limbo_no_trips_14d, limbo_trips_no_claim, limbo_ok)
    SELECT p_run_id, now(), canon.business_today(),
           coalesce(sum(w.leads), 0), coalesce(sum(w.leads_with_identity), 0), coalesce(sum(w.leads_with_driver), 0),
           coalesce(sum(w.limbo_no_identity), 0), coalesce(sum(w.limbo_no_driver), 0),
           coalesce(sum(w.limbo_no_trips_14d), 0), coalesce(sum(w.limbo_trips_no_claim), 0), coalesce(sum(w.limbo_ok), 0)
    FROM weeks w
    RETURNING *
  ),
  week_rows AS (
    INSERT INTO ops.limbo_snapshot_weeks (
      run_id, week_start, leads, leads_with_identity, leads_with_driver,
      limbo_no_identity, limbo_no_driver, limbo_no_trips_14d, limbo_trips_no_claim, limbo_ok)
    SELECT p_run_id, w.week_start, w.leads, w.leads_with_identity, w.leads_with_driver,
           w.limbo_no_identity, w.limbo_no_driver, w.limbo_no_trips_14d, w.limbo_trips_no_claim, w.limbo_ok
    FROM weeks w
    RETURNING 1
  )
  SELECT to_jsonb(s), (SELECT count(*)::integer FROM week_rows) INTO v_snap, v_weeks
  FROM snapshot s;

  SELECT coalesce(jsonb_agg(jsonb_build_object(
           'rule_code', a.rule_code, 'severity', a.severity, 'subject', a.subject,
           'current_value', a.current_value, 'threshold', a.threshold, 'is_new', a.is_new)), '[]'::jsonb)
  INTO v_alerts
  FROM ops.check_limbo_alerts(p_run_id, true) a;

  RETURN jsonb_build_object(
    'run_id', p_run_id,
    'taken_at', v_snap->'taken_at',
    'business_date', v_snap->'business_date',
    'leads', v_snap->'leads',
    'leads_with_identity', v_snap->'leads_with_identity',
    'leads_with_driver', v_snap->'leads_with_driver',
    'stages', jsonb_build_object(
      'NO_IDENTITY', v_snap->'limbo_no_identity', 'NO_DRIVER', v_snap->'limbo_no_driver',
      'NO_TRIPS_14D', v_snap->'limbo_no_trips_14d', 'TRIPS_NO_CLAIM', v_snap->'limbo_trips_no_claim',
      'OK', v_snap->'limbo_ok'),
    'weeks_written', v_weeks,
    'counts_copied_from_run', CASE WHEN v_reused THEN v_prev_run END,
    'rows_written', v_weeks + 1,
    'alerts_firing', jsonb_array_length(v_alerts),
    'alerts_new', (SELECT count(*) FROM jsonb_array_elements(v_alerts) x WHERE (x->>'is_new')::boolean),
    'alerts', v_alerts);
END
$$;
COMMENT ON FUNCTION ops.snapshot_limbo(bigint) IS
  'Pipeline step 8: stores the limbo counts of run p_run_id per stage, overall and per lead week (ops.limbo_snapshots, ops.limbo_snapshot_weeks), then evaluates and records the alerts. Returns step stats (counts, rows_written, alerts).';
