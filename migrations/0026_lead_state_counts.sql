-- Up Migration
-- snapshot of sql/canon/canon.count_lead_state_changes.sql
-- canon.count_lead_state_changes: statement-level trigger function on
-- canon.cabinet_lead_state (INSERT, UPDATE, DELETE, transition tables old_rows /
-- new_rows; TRUNCATE). Keeps canon.cabinet_lead_state_counts equal to the stored rows
-- counted by lead date, stage and the flags the run's figures need: each statement adds
-- its new rows and subtracts its old ones, grouped (a few hundred counters), so that the
-- scope's figures of step 7 and the snapshot's counts per lead week cost what changed,
-- not a pass over every stored lead (at 1M leads two such passes were about 1 s of every
-- backfill run).
CREATE OR REPLACE FUNCTION canon.count_lead_state_changes()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    DELETE FROM canon.cabinet_lead_state_counts;
    RETURN NULL;
  END IF;
  IF TG_OP = 'INSERT' THEN
    INSERT INTO canon.cabinet_lead_state_counts AS c (
      lead_date, limbo_stage, with_identity, with_driver, with_trips, with_rule, leads)
    SELECT n.lead_date, n.limbo_stage, n.person_key IS NOT NULL, n.driver_id IS NOT NULL,
           n.trips_in_window > 0, n.window_days IS NOT NULL, count(*)
    FROM new_rows n
    GROUP BY 1, 2, 3, 4, 5, 6
    ORDER BY 1, 2, 3, 4, 5, 6
    ON CONFLICT (lead_date, limbo_stage, with_identity, with_driver, with_trips, with_rule)
      DO UPDATE SET leads = c.leads + excluded.leads;
  ELSIF TG_OP = 'UPDATE' THEN
    INSERT INTO canon.cabinet_lead_state_counts AS c (
      lead_date, limbo_stage, with_identity, with_driver, with_trips, with_rule, leads)
    SELECT x.lead_date, x.limbo_stage, x.with_identity, x.with_driver, x.with_trips, x.with_rule, sum(x.n)
    FROM (
      SELECT o.lead_date, o.limbo_stage, o.person_key IS NOT NULL AS with_identity, o.driver_id IS NOT NULL AS with_driver,
             o.trips_in_window > 0 AS with_trips, o.window_days IS NOT NULL AS with_rule, -1 AS n
      FROM old_rows o
      UNION ALL
      SELECT n.lead_date, n.limbo_stage, n.person_key IS NOT NULL, n.driver_id IS NOT NULL,
             n.trips_in_window > 0, n.window_days IS NOT NULL, 1
      FROM new_rows n
    ) x
    GROUP BY 1, 2, 3, 4, 5, 6
    HAVING sum(x.n) <> 0
    ORDER BY 1, 2, 3, 4, 5, 6
    ON CONFLICT (lead_date, limbo_stage, with_identity, with_driver, with_trips, with_rule)
      DO UPDATE SET leads = c.leads + excluded.leads;
    DELETE FROM canon.cabinet_lead_state_counts c WHERE c.leads = 0;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO canon.cabinet_lead_state_counts AS c (
      lead_date, limbo_stage, with_identity, with_driver, with_trips, with_rule, leads)
    SELECT o.lead_date, o.limbo_stage, o.person_key IS NOT NULL, o.driver_id IS NOT NULL,
           o.trips_in_window > 0, o.window_days IS NOT NULL, -count(*)
    FROM old_rows o
    GROUP BY 1, 2, 3, 4, 5, 6
    ORDER BY 1, 2, 3, 4, 5, 6
    ON CONFLICT (lead_date, limbo_stage, with_identity, with_driver, with_trips, with_rule)
      DO UPDATE SET leads = c.leads + excluded.leads;
    DELETE FROM canon.cabinet_lead_state_counts c WHERE c.leads = 0;
  END IF;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION canon.count_lead_state_changes() IS
  'Trigger on canon.cabinet_lead_state: keeps canon.cabinet_lead_state_counts equal to the stored rows counted by lead_date, limbo_stage and flags.';

-- snapshot of sql/ops/ops.recount_lead_state_counts.sql
-- ops.recount_lead_state_counts: counts the stored lead state again into
-- canon.cabinet_lead_state_counts (what the trigger canon.count_lead_state_changes keeps
-- up to date). For the repair of a LEAD_STATE_COUNTS violation of ops.check_invariants,
-- which only writes that bypassed the trigger can cause (session_replication_role =
-- replica, a disabled trigger):
--   SELECT ops.recount_lead_state_counts();
-- Blocks writers of the state while it counts (SHARE lock: a write cannot slip between the
-- count and the counters). Returns the number of counter rows written.
CREATE OR REPLACE FUNCTION ops.recount_lead_state_counts()
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_rows bigint;
BEGIN
  LOCK TABLE canon.cabinet_lead_state IN SHARE MODE;
  DELETE FROM canon.cabinet_lead_state_counts;
  INSERT INTO canon.cabinet_lead_state_counts (lead_date, limbo_stage, with_identity, with_driver, with_trips, with_rule, leads)
  SELECT s.lead_date, s.limbo_stage, s.person_key IS NOT NULL, s.driver_id IS NOT NULL,
         s.trips_in_window > 0, s.window_days IS NOT NULL, count(*)
  FROM canon.cabinet_lead_state s
  GROUP BY 1, 2, 3, 4, 5, 6;
  GET DIAGNOSTICS v_rows = ROW_COUNT;
  RETURN v_rows;
END
$$;
COMMENT ON FUNCTION ops.recount_lead_state_counts() IS
  'Recounts canon.cabinet_lead_state_counts from the stored lead state (repair of a LEAD_STATE_COUNTS violation); returns counter rows written.';

-- snapshot of migrations/parts/0026_lead_state_counts.sql
-- The stored lead state counted by lead date, stage and the flags the run's figures need,
-- kept by a statement trigger on canon.cabinet_lead_state (canon.count_lead_state_changes):
-- step 7's scope figures and the snapshot's counts per lead week read these few hundred
-- rows instead of every stored lead. Replaces the scope counters cached in the meta row
-- (recounted over the whole scope whenever any state changed: every run of a backfill).
CREATE TABLE IF NOT EXISTS canon.cabinet_lead_state_counts (
  lead_date      date    NOT NULL,
  limbo_stage    text    NOT NULL,
  with_identity  boolean NOT NULL,
  with_driver    boolean NOT NULL,
  with_trips     boolean NOT NULL,
  with_rule      boolean NOT NULL,
  -- (no CHECK (leads >= 0): an upsert checks its proposed row, here the delta, before it
  -- finds the counter the delta is added to)
  leads          bigint  NOT NULL,
  PRIMARY KEY (lead_date, limbo_stage, with_identity, with_driver, with_trips, with_rule)
);
COMMENT ON TABLE canon.cabinet_lead_state_counts IS
  'Stored lead state rows (canon.cabinet_lead_state) counted by lead_date, limbo_stage, with_identity (person_key set), with_driver (driver_id set), with_trips (trips_in_window > 0), with_rule (window_days set); kept equal to that table by the trigger canon.count_lead_state_changes (ops.check_invariants verifies it).';

DROP TRIGGER IF EXISTS cabinet_lead_state_count_insert ON canon.cabinet_lead_state;
CREATE TRIGGER cabinet_lead_state_count_insert
  AFTER INSERT ON canon.cabinet_lead_state
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION canon.count_lead_state_changes();
DROP TRIGGER IF EXISTS cabinet_lead_state_count_update ON canon.cabinet_lead_state;
CREATE TRIGGER cabinet_lead_state_count_update
  AFTER UPDATE ON canon.cabinet_lead_state
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION canon.count_lead_state_changes();
DROP TRIGGER IF EXISTS cabinet_lead_state_count_delete ON canon.cabinet_lead_state;
CREATE TRIGGER cabinet_lead_state_count_delete
  AFTER DELETE ON canon.cabinet_lead_state
  REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION canon.count_lead_state_changes();
DROP TRIGGER IF EXISTS cabinet_lead_state_count_truncate ON canon.cabinet_lead_state;
CREATE TRIGGER cabinet_lead_state_count_truncate
  AFTER TRUNCATE ON canon.cabinet_lead_state
  FOR EACH STATEMENT EXECUTE FUNCTION canon.count_lead_state_changes();

-- Counted once from what is stored.
SELECT ops.recount_lead_state_counts();

ALTER TABLE canon.cabinet_lead_state_meta
  DROP COLUMN IF EXISTS scope_counts,
  DROP COLUMN IF EXISTS scope_counts_from,
  DROP COLUMN IF EXISTS scope_counts_at;

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
  v_claimed_written integer;
  v_generated jsonb;
  v_existing jsonb;
  v_scope jsonb;
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
  FROM unnest(canon.lead_ids_of_keys(ARRAY(SELECT d.lead_source_pk FROM canon.cabinet_lead_state_dirty d))) x (lead_id)
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

  -- The claimed leads (every stored row of a claimed key): their claim flags and stage
  -- follow the claims just written. Their chain was evaluated by this step, or is stored
  -- and unchanged (a change would have marked it): their trips are not read again.
  WITH claimed AS (
    SELECT c.lead_source_pk,
           EXISTS (SELECT 1 FROM canon.claims_yango_cabinet_14d cl WHERE cl.lead_source_pk = c.lead_source_pk AND cl.milestone = 1) AS c1,
           EXISTS (SELECT 1 FROM canon.claims_yango_cabinet_14d cl WHERE cl.lead_source_pk = c.lead_source_pk AND cl.milestone = 5) AS c5,
           EXISTS (SELECT 1 FROM canon.claims_yango_cabinet_14d cl WHERE cl.lead_source_pk = c.lead_source_pk AND cl.milestone = 25) AS c25
    FROM (SELECT DISTINCT jsonb_array_elements_text(v_generated->'claimed_keys') AS lead_source_pk) c
  )
  UPDATE canon.cabinet_lead_state s
  SET has_claim_m1 = c.c1, has_claim_m5 = c.c5, has_claim_m25 = c.c25,
      limbo_stage = canon.limbo_stage_of(s.person_key, s.driver_id, s.trips_in_window,
                                         s.reached_m1, s.reached_m5, s.reached_m25, c.c1, c.c5, c.c25),
      evaluated_at = now(), evaluated_run_id = p_run_id
  FROM claimed c
  WHERE s.lead_source_pk = c.lead_source_pk
    AND (s.has_claim_m1, s.has_claim_m5, s.has_claim_m25) IS DISTINCT FROM (c.c1, c.c5, c.c25);
  GET DIAGNOSTICS v_claimed_written = ROW_COUNT;
  IF v_claimed_written > 0 THEN
    -- (as canon.refresh_lead_state does: counts and snapshots made before are stale)
    UPDATE canon.cabinet_lead_state_meta SET changed_at = now();
  END IF;
  -- Whatever was marked while this step ran is evaluated again in full.
  v_claimed_ids := canon.lead_ids_of_keys(
    ARRAY(SELECT d.lead_source_pk FROM canon.cabinet_lead_state_dirty d WHERE d.mark_seq > coalesce(v_max_mark, 0)));
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

  -- The scope's figures, from the stored rows' counters (canon.cabinet_lead_state_counts,
  -- kept by a trigger as the state changes): a few hundred rows, whatever the scope holds.
  SELECT jsonb_build_object(
           'leads', coalesce(sum(c.leads), 0),
           'with_identity', coalesce(sum(c.leads) FILTER (WHERE c.with_identity), 0),
           'with_driver', coalesce(sum(c.leads) FILTER (WHERE c.with_driver), 0),
           'with_trips', coalesce(sum(c.leads) FILTER (WHERE c.with_trips), 0),
           'without_rule', coalesce(sum(c.leads) FILTER (WHERE NOT c.with_rule), 0),
           'trips_no_claim', coalesce(sum(c.leads) FILTER (WHERE c.limbo_stage = 'TRIPS_NO_CLAIM'), 0))
  INTO v_scope
  FROM canon.cabinet_lead_state_counts c
  WHERE c.lead_date >= p_scope_from;

  WITH
  -- Per key (sorts the scope): on sweeps only; NULL in incremental runs.
  scope_keys AS (
    SELECT count(DISTINCT s.lead_source_pk) AS lead_keys,
           count(DISTINCT s.lead_source_pk) FILTER (WHERE s.reached_m1)
             + count(DISTINCT s.lead_source_pk) FILTER (WHERE s.reached_m5)
             + count(DISTINCT s.lead_source_pk) FILTER (WHERE s.reached_m25) AS milestones_reached
    FROM canon.cabinet_lead_state s
    WHERE v_sweep AND s.lead_date >= p_scope_from
  ),
  -- (the evaluated ids joined, each probed by key: "lead_id = ANY (v_ids)" was planned as
  -- a scan of every stored row with a driver, each compared with the whole array)
  evaluated_drivers AS (
    SELECT DISTINCT s.driver_id
    FROM unnest(v_ids) x (lead_id)
    JOIN canon.cabinet_lead_state s ON s.lead_id = x.lead_id
    WHERE s.driver_id IS NOT NULL AND s.lead_date >= p_scope_from
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
    'leads_in_scope', (v_scope->>'leads')::bigint,
    'lead_keys_in_scope', CASE WHEN v_sweep THEN (SELECT k.lead_keys FROM scope_keys k) END,
    'leads_with_identity', (v_scope->>'with_identity')::bigint,
    'leads_with_driver', (v_scope->>'with_driver')::bigint,
    'leads_with_trips', (v_scope->>'with_trips')::bigint,
    'leads_without_claim_rule', (v_scope->>'without_rule')::bigint,
    'leads_in_trips_no_claim', (v_scope->>'trips_no_claim')::bigint,
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
      'written', (v_state->>'written')::integer + (v_state2->>'written')::integer + v_claimed_written,
      'claimed_rows_moved_on', v_claimed_written,
      'removed', (v_state->>'removed')::integer + (v_state2->>'removed')::integer,
      'watermark', greatest(v_meta.lead_id_watermark, coalesce(v_max_lead_id, 0)))
  ) INTO v_stats;
  RETURN v_stats;
END
$$;
COMMENT ON FUNCTION canon.generate_cabinet_claims(bigint, date, boolean) IS
  'Pipeline step 7: re-evaluates the lead state that may have changed (canon.cabinet_lead_state), then inserts, as generated, every missing claim (lead_source_pk, milestone) reached in the window by leads with lead_date >= p_scope_from. Never touches existing claims. p_run_id NULL (by hand) sweeps the whole scope. Returns step stats.';

-- snapshot of sql/ops/ops.limbo_week_counts.sql
-- ops.limbo_week_counts: leads per limbo stage for each lead week (week_start = ISO
-- Monday of lead_date), the one definition of the counts that snapshots store and alert
-- rules test. p_run_id NULL: live, the counts of ops.v_cabinet_leads_limbo without a
-- pass over it (see below); a run id: the rows stored for that run in
-- ops.limbo_snapshot_weeks. PL/pgSQL so that only the branch taken is planned; jit off
-- (the live part's estimate over the lead view once triggered a JIT compilation that
-- took longer than the whole count).
CREATE OR REPLACE FUNCTION ops.limbo_week_counts(p_run_id bigint DEFAULT NULL)
RETURNS TABLE (
  week_start            date,
  leads                 integer,
  leads_with_identity   integer,
  leads_with_driver     integer,
  limbo_no_identity     integer,
  limbo_no_driver       integer,
  limbo_no_trips_14d    integer,
  limbo_trips_no_claim  integer,
  limbo_ok              integer
)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
#variable_conflict use_column
BEGIN
  IF p_run_id IS NULL THEN
    -- The view's rows are the stored state (counted as it changes, in
    -- canon.cabinet_lead_state_counts) and the lead rows newer than the last evaluation
    -- (read live, usually none): counted here from those two parts, equal to a pass over
    -- ops.v_cabinet_leads_limbo grouped by week_start (tests: test/invariants/pipeline.test.ts,
    -- test/sql/canon.count_lead_state_changes.test.ts).
    RETURN QUERY
    SELECT x.week_start,
           sum(x.leads)::integer,
           coalesce(sum(x.leads) FILTER (WHERE x.with_identity), 0)::integer,
           coalesce(sum(x.leads) FILTER (WHERE x.with_driver), 0)::integer,
           coalesce(sum(x.leads) FILTER (WHERE x.limbo_stage = 'NO_IDENTITY'), 0)::integer,
           coalesce(sum(x.leads) FILTER (WHERE x.limbo_stage = 'NO_DRIVER'), 0)::integer,
           coalesce(sum(x.leads) FILTER (WHERE x.limbo_stage = 'NO_TRIPS_14D'), 0)::integer,
           coalesce(sum(x.leads) FILTER (WHERE x.limbo_stage = 'TRIPS_NO_CLAIM'), 0)::integer,
           coalesce(sum(x.leads) FILTER (WHERE x.limbo_stage = 'OK'), 0)::integer
    FROM (
      SELECT date_trunc('week', c.lead_date::timestamp)::date AS week_start, c.limbo_stage,
             c.with_identity, c.with_driver, c.leads
      FROM canon.cabinet_lead_state_counts c
      UNION ALL
      SELECT date_trunc('week', v.lead_date::timestamp)::date, v.limbo_stage,
             v.person_key IS NOT NULL, v.driver_id IS NOT NULL, 1
      FROM canon.v_cabinet_lead_status v
      WHERE v.lead_id > canon.lead_state_watermark()
        AND NOT EXISTS (SELECT 1 FROM canon.cabinet_lead_state s WHERE s.lead_id = v.lead_id)
    ) x
    GROUP BY x.week_start
    ORDER BY x.week_start;
  ELSE
    RETURN QUERY
    SELECT w.week_start, w.leads, w.leads_with_identity, w.leads_with_driver, w.limbo_no_identity,
           w.limbo_no_driver, w.limbo_no_trips_14d, w.limbo_trips_no_claim, w.limbo_ok
    FROM ops.limbo_snapshot_weeks w
    WHERE w.run_id = p_run_id
    ORDER BY w.week_start;
  END IF;
END
$$;
COMMENT ON FUNCTION ops.limbo_week_counts(bigint) IS
  'Leads per limbo stage per lead week: live from ops.v_cabinet_leads_limbo (p_run_id NULL) or as stored in the snapshot of run p_run_id.';

-- snapshot of sql/ops/ops.check_invariants.sql
-- ops.check_invariants: every invariant of the spec with its number of violations (0 =
-- holds) and up to 5 examples. Also `cabinet-leads doctor`, which exits 1 when any
-- invariant is violated, and the last statement of every reliability test. Read-only;
-- safe to run at any time, also while a run is in progress.
--   SELECT * FROM ops.check_invariants() WHERE violations > 0;
CREATE OR REPLACE FUNCTION ops.check_invariants()
RETURNS TABLE (invariant text, violations bigint, examples jsonb, description text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH orphan AS (
    SELECT p.person_key::text AS example
    FROM canon.identity_registry p
    WHERE NOT EXISTS (SELECT 1 FROM canon.identity_links l WHERE l.person_key = p.person_key)
  ),
  linked_open AS (
    SELECT l.source_pk AS example
    FROM canon.identity_links l
    JOIN canon.identity_unmatched u
      ON u.source_table = l.source_table AND u.source_pk = l.source_pk AND u.status = 'OPEN'
  ),
  driver_twice AS (
    SELECT format('%s (%s links)', l.source_pk, count(*)) AS example
    FROM canon.identity_links l
    WHERE l.source_table = 'drivers'
    GROUP BY l.source_pk
    HAVING count(*) > 1
  ),
  -- The same test as canon.mark_abandoned_runs (backend gone, or no longer in that run's
  -- CALL), plus runs RUNNING for over 2 hours.
  stuck AS (
    SELECT format('run %s (backend %s, started %s)', r.id, r.backend_pid, r.started_at) AS example
    FROM canon.ingestion_runs r
    WHERE r.status = 'RUNNING'
      AND (r.started_at < now() - interval '2 hours'
           OR NOT EXISTS (
             SELECT 1
             FROM pg_stat_activity a
             WHERE a.pid = r.backend_pid
               AND (r.backend_start IS NULL OR a.backend_start IS NULL OR a.backend_start = r.backend_start)
               AND (a.state IS NULL OR (a.state = 'active' AND a.query_start <= r.started_at))))
  ),
  limbo_mismatch AS (
    SELECT format('lead id %s: %s limbo rows%s', coalesce(l.id, v.lead_id), coalesce(v.n, 0),
                  CASE WHEN l.id IS NULL THEN ' (not a lead with lead_created_at)' ELSE '' END) AS example
    FROM (SELECT s.id FROM public.module_ct_cabinet_leads s WHERE s.lead_created_at IS NOT NULL) l
    FULL JOIN (SELECT lv.lead_id, count(*) AS n FROM ops.v_cabinet_leads_limbo lv GROUP BY lv.lead_id) v
      ON v.lead_id = l.id
    WHERE l.id IS NULL OR v.lead_id IS NULL OR v.n <> 1
  ),
  settled_guard AS (
    SELECT format('trigger %s %s', w.tgname, CASE WHEN t.tgname IS NULL THEN 'missing' ELSE 'disabled' END) AS example
    FROM (VALUES ('claims_protect_settled'), ('claims_record_settled_insert'), ('claims_record_settled_update'),
                 ('claims_record_settled_delete'), ('claims_record_settled_truncate')) w (tgname)
    LEFT JOIN pg_trigger t
      ON t.tgrelid = 'canon.claims_yango_cabinet_14d'::regclass AND t.tgname = w.tgname
    WHERE t.tgname IS NULL OR t.tgenabled NOT IN ('O', 'A')
  ),
  -- A settled claim that differs from its record, or is gone, or was settled unrecorded:
  -- it was changed while the guard was off (the guard and the record cannot be bypassed
  -- otherwise).
  settled_changed AS (
    SELECT format('%s M%s %s', coalesce(c.lead_source_pk, s.lead_source_pk), coalesce(c.milestone, s.milestone),
                  CASE WHEN c.lead_source_pk IS NULL THEN format('deleted (was %s)', s.status)
                       WHEN s.lead_source_pk IS NULL THEN format('%s but never recorded', c.status)
                       ELSE format('changed (recorded %s %s, now %s %s)', s.status, s.amount_expected, c.status, c.amount_expected)
                  END) AS example
    FROM (SELECT * FROM canon.claims_yango_cabinet_14d x WHERE x.status IN ('paid', 'rejected')) c
    FULL JOIN canon.claims_settled s
      ON s.lead_source_pk = c.lead_source_pk AND s.milestone = c.milestone
    WHERE c.lead_source_pk IS NULL
       OR s.lead_source_pk IS NULL
       OR (c.status, c.amount_expected, c.currency, c.person_key, c.driver_id, c.lead_date, c.generated_at, c.paid_at, c.run_id)
          IS DISTINCT FROM
          (s.status, s.amount_expected, s.currency, s.person_key, s.driver_id, s.lead_date, s.generated_at, s.paid_at, s.run_id)
  ),
  -- The counters of the stored lead state (kept by a trigger, read by the scope figures
  -- and the snapshots) against a count of the rows themselves.
  state_counts AS (
    SELECT format('%s %s identity=%s driver=%s trips=%s rule=%s: counted %s, stored %s',
                  lead_date, limbo_stage, with_identity::text, with_driver::text, with_trips::text, with_rule::text,
                  coalesce(c.leads, 0), coalesce(s.leads, 0)) AS example
    FROM canon.cabinet_lead_state_counts c
    FULL JOIN (SELECT x.lead_date, x.limbo_stage, x.person_key IS NOT NULL AS with_identity,
                      x.driver_id IS NOT NULL AS with_driver, x.trips_in_window > 0 AS with_trips,
                      x.window_days IS NOT NULL AS with_rule, count(*) AS leads
               FROM canon.cabinet_lead_state x
               GROUP BY 1, 2, 3, 4, 5, 6) s
      USING (lead_date, limbo_stage, with_identity, with_driver, with_trips, with_rule)
    WHERE coalesce(c.leads, 0) <> coalesce(s.leads, 0)
  ),
  checks (ord, invariant, description, examples, n) AS (
    SELECT 1, 'ORPHAN_PERSON', 'persons in canon.identity_registry without any identity link',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM orphan ORDER BY example LIMIT 5) x), (SELECT count(*) FROM orphan)
    UNION ALL
    SELECT 2, 'LEAD_LINKED_AND_OPEN', 'leads both linked and OPEN in canon.identity_unmatched',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM linked_open ORDER BY example LIMIT 5) x), (SELECT count(*) FROM linked_open)
    UNION ALL
    SELECT 3, 'DRIVER_LINKED_TWICE', 'drivers with more than one identity link (a driver belongs to at most one person)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM driver_twice ORDER BY example LIMIT 5) x), (SELECT count(*) FROM driver_twice)
    UNION ALL
    SELECT 4, 'RUN_STUCK_RUNNING', 'runs RUNNING whose backend is gone, or for over 2 hours (the next run marks the former FAILED, abandoned)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM stuck ORDER BY example LIMIT 5) x), (SELECT count(*) FROM stuck)
    UNION ALL
    SELECT 5, 'LIMBO_ROW_COUNT', 'ops.v_cabinet_leads_limbo must have exactly one row per lead with lead_created_at',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM limbo_mismatch ORDER BY example LIMIT 5) x), (SELECT count(*) FROM limbo_mismatch)
    UNION ALL
    SELECT 6, 'SETTLED_CLAIM_UNGUARDED', 'the triggers that keep pipeline runs off paid and rejected claims, and record them, must exist and be enabled',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM settled_guard ORDER BY example LIMIT 5) x), (SELECT count(*) FROM settled_guard)
    UNION ALL
    SELECT 7, 'SETTLED_CLAIM_CHANGED', 'paid or rejected claims that differ from canon.claims_settled (changed, deleted or settled while the guard was off)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM settled_changed ORDER BY example LIMIT 5) x), (SELECT count(*) FROM settled_changed)
    UNION ALL
    SELECT 8, 'LEAD_STATE_COUNTS', 'canon.cabinet_lead_state_counts must count the stored lead state rows (by lead date, stage and flags)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM state_counts ORDER BY example LIMIT 5) x), (SELECT count(*) FROM state_counts)
  )
  SELECT c.invariant, c.n, coalesce(c.examples, '[]'::jsonb), c.description FROM checks c ORDER BY c.ord
$$;
COMMENT ON FUNCTION ops.check_invariants() IS
  'Every spec invariant with its violation count (0 = holds) and up to 5 examples: SELECT * FROM ops.check_invariants() WHERE violations > 0; cabinet-leads doctor exits 1 when any is violated.';
