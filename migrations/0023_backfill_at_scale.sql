-- Up Migration
-- snapshot of sql/canon/canon.lead_candidates.sql
-- canon.lead_candidates: every driver candidate of the given lead rows, by rule, with
-- its score and name similarity, and whether it is kept as evidence or why it is not.
-- The one definition of the rules of SPEC 6, used by the batch matcher and by
-- ops.explain_lead. Reads canon.lead_keys and canon.driver_index, always by key: a batch
-- (at most a run's limit) is probed into the driver index, never joined by hashing the
-- whole index, which the planner chose at 1M drivers from its estimates, nor with JIT
-- (10,000 leads at 1M: 2.2 s as planned, 0.86 s without JIT, 0.59 s by key). Names are
-- compared as the normalised names both store (canon.token_similarity on their tokens:
-- the score of canon.name_similarity without normalising each name again per pair).
CREATE OR REPLACE FUNCTION canon.lead_candidates(p_lead_ids integer[])
RETURNS TABLE (
  lead_id integer,
  lead_source_pk text,
  rule text,
  rule_group text,
  driver_id text,
  park_id text,
  in_target_park boolean,
  score numeric,
  confidence_level text,
  name_similarity numeric,
  hire_date date,
  hire_in_window boolean,
  kept boolean,
  reject_reason text
)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
  WITH params AS (
    SELECT canon.setting('target_park_id') AS target_park,
           canon.setting('shared_phone_min_other_people')::integer AS min_other_people
  ),
  -- Below, no two derived sets of the size of the batch are joined: each step is per lead,
  -- a window over the candidates of a lead, or a lookup in the few shared phones. (This
  -- function is planned without knowing the batch size; such a join became a nested loop
  -- over both: quadratic, 1.5 s for 10,000 leads against 60 ms for 2,000.)
  batch AS (
    SELECT k.* FROM canon.lead_keys k WHERE k.lead_id = ANY (p_lead_ids)
  ),
  -- A phone that other leads use under other names is an office phone, not a person's.
  -- Only phones with enough distinct names to be shared (few) are compared name by name,
  -- each read once however many leads of the batch carry it (MATERIALIZED: not inlined
  -- into the per-lead lookup below, which would read a shared phone's leads per lead).
  phone_names AS MATERIALIZED (
    SELECT p.phone_norm, array_agg(o.name_norm) AS names
    FROM (SELECT DISTINCT b.phone_norm FROM batch b WHERE b.phone_norm IS NOT NULL) p
    CROSS JOIN LATERAL (
      SELECT DISTINCT o.name_norm
      FROM canon.lead_keys o
      WHERE o.phone_norm = p.phone_norm AND o.name_norm IS NOT NULL
      LIMIT 50
    ) o
    GROUP BY p.phone_norm
    HAVING count(*) > (SELECT pr.min_other_people FROM params pr)
  ),
  -- Enough is enough: stop comparing once min_other_people other people are found.
  leads AS (
    SELECT b.*,
           CASE WHEN b.phone_norm IS NOT NULL THEN (
             SELECT count(*)
             FROM (SELECT 1
                   FROM phone_names pn
                   CROSS JOIN unnest(pn.names) n (name_norm)
                   WHERE pn.phone_norm = b.phone_norm
                     AND (b.name_norm IS NULL
                          OR (n.name_norm <> b.name_norm
                              AND canon.token_similarity(string_to_array(b.name_norm, ' '), string_to_array(n.name_norm, ' ')) < 0.66))
                   LIMIT (SELECT pr.min_other_people FROM params pr)) x)
           END AS other_people
    FROM batch b
  ),
  raw AS (
    SELECT l.lead_id, l.lead_source_pk, l.name_norm AS lead_name_norm, l.lead_date, l.other_people,
           'PHONE' AS rule_group, d.driver_id, d.park_id, d.name_norm, d.hire_date
    FROM leads l JOIN canon.driver_index d ON d.phone_norm = l.phone_norm
    UNION ALL
    SELECT l.lead_id, l.lead_source_pk, l.name_norm, l.lead_date, l.other_people,
           'LICENSE', d.driver_id, d.park_id, d.name_norm, d.hire_date
    FROM leads l JOIN canon.driver_index d ON d.license_norm = l.license_norm
    UNION ALL
    SELECT l.lead_id, l.lead_source_pk, l.name_norm, l.lead_date, l.other_people,
           'PLATE', d.driver_id, d.park_id, d.name_norm, d.hire_date
    FROM leads l JOIN canon.driver_index d ON d.plate_norm = l.plate_norm
  ),
  scored AS (
    SELECT r.lead_id, r.lead_source_pk, r.rule_group, r.driver_id, r.park_id, r.name_norm,
           r.park_id IS NOT DISTINCT FROM p.target_park AS in_target_park,
           CASE WHEN r.lead_name_norm = r.name_norm THEN 1.0000
                ELSE round(coalesce(canon.token_similarity(string_to_array(r.lead_name_norm, ' '), string_to_array(r.name_norm, ' ')), 0), 4)
           END AS name_similarity,
           r.hire_date,
           (r.hire_date IS NULL OR r.hire_date BETWEEN r.lead_date - 90 AND r.lead_date + 30) AS hire_in_window,
           coalesce(r.other_people, 0) >= p.min_other_people AS lead_phone_shared,
           NOT EXISTS (SELECT 1 FROM public.drivers x WHERE x.driver_id = r.driver_id) AS driver_deleted
    FROM raw r
    CROSS JOIN params p
  ),
  -- Several drivers on one phone with different names are different people: when a lead's
  -- phone finds 2+ drivers (not deleted), each is compared with the smallest of their names.
  phone_grouped AS (
    SELECT sc.*,
           min(sc.name_norm) FILTER (WHERE sc.rule_group = 'PHONE' AND NOT sc.driver_deleted)
             OVER (PARTITION BY sc.lead_id) AS phone_ref_name,
           count(*) FILTER (WHERE sc.rule_group = 'PHONE' AND NOT sc.driver_deleted)
             OVER (PARTITION BY sc.lead_id) AS phone_drivers
    FROM scored sc
  ),
  phone_compared AS (
    SELECT g.*,
           g.phone_drivers > 1
             AND bool_or(CASE WHEN g.rule_group = 'PHONE' AND NOT g.driver_deleted
                              THEN g.name_norm IS DISTINCT FROM g.phone_ref_name
                                   AND coalesce(canon.token_similarity(string_to_array(g.name_norm, ' '),
                                                                       string_to_array(g.phone_ref_name, ' ')), 0) < 0.66
                              ELSE false END)
                   OVER (PARTITION BY g.lead_id) AS phone_shared_by_drivers
    FROM phone_grouped g
  ),
  classified AS (
    SELECT sc.*,
           CASE sc.rule_group
             WHEN 'PHONE' THEN 'R1_PHONE_EXACT'
             WHEN 'LICENSE' THEN 'R2_LICENSE_EXACT'
             ELSE CASE WHEN sc.hire_in_window THEN 'R3_PLATE_EXACT_NAME_SIMILAR' ELSE 'R3B_PLATE_NAME_NO_DATE' END
           END AS rule,
           CASE
             WHEN sc.driver_deleted THEN 'DRIVER_DELETED'
             WHEN sc.rule_group = 'PHONE' AND sc.lead_phone_shared THEN 'PHONE_SHARED_BY_LEADS'
             WHEN sc.rule_group = 'PHONE' AND coalesce(sc.phone_shared_by_drivers, false) THEN 'PHONE_SHARED_BY_DRIVERS'
             WHEN sc.rule_group = 'PLATE' AND sc.name_similarity < 0.66 THEN 'NAME_NOT_SIMILAR'
           END AS reject_reason
    FROM phone_compared sc
  ),
  -- The target park is preferred: other parks count only when no rule finds a target-park driver.
  parked AS (
    SELECT c.*,
           CASE
             WHEN c.reject_reason IS NULL AND NOT c.in_target_park
                  AND bool_or(c.reject_reason IS NULL AND c.in_target_park) OVER (PARTITION BY c.lead_id)
               THEN 'OTHER_PARK_TARGET_PREFERRED'
             ELSE c.reject_reason
           END AS reason
    FROM classified c
  ),
  -- Shift drivers share a plate: the name decides when the best is clearly better (gap >=
  -- 0.15). Ranked among the lead's plate candidates still standing (the partition's
  -- second key); the other rows' ranks are not used.
  plate_ranked AS (
    SELECT p.*,
           (p.rule_group = 'PLATE' AND p.reason IS NULL) AS plate_standing,
           row_number() OVER w AS plate_pos,
           first_value(p.name_similarity) OVER w AS best_similarity,
           nth_value(p.name_similarity, 2) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS second_similarity
    FROM parked p
    WINDOW w AS (PARTITION BY p.lead_id, (p.rule_group = 'PLATE' AND p.reason IS NULL) ORDER BY p.name_similarity DESC, p.driver_id)
  )
  SELECT p.lead_id, p.lead_source_pk, p.rule, p.rule_group, p.driver_id, p.park_id, p.in_target_park,
         CASE p.rule WHEN 'R1_PHONE_EXACT' THEN 95 WHEN 'R2_LICENSE_EXACT' THEN 92
                     WHEN 'R3_PLATE_EXACT_NAME_SIMILAR' THEN 85 ELSE 80 END::numeric AS score,
         CASE WHEN p.rule_group IN ('PHONE', 'LICENSE') THEN 'HIGH' ELSE 'MEDIUM' END AS confidence_level,
         p.name_similarity, p.hire_date, p.hire_in_window,
         final.reason IS NULL AS kept,
         final.reason AS reject_reason
  FROM plate_ranked p
  CROSS JOIN LATERAL (
    SELECT CASE
             WHEN p.plate_standing AND p.plate_pos > 1 AND p.best_similarity - p.second_similarity >= 0.15
               THEN 'NAME_LESS_SIMILAR_THAN_BEST'
             ELSE p.reason
           END AS reason
  ) final
$$;
COMMENT ON FUNCTION canon.lead_candidates(integer[]) IS 'All driver candidates of the given lead rows (canon.lead_keys.lead_id), by rule, with score, name similarity, kept or reject_reason.';

-- snapshot of sql/canon/canon.lead_decisions.sql
-- canon.lead_decisions: the decision of SPEC 6 for each given lead row, over all
-- candidates of all rules together: MATCH (with the strongest rule, every agreeing rule
-- and the values compared as evidence) or the reason code why not, with its details and
-- up to 5 candidates (what canon.identity_unmatched keeps; NULL for a match, built only
-- for the leads not matched). Used by the batch matcher and by ops.explain_lead.
CREATE OR REPLACE FUNCTION canon.lead_decisions(p_lead_ids integer[])
RETURNS TABLE (
  lead_id integer,
  lead_source_pk text,
  decision text,
  driver_id text,
  match_rule text,
  match_score numeric,
  confidence_level text,
  evidence jsonb,
  details jsonb,
  candidates jsonb
)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
  WITH leads AS (
    SELECT k.* FROM canon.lead_keys k WHERE k.lead_id = ANY (p_lead_ids)
  ),
  cand AS (
    SELECT c.*,
           CASE c.rule WHEN 'R1_PHONE_EXACT' THEN 1 WHEN 'R2_LICENSE_EXACT' THEN 2
                       WHEN 'R3_PLATE_EXACT_NAME_SIMILAR' THEN 3 ELSE 4 END AS rule_rank
    FROM canon.lead_candidates(p_lead_ids) c
  ),
  -- Everything per lead is aggregated in one pass (no correlated scans of cand).
  per_group AS (
    SELECT c.lead_id, c.rule_group, count(DISTINCT c.driver_id) AS drivers
    FROM cand c
    WHERE c.kept
    GROUP BY c.lead_id, c.rule_group
  ),
  per_lead AS (
    SELECT c.lead_id,
           count(DISTINCT c.driver_id) FILTER (WHERE c.kept) AS kept_drivers,
           count(*) FILTER (WHERE NOT c.kept AND c.reject_reason IN ('PHONE_SHARED_BY_LEADS', 'PHONE_SHARED_BY_DRIVERS')) AS shared_phone_hits,
           count(*) FILTER (WHERE NOT c.kept AND c.reject_reason = 'NAME_NOT_SIMILAR') AS weak_plate_hits,
           jsonb_agg(DISTINCT c.rule) FILTER (WHERE c.kept) AS kept_rules,
           jsonb_agg(jsonb_build_object('driver_id', c.driver_id, 'rule', c.rule, 'reject_reason', c.reject_reason))
             FILTER (WHERE NOT c.kept) AS rejected
    FROM cand c
    GROUP BY c.lead_id
  ),
  summary AS (
    SELECT l.lead_id,
           coalesce(p.kept_drivers, 0) AS kept_drivers,
           coalesce(p.shared_phone_hits, 0) AS shared_phone_hits,
           coalesce(p.weak_plate_hits, 0) AS weak_plate_hits,
           p.kept_rules,
           coalesce(p.rejected, '[]'::jsonb) AS rejected,
           coalesce(g.ambiguous, false) AS some_rule_ambiguous
    FROM leads l
    LEFT JOIN per_lead p ON p.lead_id = l.lead_id
    LEFT JOIN (SELECT pg.lead_id, bool_or(pg.drivers > 1) AS ambiguous FROM per_group pg GROUP BY pg.lead_id) g
      ON g.lead_id = l.lead_id
  ),
  best AS (
    SELECT DISTINCT ON (c.lead_id) c.*
    FROM cand c
    WHERE c.kept
    ORDER BY c.lead_id, c.rule_rank, c.name_similarity DESC, c.driver_id
  ),
  decided AS (
    SELECT l.*, s.kept_drivers, s.shared_phone_hits, s.weak_plate_hits, s.kept_rules, s.rejected,
           b.driver_id AS best_driver,
           b.rule AS best_rule, b.score AS best_score, b.confidence_level AS best_confidence,
           b.name_similarity AS best_similarity, b.hire_date AS best_hire_date, b.park_id AS best_park,
           b.in_target_park AS best_in_target_park,
           CASE
             WHEN s.kept_drivers = 0 THEN
               CASE
                 WHEN l.phone_norm IS NULL AND l.plate_norm IS NULL AND l.license_norm IS NULL THEN 'MISSING_KEYS'
                 WHEN s.weak_plate_hits > 0 THEN 'WEAK_MATCH_ONLY'
                 WHEN s.shared_phone_hits > 0 AND l.plate_norm IS NULL AND l.license_norm IS NULL THEN 'SHARED_KEY'
                 ELSE 'NO_CANDIDATES'
               END
             WHEN s.some_rule_ambiguous THEN 'AMBIGUOUS'
             WHEN s.kept_drivers > 1 THEN 'CONFLICT'
             ELSE 'MATCH'
           END AS decision
    FROM leads l
    JOIN summary s ON s.lead_id = l.lead_id
    LEFT JOIN best b ON b.lead_id = l.lead_id
  ),
  top_candidates AS (
    SELECT c.lead_id,
           jsonb_agg(jsonb_build_object(
             'driver_id', c.driver_id, 'park_id', c.park_id, 'rule', c.rule, 'score', c.score,
             'name_similarity', c.name_similarity, 'hire_date', c.hire_date, 'kept', c.kept,
             'reject_reason', c.reject_reason) ORDER BY c.pos) AS candidates
    FROM (
      SELECT c.*, row_number() OVER (PARTITION BY c.lead_id ORDER BY c.kept DESC, c.rule_rank, c.name_similarity DESC, c.driver_id) AS pos
      FROM cand c
      -- only where they are kept: the leads not matched (a match keeps its evidence)
      JOIN decided d ON d.lead_id = c.lead_id AND d.decision <> 'MATCH'
    ) c
    WHERE c.pos <= 5
    GROUP BY c.lead_id
  )
  SELECT d.lead_id, d.lead_source_pk, d.decision,
         CASE WHEN d.decision = 'MATCH' THEN d.best_driver END,
         CASE WHEN d.decision = 'MATCH' THEN d.best_rule END,
         CASE WHEN d.decision = 'MATCH' THEN d.best_score END,
         CASE WHEN d.decision = 'MATCH' THEN d.best_confidence END,
         CASE WHEN d.decision = 'MATCH' THEN jsonb_build_object(
           'rules', d.kept_rules,
           'lead', jsonb_build_object('lead_id', d.lead_id, 'phone_norm', d.phone_norm, 'plate_norm', d.plate_norm,
                                      'name_norm', d.name_norm, 'lead_date', d.lead_date),
           'driver', jsonb_build_object('driver_id', i.driver_id, 'park_id', i.park_id, 'phone_norm', i.phone_norm,
                                        'plate_norm', i.plate_norm, 'license_norm', i.license_norm,
                                        'name_norm', i.name_norm, 'hire_date', i.hire_date),
           'name_similarity', d.best_similarity,
           'hire_window', jsonb_build_array(d.lead_date - 90, d.lead_date + 30),
           'target_park', d.best_in_target_park,
           'rejected', d.rejected)
         END,
         CASE WHEN d.decision <> 'MATCH' THEN jsonb_build_object(
           'phone_norm', d.phone_norm, 'plate_norm', d.plate_norm, 'license_norm', d.license_norm,
           'name_norm', d.name_norm, 'lead_date', d.lead_date,
           'missing', to_jsonb(array_remove(ARRAY[
             CASE WHEN d.phone_norm IS NULL THEN 'phone' END,
             CASE WHEN d.plate_norm IS NULL THEN 'plate' END,
             CASE WHEN d.name_norm IS NULL THEN 'name' END], NULL)),
           'shared_phone', d.shared_phone_hits > 0,
           'kept_drivers', d.kept_drivers)
         END,
         CASE WHEN d.decision <> 'MATCH' THEN coalesce(t.candidates, '[]'::jsonb) END
  FROM decided d
  LEFT JOIN top_candidates t ON t.lead_id = d.lead_id
  LEFT JOIN canon.driver_index i ON i.driver_id = d.best_driver AND d.decision = 'MATCH'
$$;
COMMENT ON FUNCTION canon.lead_decisions(integer[]) IS 'Decision per lead row: MATCH with driver, rule, score and evidence, or AMBIGUOUS / CONFLICT / WEAK_MATCH_ONLY / SHARED_KEY / NO_CANDIDATES / MISSING_KEYS with details and up to 5 candidates (details and candidates NULL for a match).';

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
SET jit = off
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
  v_state_found boolean;
  v_retry_checked_from timestamptz;
  v_retry_checked_to timestamptz;
  v_retry_check text;
  v_marked_due integer := 0;
  v_changed_keys bigint;
  v_probe_by_key boolean;
  v_hashjoin text;
  v_mergejoin text;
  v_window bigint;
  v_window_rows bigint;
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
  -- * never evaluated: among the rows listed in canon.lead_keys_pending (new rows, and
  --   keys whose link or unmatched row was removed). A pending key found evaluated
  --   (linked, or unmatched OPEN / IGNORED) leaves the list. All in-scope rows of a
  --   never-evaluated key are pending (new rows are; removals list every row of the key).
  -- * OPEN unmatched leads due for a retry (retry_due, partial index), the least recently
  --   attempted first: only a change of a driver sharing one of their keys can change
  --   their outcome, so with nothing new the batch is empty (targeted retries below);
  -- * only-limbo: linked leads whose person has no driver (NO_DRIVER).
  v_t := clock_timestamp();
  -- Targeted retries: the OPEN leads that share a key (phone, plate, licence: the keys
  -- canon.lead_candidates joins on, normalised alike, so '+51 977...' and '977...' are one
  -- phone) with a driver indexed or re-indexed since the last check (driver_index.indexed_at,
  -- set by every upsert of canon.refresh_driver_index), or with a key a driver lost since
  -- (re-indexed with other keys, or removed: canon.driver_index_key_changes; a lead that had
  -- it as a candidate, e.g. AMBIGUOUS or CONFLICT, may now match), are marked retry_due.
  -- No change: two probes of the end of an index. Changes: the distinct changed keys, then
  -- index probes of canon.lead_keys by phone, plate and licence. The check covers changes up
  -- to now() (the transaction start: rows this run's refresh wrote are visible, later ones
  -- have a later indexed_at), which becomes retry_checked_at. Never checked: every OPEN
  -- lead is due.
  SELECT true, s.changed_at, s.retry_checked_at
  INTO v_state_found, v_index_changed_at, v_retry_checked_from
  FROM canon.driver_index_state s
  FOR UPDATE;
  v_retry_checked_to := now();
  IF v_retry_checked_from IS NULL THEN
    v_retry_check := 'all_open';
    UPDATE canon.identity_unmatched u SET retry_due = true
    WHERE u.status = 'OPEN' AND NOT u.retry_due;
    GET DIAGNOSTICS v_marked_due = ROW_COUNT;
  -- (max() is one probe of the end of each index; an EXISTS could be planned as a sequential
  -- scan that stops at the first hit, and read the whole table when there is none)
  ELSIF (SELECT max(i.indexed_at) FROM canon.driver_index i) > v_retry_checked_from
        OR (SELECT max(c.logged_at) FROM canon.driver_index_key_changes c) > v_retry_checked_from THEN
    v_retry_check := 'changed_keys';
    DROP TABLE IF EXISTS pg_temp.cabinet_changed_keys;
    CREATE TEMP TABLE cabinet_changed_keys ON COMMIT DROP AS
    SELECT DISTINCT x.kind, x.key
    FROM (SELECT i.phone_norm, i.license_norm, i.plate_norm
          FROM canon.driver_index i WHERE i.indexed_at > v_retry_checked_from
          UNION ALL
          SELECT c.phone_norm, c.license_norm, c.plate_norm
          FROM canon.driver_index_key_changes c WHERE c.logged_at > v_retry_checked_from) d
    CROSS JOIN LATERAL (VALUES ('PHONE', d.phone_norm), ('LICENSE', d.license_norm), ('PLATE', d.plate_norm)) x (kind, key)
    WHERE x.key IS NOT NULL;
    -- Few keys against the lead keys (the usual case): probe canon.lead_keys and
    -- identity_unmatched by key, hash and merge joins off for that statement (the planner
    -- would rather read both whole, as in canon.refresh_driver_index). Many (a bulk change
    -- upstream): the planner chooses, with the temp table's statistics. (Measured at 60k
    -- lead rows: 6,000 keys by probes 10 ms, by hash joins 35 ms; a probe costs about
    -- what reading 3 lead rows does, hence under a quarter.)
    v_changed_keys := (SELECT count(*) FROM pg_temp.cabinet_changed_keys);
    v_probe_by_key := v_changed_keys * 4 < (SELECT c.reltuples FROM pg_class c WHERE c.oid = 'canon.lead_keys'::regclass);
    IF v_probe_by_key THEN
      v_hashjoin := current_setting('enable_hashjoin');
      v_mergejoin := current_setting('enable_mergejoin');
      PERFORM set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true);
    ELSE
      ANALYZE pg_temp.cabinet_changed_keys;
    END IF;
    UPDATE canon.identity_unmatched u SET retry_due = true
    FROM (SELECT k.lead_source_pk FROM pg_temp.cabinet_changed_keys c
          JOIN canon.lead_keys k ON k.phone_norm = c.key AND k.phone_norm IS NOT NULL WHERE c.kind = 'PHONE'
          UNION
          SELECT k.lead_source_pk FROM pg_temp.cabinet_changed_keys c
          JOIN canon.lead_keys k ON k.plate_norm = c.key AND k.plate_norm IS NOT NULL WHERE c.kind = 'PLATE'
          UNION
          SELECT k.lead_source_pk FROM pg_temp.cabinet_changed_keys c
          JOIN canon.lead_keys k ON k.license_norm = c.key AND k.license_norm IS NOT NULL WHERE c.kind = 'LICENSE') m
    WHERE u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = m.lead_source_pk
      AND u.status = 'OPEN' AND NOT u.retry_due;
    GET DIAGNOSTICS v_marked_due = ROW_COUNT;
    IF v_probe_by_key THEN
      PERFORM set_config('enable_hashjoin', v_hashjoin, true), set_config('enable_mergejoin', v_mergejoin, true);
    END IF;
  ELSE
    v_retry_check := 'no_change';
  END IF;
  -- Checked: the lost keys are no longer needed.
  DELETE FROM canon.driver_index_key_changes c WHERE c.logged_at <= v_retry_checked_to;
  IF v_state_found THEN
    UPDATE canon.driver_index_state s SET retry_checked_at = v_retry_checked_to;
  ELSE
    INSERT INTO canon.driver_index_state (singleton, retry_checked_at) VALUES (true, v_retry_checked_to);
  END IF;
  v_ms := v_ms || jsonb_build_object('mark_retries_due', round((extract(epoch FROM clock_timestamp() - v_t) * 1000)::numeric, 1));

  v_t := clock_timestamp();
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
    FROM canon.lead_keys_pending q
    WHERE q.lead_date >= p_scope_from
    ORDER BY q.lead_id
    LIMIT v_window;
    GET DIAGNOSTICS v_window_rows = ROW_COUNT;
    DROP TABLE IF EXISTS pg_temp.cabinet_pending;
    CREATE TEMP TABLE cabinet_pending ON COMMIT DROP AS
    SELECT p.lead_source_pk, p.lead_id, p.rows_with_key,
           k.source_pk IS NOT NULL AS linked, u.status, u.last_attempt_at
    FROM (SELECT k.lead_source_pk, min(k.lead_id) AS lead_id, count(*) AS rows_with_key
          FROM pg_temp.cabinet_pending_rows q
          JOIN canon.lead_keys k ON k.lead_id = q.lead_id
          WHERE k.lead_date >= p_scope_from
          GROUP BY k.lead_source_pk) p
    LEFT JOIN canon.identity_links k
      ON k.source_table = 'module_ct_cabinet_leads' AND k.source_pk = p.lead_source_pk
    LEFT JOIN canon.identity_unmatched u
      ON u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = p.lead_source_pk;
    EXIT WHEN v_window_rows < v_window
           OR (SELECT count(*) FROM pg_temp.cabinet_pending p
               WHERE NOT p.linked AND (p.status IS NULL OR p.status = 'RESOLVED')) >= p_limit;
    v_window := v_window * 4;
  END LOOP;
  ANALYZE pg_temp.cabinet_pending;
  DELETE FROM canon.lead_keys_pending q
  USING canon.lead_keys k, pg_temp.cabinet_pending p
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
  DELETE FROM canon.lead_keys_pending q
  USING canon.lead_keys k, (SELECT DISTINCT d.lead_source_pk FROM pg_temp.cabinet_decisions d WHERE d.batch_kind = 'NO_IDENTITY') d
  WHERE k.lead_source_pk = d.lead_source_pk AND q.lead_id = k.lead_id;
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
    'retries_marked_due', v_marked_due,
    'retry_check', v_retry_check,
    'retry_changed_keys', v_changed_keys,
    'pending_flags_cleared', v_pending_cleared + v_evaluated_cleared,
    'durations_ms', v_ms)
  INTO v_stats;
  RETURN v_stats;
END
$$;
COMMENT ON FUNCTION canon.match_cabinet_leads(bigint, date, integer, boolean) IS 'Pipeline steps 5-6: key new leads, select the batch, decide, link set-based, record unmatched reasons. Returns step stats.';

-- snapshot of sql/canon/canon.refresh_driver_index.sql
-- canon.refresh_driver_index: pipeline step 4. Brings canon.driver_index up to date with
-- public.drivers: incrementally (drivers whose updated_at/created_at is past the
-- watermark, re-normalised only when their source values changed), and fully every
-- driver_index_full_refresh_hours (also removes deleted drivers). Returns step stats.
-- The drivers to look at are first materialised in a temp table and ANALYZEd, so the
-- planner knows how many there are (the range predicate on coalesce(updated_at,
-- created_at) could not be estimated), and incrementally public.drivers is searched with
-- its updated_at index (rows without updated_at fall back to created_at). When they are
-- few against the index (incremental, under a tenth), canon.driver_index is probed by
-- key (hash and merge joins off for that statement) instead of being read whole.
-- Whenever a row of the index is written or removed, driver_index_state.changed_at is
-- set to now() (reported by runs). Which unmatched leads are worth retrying is decided by
-- canon.match_cabinet_leads from the rows indexed since its last check (indexed_at) and
-- the keys drivers lost (canon.driver_index_key_changes, written here).
-- The watermark has an hour of overlap for rows committed late with an older updated_at.
-- Row versions the previous refresh could see (their xmin visible to its snapshot,
-- driver_index_state.refreshed_snapshot) were read by it and are skipped, so the overlap
-- costs the late commits, not every driver of the last hour (after a bulk load of
-- drivers that was most of an idle run). Changed without a new updated_at and outside
-- the hour: found by the full refresh.
CREATE OR REPLACE FUNCTION canon.refresh_driver_index(p_run_id bigint)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
  v_state canon.driver_index_state%ROWTYPE;
  v_full boolean;
  v_since timestamp;
  v_scanned integer;
  v_upserted integer;
  v_deleted integer := 0;
  v_watermark timestamp;
  v_changed_at timestamptz;
  v_probe_by_key boolean;
  v_hashjoin text;
  v_mergejoin text;
  v_seen pg_snapshot;
  v_snapshot pg_snapshot;
  v_unseen_ids text[];
BEGIN
  SELECT * INTO v_state FROM canon.driver_index_state FOR UPDATE;
  v_full := NOT FOUND OR v_state.last_full_at IS NULL OR v_state.watermark IS NULL
            OR v_state.last_full_at < now() - make_interval(hours => canon.setting('driver_index_full_refresh_hours')::integer);
  -- An hour of overlap catches rows committed late with an older updated_at.
  v_since := CASE WHEN v_full THEN NULL ELSE v_state.watermark - interval '1 hour' END;
  v_seen := CASE WHEN NOT v_full THEN v_state.refreshed_snapshot END;
  -- Taken before the drivers are read: what it sees, the reads below see too.
  v_snapshot := pg_current_snapshot();
  -- Drivers of the overlap with a row version not seen yet; each is then looked at with
  -- all its rows of the overlap (the newest wins, as always: a late commit may be the
  -- older row of a driver_id that has two).
  IF v_seen IS NOT NULL THEN
    v_unseen_ids := ARRAY(
      SELECT DISTINCT d.driver_id
      FROM public.drivers d
      WHERE (d.updated_at >= v_since OR d.updated_at IS NULL)
        AND coalesce(d.updated_at, d.created_at) >= v_since
        AND NOT pg_visible_in_snapshot(canon.xid8_of_recent(d.xmin, pg_snapshot_xmax(v_snapshot)), v_seen));
  END IF;

  -- The drivers to look at (all of them on a full refresh), newest row per driver_id.
  -- (updated_at >= since OR updated_at IS NULL) is what the updated_at index can serve;
  -- the coalesce keeps the exact rule (created_at when updated_at is NULL).
  DROP TABLE IF EXISTS pg_temp.driver_index_source;
  CREATE TEMP TABLE driver_index_source ON COMMIT DROP AS
  SELECT s.*,
         md5(concat_ws(E'\x1f', s.park_id, s.phone, s.license_normalized_number, s.license_number,
                       s.car_normalized_number, s.car_number, s.full_name, s.first_name, s.middle_name,
                       s.last_name, s.hire_date::text)) AS source_hash
  FROM (
    SELECT DISTINCT ON (d.driver_id)
           d.driver_id, d.park_id, d.phone, d.license_normalized_number, d.license_number,
           d.car_normalized_number, d.car_number, d.full_name, d.first_name, d.middle_name, d.last_name, d.hire_date,
           coalesce(d.updated_at, d.created_at) AS changed_at
    FROM public.drivers d
    WHERE nullif(btrim(d.driver_id), '') IS NOT NULL
      AND length(d.driver_id) <= 200 -- garbage ids (10 kB) cannot be indexed: counted below
      AND (v_full
           OR ((d.updated_at >= v_since OR d.updated_at IS NULL)
               AND coalesce(d.updated_at, d.created_at) >= v_since
               AND (v_seen IS NULL OR d.driver_id = ANY (v_unseen_ids))))
    ORDER BY d.driver_id, coalesce(d.updated_at, d.created_at) DESC NULLS LAST
  ) s;
  ANALYZE pg_temp.driver_index_source;
  v_scanned := (SELECT count(*) FROM pg_temp.driver_index_source);

  -- Few drivers against a large index: probe it by key. The planner would rather hash the
  -- whole index (it prices each probe as a random read); on a full refresh it should.
  v_probe_by_key := NOT v_full
    AND v_scanned * 10 < (SELECT c.reltuples FROM pg_class c WHERE c.oid = 'canon.driver_index'::regclass);
  IF v_probe_by_key THEN
    v_hashjoin := current_setting('enable_hashjoin');
    v_mergejoin := current_setting('enable_mergejoin');
    PERFORM set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true);
  END IF;

  -- Every written row gets indexed_at = now(): canon.match_cabinet_leads finds the changed
  -- drivers by it (driver_index_indexed_at_idx) and marks due the OPEN leads sharing a key.
  -- The keys a re-indexed driver no longer has are logged (driver_index_key_changes): a
  -- lead that had it as a candidate by such a key is due too.
  WITH changed AS (
    SELECT h.driver_id, h.park_id,
           canon.normalize_phone(h.phone) AS phone_norm,
           canon.normalize_license(coalesce(nullif(btrim(h.license_normalized_number), ''), h.license_number)) AS license_norm,
           canon.normalize_plate(coalesce(nullif(btrim(h.car_normalized_number), ''), h.car_number)) AS plate_norm,
           canon.normalize_name(coalesce(nullif(btrim(h.full_name), ''), concat_ws(' ', h.first_name, h.middle_name, h.last_name))) AS name_norm,
           h.hire_date, h.source_hash, h.changed_at,
           i.driver_id IS NOT NULL AS was_indexed,
           i.phone_norm AS old_phone_norm, i.license_norm AS old_license_norm, i.plate_norm AS old_plate_norm
    FROM pg_temp.driver_index_source h
    LEFT JOIN canon.driver_index i ON i.driver_id = h.driver_id
    WHERE i.driver_id IS NULL OR i.source_hash <> h.source_hash
  ),
  upserted AS (
    INSERT INTO canon.driver_index AS i (
      driver_id, park_id, phone_norm, license_norm, plate_norm, name_norm, hire_date,
      source_hash, source_changed_at, indexed_at, indexed_run_id)
    SELECT c.driver_id, c.park_id, c.phone_norm, c.license_norm, c.plate_norm, c.name_norm,
           c.hire_date, c.source_hash, c.changed_at, now(), p_run_id
    FROM changed c
    ON CONFLICT (driver_id) DO UPDATE
      SET park_id = excluded.park_id, phone_norm = excluded.phone_norm, license_norm = excluded.license_norm,
          plate_norm = excluded.plate_norm, name_norm = excluded.name_norm, hire_date = excluded.hire_date,
          source_hash = excluded.source_hash, source_changed_at = excluded.source_changed_at,
          indexed_at = excluded.indexed_at, indexed_run_id = excluded.indexed_run_id
    RETURNING 1
  ),
  lost_keys AS (
    INSERT INTO canon.driver_index_key_changes (driver_id, change, phone_norm, license_norm, plate_norm, logged_at, run_id)
    SELECT c.driver_id, 'KEYS_CHANGED',
           CASE WHEN c.old_phone_norm IS DISTINCT FROM c.phone_norm THEN c.old_phone_norm END,
           CASE WHEN c.old_license_norm IS DISTINCT FROM c.license_norm THEN c.old_license_norm END,
           CASE WHEN c.old_plate_norm IS DISTINCT FROM c.plate_norm THEN c.old_plate_norm END,
           now(), p_run_id
    FROM changed c
    WHERE c.was_indexed
      AND ((c.old_phone_norm IS NOT NULL AND c.old_phone_norm IS DISTINCT FROM c.phone_norm)
           OR (c.old_license_norm IS NOT NULL AND c.old_license_norm IS DISTINCT FROM c.license_norm)
           OR (c.old_plate_norm IS NOT NULL AND c.old_plate_norm IS DISTINCT FROM c.plate_norm))
    RETURNING 1
  )
  SELECT (SELECT count(*) FROM upserted), (SELECT max(h.changed_at) FROM pg_temp.driver_index_source h)
  INTO v_upserted, v_watermark;

  IF v_probe_by_key THEN
    PERFORM set_config('enable_hashjoin', v_hashjoin, true), set_config('enable_mergejoin', v_mergejoin, true);
  END IF;

  IF v_full THEN
    -- The keys of removed drivers are logged: the leads that had one as a candidate are due.
    WITH removed AS (
      DELETE FROM canon.driver_index i
      WHERE NOT EXISTS (SELECT 1 FROM public.drivers d WHERE d.driver_id = i.driver_id)
      RETURNING i.driver_id, i.phone_norm, i.license_norm, i.plate_norm
    ),
    logged AS (
      INSERT INTO canon.driver_index_key_changes (driver_id, change, phone_norm, license_norm, plate_norm, logged_at, run_id)
      SELECT r.driver_id, 'REMOVED', r.phone_norm, r.license_norm, r.plate_norm, now(), p_run_id
      FROM removed r
      WHERE num_nonnulls(r.phone_norm, r.license_norm, r.plate_norm) > 0
      RETURNING 1
    )
    SELECT count(*) INTO v_deleted FROM removed;
  END IF;
  DROP TABLE pg_temp.driver_index_source;

  -- The index changed (reported; retries are targeted by canon.match_cabinet_leads).
  IF v_upserted > 0 OR v_deleted > 0 THEN
    v_changed_at := now();
  END IF;

  -- (written on every run: the snapshot moves even when nothing changed)
  INSERT INTO canon.driver_index_state AS s (singleton, watermark, last_full_at, last_refresh_at, last_run_id, changed_at, refreshed_snapshot)
  VALUES (true, v_watermark, CASE WHEN v_full THEN now() END, now(), p_run_id, v_changed_at, v_snapshot)
  ON CONFLICT (singleton) DO UPDATE
    SET watermark = greatest(s.watermark, excluded.watermark),
        last_full_at = coalesce(excluded.last_full_at, s.last_full_at),
        last_refresh_at = excluded.last_refresh_at,
        last_run_id = excluded.last_run_id,
        changed_at = coalesce(excluded.changed_at, s.changed_at),
        refreshed_snapshot = excluded.refreshed_snapshot;

  RETURN jsonb_build_object(
    'mode', CASE WHEN v_full THEN 'full' ELSE 'incremental' END,
    'drivers_scanned', v_scanned,
    'drivers_reindexed', v_upserted,
    'drivers_removed', v_deleted,
    'drivers_indexed', CASE WHEN v_full THEN (SELECT count(*) FROM canon.driver_index) END,
    'drivers_skipped_bad_id', CASE WHEN v_full THEN (
      SELECT count(*) FROM public.drivers d
      WHERE nullif(btrim(d.driver_id), '') IS NULL OR length(d.driver_id) > 200) END,
    'index_changed', v_changed_at IS NOT NULL);
END
$$;
COMMENT ON FUNCTION canon.refresh_driver_index(bigint) IS 'Pipeline step 4: incremental (watermark) or full refresh of canon.driver_index from public.drivers; sets driver_index_state.changed_at when rows were written or removed and logs the keys drivers lost (canon.driver_index_key_changes). Returns step stats.';

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
SET jit = off
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
