-- Up Migration
-- snapshot of migrations/parts/0006_matching_tables.sql
-- Matching: the driver matching index and the lead keys, both derived data owned by
-- the product and refreshed by the pipeline (steps 4 and 5).

-- drivers.created_at / updated_at drive the incremental refresh of the index.
INSERT INTO canon.source_contract (table_name, column_name, type_family) VALUES
  ('drivers', 'created_at', 'timestamp'),
  ('drivers', 'updated_at', 'timestamp')
ON CONFLICT DO NOTHING;

CREATE TABLE canon.driver_index (
  driver_id          text PRIMARY KEY,
  park_id            text,
  phone_norm         text,
  license_norm       text,
  plate_norm         text,
  name_norm          text,
  hire_date          date,
  source_hash        text NOT NULL,
  source_changed_at  timestamp without time zone,
  indexed_at         timestamptz NOT NULL DEFAULT now(),
  indexed_run_id     bigint
);
CREATE INDEX driver_index_phone_idx ON canon.driver_index (phone_norm) WHERE phone_norm IS NOT NULL;
CREATE INDEX driver_index_license_idx ON canon.driver_index (license_norm) WHERE license_norm IS NOT NULL;
CREATE INDEX driver_index_plate_idx ON canon.driver_index (plate_norm) WHERE plate_norm IS NOT NULL;
COMMENT ON TABLE canon.driver_index IS 'Normalised matching keys of every driver of public.drivers, refreshed incrementally by each run (step 4).';

CREATE TABLE canon.driver_index_state (
  singleton          boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  watermark          timestamp without time zone,
  last_full_at       timestamptz,
  last_refresh_at    timestamptz,
  last_run_id        bigint
);
COMMENT ON TABLE canon.driver_index_state IS 'Watermark of the incremental driver index refresh and time of the last full reconciliation.';

CREATE TABLE canon.lead_keys (
  lead_id            integer PRIMARY KEY,
  lead_source_pk     text NOT NULL,
  lead_created_at    timestamp without time zone,
  lead_date          date,
  phone_norm         text,
  plate_norm         text,
  license_norm       text,
  name_norm          text,
  lead_name          text,
  source_hash        text NOT NULL,
  indexed_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX lead_keys_source_pk_idx ON canon.lead_keys (lead_source_pk, lead_id);
CREATE INDEX lead_keys_phone_idx ON canon.lead_keys (phone_norm) WHERE phone_norm IS NOT NULL;
CREATE INDEX lead_keys_lead_date_idx ON canon.lead_keys (lead_date);
COMMENT ON TABLE canon.lead_keys IS 'Normalised matching keys of every cabinet lead row (new rows added by each run; batch rows re-keyed).';

INSERT INTO canon.settings (key, value, description) VALUES
  ('driver_index_full_refresh_hours', '24', 'Hours between full reconciliations of canon.driver_index with public.drivers (removes deleted drivers, catches changes without updated_at).'),
  ('shared_phone_min_other_people', '2', 'A lead phone also used by at least this many other leads with dissimilar names is a shared (office) phone, never used by R1.')
ON CONFLICT DO NOTHING;

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
    'drivers_indexed', CASE WHEN v_full THEN (SELECT count(*) FROM canon.driver_index) END);
END
$$;
COMMENT ON FUNCTION canon.refresh_driver_index(bigint) IS 'Pipeline step 4: incremental (watermark) or full refresh of canon.driver_index from public.drivers. Returns step stats.';

-- snapshot of sql/canon/canon.refresh_lead_keys.sql
-- canon.refresh_lead_keys: normalised matching keys of cabinet lead rows into
-- canon.lead_keys: every row newer than the last one keyed, plus the given rows (the
-- run's batch), re-keyed only when their source values changed. Returns rows written.
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
    UNION ALL
    SELECT l.id, l.external_id, l.lead_created_at, l.park_phone, l.asset_plate_number,
           l.first_name, l.middle_name, l.last_name,
           md5(concat_ws(E'\x1f', l.external_id, l.lead_created_at::text, l.park_phone, l.asset_plate_number,
                         l.first_name, l.middle_name, l.last_name))
    FROM public.module_ct_cabinet_leads l
    WHERE l.id = ANY (p_lead_ids) AND l.id <= v_max_id
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

-- snapshot of sql/canon/canon.lead_candidates.sql
-- canon.lead_candidates: every driver candidate of the given lead rows, by rule, with
-- its score and name similarity, and whether it is kept as evidence or why it is not.
-- The one definition of the rules of SPEC 6, used by the batch matcher and by
-- ops.explain_lead. Reads canon.lead_keys and canon.driver_index.
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
AS $$
  WITH params AS (
    SELECT canon.setting('target_park_id') AS target_park,
           canon.setting('shared_phone_min_other_people')::integer AS min_other_people
  ),
  leads AS (
    SELECT k.* FROM canon.lead_keys k WHERE k.lead_id = ANY (p_lead_ids)
  ),
  -- A phone that other leads use under other names is an office phone, not a person's.
  -- Only phones with enough distinct names to be shared are compared name by name.
  phone_names AS (
    SELECT p.phone_norm, array_agg(o.name_norm) AS names
    FROM (SELECT DISTINCT l.phone_norm FROM leads l WHERE l.phone_norm IS NOT NULL) p
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
  lead_phone_sharing AS (
    SELECT l.lead_id,
           (SELECT count(*)
            FROM (SELECT 1
                  FROM unnest(pn.names) n (name_norm)
                  WHERE l.name_norm IS NULL
                     OR (n.name_norm <> l.name_norm AND canon.name_similarity(l.name_norm, n.name_norm) < 0.66)
                  LIMIT (SELECT pr.min_other_people FROM params pr)) x) AS other_people
    FROM leads l
    JOIN phone_names pn ON pn.phone_norm = l.phone_norm
  ),
  raw AS (
    SELECT l.lead_id, 'PHONE' AS rule_group, d.*
    FROM leads l JOIN canon.driver_index d ON d.phone_norm = l.phone_norm
    UNION ALL
    SELECT l.lead_id, 'LICENSE', d.*
    FROM leads l JOIN canon.driver_index d ON d.license_norm = l.license_norm
    UNION ALL
    SELECT l.lead_id, 'PLATE', d.*
    FROM leads l JOIN canon.driver_index d ON d.plate_norm = l.plate_norm
  ),
  scored AS (
    SELECT r.lead_id, l.lead_source_pk, r.rule_group, r.driver_id, r.park_id, r.name_norm,
           r.park_id IS NOT DISTINCT FROM p.target_park AS in_target_park,
           CASE WHEN l.name_norm = r.name_norm THEN 1.0000
                ELSE round(coalesce(canon.name_similarity(l.name_norm, r.name_norm), 0), 4) END AS name_similarity,
           r.hire_date,
           (r.hire_date IS NULL OR r.hire_date BETWEEN l.lead_date - 90 AND l.lead_date + 30) AS hire_in_window,
           coalesce(s.other_people, 0) >= p.min_other_people AS lead_phone_shared,
           NOT EXISTS (SELECT 1 FROM public.drivers x WHERE x.driver_id = r.driver_id) AS driver_deleted
    FROM raw r
    JOIN leads l ON l.lead_id = r.lead_id
    CROSS JOIN params p
    LEFT JOIN lead_phone_sharing s ON s.lead_id = r.lead_id
  ),
  -- Several drivers on one phone with different names are different people.
  driver_phone_sharing AS (
    SELECT x.lead_id,
           bool_or(x.name_norm IS DISTINCT FROM ref.name_norm
                   AND coalesce(canon.name_similarity(x.name_norm, ref.name_norm), 0) < 0.66) AS shared
    FROM scored x
    JOIN (
      SELECT y.lead_id, min(y.name_norm) AS name_norm
      FROM scored y
      WHERE y.rule_group = 'PHONE' AND NOT y.driver_deleted
      GROUP BY y.lead_id
      HAVING count(DISTINCT y.driver_id) > 1
    ) ref ON ref.lead_id = x.lead_id
    WHERE x.rule_group = 'PHONE' AND NOT x.driver_deleted
    GROUP BY x.lead_id
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
             WHEN sc.rule_group = 'PHONE' AND coalesce(ds.shared, false) THEN 'PHONE_SHARED_BY_DRIVERS'
             WHEN sc.rule_group = 'PLATE' AND sc.name_similarity < 0.66 THEN 'NAME_NOT_SIMILAR'
           END AS reject_reason
    FROM scored sc
    LEFT JOIN driver_phone_sharing ds ON ds.lead_id = sc.lead_id
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
  -- Shift drivers share a plate: the name decides when the best is clearly better (gap >= 0.15).
  plate_ranked AS (
    SELECT p.*,
           row_number() OVER w AS plate_pos,
           first_value(p.name_similarity) OVER w AS best_similarity,
           nth_value(p.name_similarity, 2) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS second_similarity
    FROM parked p
    WHERE p.rule_group = 'PLATE' AND p.reason IS NULL
    WINDOW w AS (PARTITION BY p.lead_id ORDER BY p.name_similarity DESC, p.driver_id)
  )
  SELECT p.lead_id, p.lead_source_pk, p.rule, p.rule_group, p.driver_id, p.park_id, p.in_target_park,
         CASE p.rule WHEN 'R1_PHONE_EXACT' THEN 95 WHEN 'R2_LICENSE_EXACT' THEN 92
                     WHEN 'R3_PLATE_EXACT_NAME_SIMILAR' THEN 85 ELSE 80 END::numeric AS score,
         CASE WHEN p.rule_group IN ('PHONE', 'LICENSE') THEN 'HIGH' ELSE 'MEDIUM' END AS confidence_level,
         p.name_similarity, p.hire_date, p.hire_in_window,
         final.reason IS NULL AS kept,
         final.reason AS reject_reason
  FROM parked p
  LEFT JOIN plate_ranked pr ON pr.lead_id = p.lead_id AND pr.driver_id = p.driver_id AND p.rule_group = 'PLATE'
  CROSS JOIN LATERAL (
    SELECT CASE
             WHEN pr.plate_pos > 1 AND pr.best_similarity - pr.second_similarity >= 0.15
               THEN 'NAME_LESS_SIMILAR_THAN_BEST'
             ELSE p.reason
           END AS reason
  ) final
$$;
COMMENT ON FUNCTION canon.lead_candidates(integer[]) IS 'All driver candidates of the given lead rows (canon.lead_keys.lead_id), by rule, with score, name similarity, kept or reject_reason.';

-- snapshot of sql/canon/canon.lead_decisions.sql
-- canon.lead_decisions: the decision of SPEC 6 for each given lead row, over all
-- candidates of all rules together: MATCH (with the strongest rule, every agreeing rule
-- and the values compared as evidence) or the reason code why not, with up to 5
-- candidates. Used by the batch matcher and by ops.explain_lead.
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
         jsonb_build_object(
           'phone_norm', d.phone_norm, 'plate_norm', d.plate_norm, 'license_norm', d.license_norm,
           'name_norm', d.name_norm, 'lead_date', d.lead_date,
           'missing', to_jsonb(array_remove(ARRAY[
             CASE WHEN d.phone_norm IS NULL THEN 'phone' END,
             CASE WHEN d.plate_norm IS NULL THEN 'plate' END,
             CASE WHEN d.name_norm IS NULL THEN 'name' END], NULL)),
           'shared_phone', d.shared_phone_hits > 0,
           'kept_drivers', d.kept_drivers),
         coalesce(t.candidates, '[]'::jsonb)
  FROM decided d
  LEFT JOIN top_candidates t ON t.lead_id = d.lead_id
  LEFT JOIN canon.driver_index i ON i.driver_id = d.best_driver AND d.decision = 'MATCH'
$$;
COMMENT ON FUNCTION canon.lead_decisions(integer[]) IS 'Decision per lead row: MATCH with driver, rule, score and evidence, or AMBIGUOUS / CONFLICT / WEAK_MATCH_ONLY / SHARED_KEY / NO_CANDIDATES / MISSING_KEYS with details and up to 5 candidates.';

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
    'durations_ms', v_ms)
  INTO v_stats;
  RETURN v_stats;
END
$$;
COMMENT ON FUNCTION canon.match_cabinet_leads(bigint, date, integer, boolean) IS 'Pipeline steps 5-6: key new leads, select the batch, decide, link set-based, record unmatched reasons. Returns step stats.';

-- snapshot of sql/ops/ops.explain_lead.sql
-- ops.explain_lead: "why is this lead (not) matched?" for one lead key: its normalised
-- keys, its current state (link or unmatched row), every candidate with rule, score and
-- why it was kept or rejected, and the decision the matcher would take now.
--   SELECT jsonb_pretty(ops.explain_lead('9f3a...'));
-- It keys the lead's rows first (canon.lead_keys), so it works on leads never run yet;
-- candidates come from the driver index as of its last refresh (shown in the result).
CREATE OR REPLACE FUNCTION ops.explain_lead(p_lead_source_pk text)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_ids integer[];
  v_rep integer;
  v_decision record;
  v_result jsonb;
BEGIN
  SELECT array_agg(l.id ORDER BY l.id) INTO v_ids
  FROM public.module_ct_cabinet_leads l
  WHERE canon.lead_source_pk(l.external_id, l.id) = p_lead_source_pk;
  IF v_ids IS NULL THEN
    RAISE EXCEPTION 'unknown lead %: no row of public.module_ct_cabinet_leads has this lead_source_pk', quote_literal(coalesce(p_lead_source_pk, 'NULL'))
      USING ERRCODE = 'P0002';
  END IF;
  v_rep := v_ids[1];
  PERFORM canon.refresh_lead_keys(v_ids);
  SELECT * INTO v_decision FROM canon.lead_decisions(ARRAY[v_rep]);

  SELECT jsonb_build_object(
    'lead_source_pk', p_lead_source_pk,
    'lead_rows', to_jsonb(v_ids),
    'driver_index_refreshed_at', (SELECT st.last_refresh_at FROM canon.driver_index_state st),
    'keys', (SELECT jsonb_build_object('lead_date', k.lead_date, 'lead_name', k.lead_name, 'phone_norm', k.phone_norm,
                                       'plate_norm', k.plate_norm, 'license_norm', k.license_norm, 'name_norm', k.name_norm)
             FROM canon.lead_keys k WHERE k.lead_id = v_rep),
    'link', (SELECT jsonb_build_object('person_key', k.person_key, 'match_rule', k.match_rule, 'match_score', k.match_score,
                                       'linked_at', k.linked_at, 'run_id', k.run_id,
                                       'driver_id', (SELECT pd.driver_id FROM canon.v_person_driver pd WHERE pd.person_key = k.person_key))
             FROM canon.identity_links k
             WHERE k.source_table = 'module_ct_cabinet_leads' AND k.source_pk = p_lead_source_pk),
    'unmatched', (SELECT jsonb_build_object('reason_code', u.reason_code, 'status', u.status, 'attempts', u.attempts,
                                            'first_attempt_at', u.first_attempt_at, 'last_attempt_at', u.last_attempt_at,
                                            'note', u.note)
                  FROM canon.identity_unmatched u
                  WHERE u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = p_lead_source_pk),
    'decision_now', jsonb_build_object('decision', v_decision.decision, 'driver_id', v_decision.driver_id,
                                       'match_rule', v_decision.match_rule, 'match_score', v_decision.match_score,
                                       'confidence_level', v_decision.confidence_level, 'evidence', v_decision.evidence),
    'candidates', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                      'driver_id', c.driver_id, 'park_id', c.park_id, 'in_target_park', c.in_target_park,
                      'rule', c.rule, 'score', c.score, 'name_similarity', c.name_similarity,
                      'hire_date', c.hire_date, 'hire_in_window', c.hire_in_window,
                      'kept', c.kept, 'reject_reason', c.reject_reason)
                    ORDER BY c.kept DESC, c.score DESC, c.name_similarity DESC, c.driver_id), '[]'::jsonb)
                   FROM canon.lead_candidates(ARRAY[v_rep]) c),
    'explanation', CASE v_decision.decision
      WHEN 'MATCH' THEN format('Matches driver %s by %s (score %s).', v_decision.driver_id, v_decision.match_rule, v_decision.match_score)
      WHEN 'MISSING_KEYS' THEN 'No usable phone, plate or licence: nothing to match on; fix the lead data or resolve it by hand (ops.resolve_lead).'
      WHEN 'SHARED_KEY' THEN 'Its only key is a phone shared by several people (an office phone): not evidence; needs a plate or a manual resolution.'
      WHEN 'WEAK_MATCH_ONLY' THEN 'Its plate is known but no driver of that plate has a similar name (>= 0.66): check the candidates and resolve by hand if one is right.'
      WHEN 'AMBIGUOUS' THEN 'Several drivers fit equally well: never resolved automatically; pick one with ops.resolve_lead.'
      WHEN 'CONFLICT' THEN 'Different rules point to different drivers: check the candidates and resolve by hand.'
      ELSE 'No driver has its phone or plate yet: it is retried every run (new drivers arrive daily).'
    END)
  INTO v_result;
  RETURN v_result;
END
$$;
COMMENT ON FUNCTION ops.explain_lead(text) IS 'Why a lead is (not) matched: normalised keys, state, every candidate with rule, score, kept or reject reason, and the decision now.';

-- snapshot of sql/ops/ops.v_shared_keys.sql
-- ops.v_shared_keys: key values used by several people, with their frequency: phones on
-- leads under different names (an office phone: never evidence for R1), phones on
-- several drivers, and plates on several drivers (shift drivers: R3 lets the name decide).
CREATE OR REPLACE VIEW ops.v_shared_keys AS
WITH lead_phones AS (
  SELECT k.phone_norm AS key_value, count(*) AS leads, count(DISTINCT k.name_norm) AS lead_names
  FROM canon.lead_keys k
  WHERE k.phone_norm IS NOT NULL
  GROUP BY k.phone_norm
  HAVING count(DISTINCT k.name_norm) > 1
),
driver_phones AS (
  SELECT i.phone_norm AS key_value, count(*) AS drivers, count(DISTINCT i.name_norm) AS driver_names
  FROM canon.driver_index i
  WHERE i.phone_norm IS NOT NULL
  GROUP BY i.phone_norm
  HAVING count(*) > 1
),
driver_plates AS (
  SELECT i.plate_norm AS key_value, count(*) AS drivers, count(DISTINCT i.name_norm) AS driver_names
  FROM canon.driver_index i
  WHERE i.plate_norm IS NOT NULL
  GROUP BY i.plate_norm
  HAVING count(*) > 1
)
SELECT 'PHONE'::text AS key_type,
       coalesce(lp.key_value, dp.key_value) AS key_value,
       coalesce(lp.leads, 0) AS leads,
       coalesce(lp.lead_names, 0) AS lead_distinct_names,
       coalesce(dp.drivers, 0) AS drivers,
       coalesce(dp.driver_names, 0) AS driver_distinct_names
FROM lead_phones lp
FULL JOIN driver_phones dp ON dp.key_value = lp.key_value
UNION ALL
SELECT 'PLATE', pl.key_value, 0, 0, pl.drivers, pl.driver_names
FROM driver_plates pl;
COMMENT ON VIEW ops.v_shared_keys IS 'Phones and plates used by several people (leads under different names, several drivers), with their frequency.';
