-- Up Migration
-- snapshot of migrations/parts/0021_cheap_counts_and_vacuum.sql
-- Each run counts the claims of its scope by status (step 7 stats): from the index alone.
CREATE INDEX IF NOT EXISTS claims_yango_cabinet_14d_lead_date_status_idx
  ON canon.claims_yango_cabinet_14d (lead_date, status);
DROP INDEX IF EXISTS canon.claims_yango_cabinet_14d_lead_date_idx;

-- Tables every run updates a few thousand rows of (pending flags, retry bookkeeping,
-- lead state rows) are vacuumed after 2 % of their rows changed rather than 20 %: the
-- partial indexes the runs read (lead_keys_pending_idx, identity_unmatched_retry_due_idx)
-- otherwise keep the entries of every row cleared since the last vacuum, which each run
-- reads again (measured: 198k dead entries of lead_keys_pending_idx, 60 ms of an idle run).
ALTER TABLE canon.lead_keys SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 1000);
ALTER TABLE canon.identity_unmatched SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 1000);
ALTER TABLE canon.cabinet_lead_state SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 1000);

-- snapshot of sql/canon/canon.token_similarity.sql
-- canon.token_similarity: the score of canon.name_similarity on two token sets as
-- canon.name_tokens returns them (sorted, de-duplicated). The matcher compares names it
-- has already normalised (lead_keys.name_norm, driver_index.name_norm): their tokens are
-- string_to_array(name_norm, ' ') (normalize_name is idempotent), so it calls this
-- directly and does not normalise each name again for every pair (2 of the 3 parts of a
-- pair's cost).
CREATE OR REPLACE FUNCTION canon.token_similarity(a text[], b text[])
RETURNS numeric
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
AS $$
-- Token score on the canon.name_tokens sets A and B (raw or normalised names alike):
--   shared  = LEAST(tokens of A with a partner in B, tokens of B with a partner in A)
--   partner = the same token, or one typo apart when both have 5+ letters: edit
--             distance 1 (levenshtein) or two adjacent letters swapped (VINCENT/VINCNET)
--   jaccard = shared / (|A| + |B| - shared)
--   overlap = shared / min(|A|, |B|) when the shorter name has 2+ tokens (JUAN PEREZ is
--             all of PEREZ GOMEZ JUAN CARLOS), else shared / max(|A|, |B|) (JUAN alone
--             is not JUAN PEREZ)
--   score   = round((jaccard + overlap) / 2, 4); 1 for equal sets; 0 when either name
--             is NULL or has no token. Never below the SPEC 5 token score.
-- Tokens are at most 200 characters (canon.normalize_name), under levenshtein's 255
-- (longer ones are never compared by edit distance).
DECLARE
  na     integer := COALESCE(pg_catalog.cardinality(a), 0);
  nb     integer := COALESCE(pg_catalog.cardinality(b), 0);
  hit_a  integer := 0;
  hit_b  boolean[];
  shared numeric;
  x      text;
  y      text;
  lx     integer;
  ly     integer;
  d      integer;
  k      integer;
  hit    boolean;
  pair   boolean;
BEGIN
  IF na = 0 OR nb = 0 THEN
    RETURN 0.0000;
  END IF;
  IF a = b THEN
    RETURN 1.0000;
  END IF;
  hit_b := pg_catalog.array_fill(false, ARRAY[nb]);
  FOR i IN 1 .. na LOOP
    x := a[i];
    lx := pg_catalog.length(x);
    hit := false;
    FOR j IN 1 .. nb LOOP
      y := b[j];
      ly := pg_catalog.length(y);
      pair := x = y;
      IF NOT pair AND lx >= 5 AND ly >= 5 AND lx <= 255 AND ly <= 255 AND pg_catalog.abs(lx - ly) <= 1 THEN
        d := public.levenshtein_less_equal(x, y, 2);
        IF d <= 1 THEN
          pair := true;
        ELSIF d = 2 AND lx = ly THEN
          -- one adjacent transposition: first difference at k, swapped, rest equal
          k := 1;
          WHILE k <= lx AND pg_catalog.substr(x, k, 1) = pg_catalog.substr(y, k, 1) LOOP
            k := k + 1;
          END LOOP;
          pair := k < lx
            AND pg_catalog.substr(x, k, 1) = pg_catalog.substr(y, k + 1, 1)
            AND pg_catalog.substr(x, k + 1, 1) = pg_catalog.substr(y, k, 1)
            AND pg_catalog.substr(x, k + 2) = pg_catalog.substr(y, k + 2);
        END IF;
      END IF;
      IF pair THEN
        hit := true;
        hit_b[j] := true;
      END IF;
    END LOOP;
    IF hit THEN
      hit_a := hit_a + 1;
    END IF;
  END LOOP;
  shared := LEAST(hit_a, pg_catalog.cardinality(pg_catalog.array_positions(hit_b, true)));
  RETURN pg_catalog.round(
    (shared / (na + nb - shared)
     + shared / CASE WHEN LEAST(na, nb) >= 2 THEN LEAST(na, nb) ELSE GREATEST(na, nb) END) / 2,
    4);
END
$$;
COMMENT ON FUNCTION canon.token_similarity(text[], text[]) IS
  'Name similarity 0..1 of two token sets as canon.name_tokens returns them (the score of canon.name_similarity, without normalising again). 0 when either set is NULL or empty.';

-- snapshot of sql/canon/canon.name_similarity.sql
-- canon.name_similarity: how alike two person names are, 0..1 (SPEC 5), for lead
-- matching (R3/R3B at >= 0.66, AMBIGUOUS when the best two are < 0.15 apart).
-- The names are tokenised (canon.name_tokens) and scored by canon.token_similarity (the
-- formula is written there): (jaccard + overlap) / 2 of the token sets, tokens of 5+
-- letters one typo apart counting as shared.
CREATE OR REPLACE FUNCTION canon.name_similarity(p_name_a text, p_name_b text)
RETURNS numeric
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
AS $$
-- PL/pgSQL on purpose: it keeps the tokeniser's plan cached between calls, where a
-- SQL-language version re-plans the nested canon.normalize_name call on every pair
-- (measured per pair: 16 us against 470 us on PostgreSQL 15, 15 us against 174 us on 18).
BEGIN
  RETURN canon.token_similarity(canon.name_tokens(p_name_a), canon.name_tokens(p_name_b));
END
$$;
COMMENT ON FUNCTION canon.name_similarity(text, text) IS
  'Name similarity 0..1 on the token sets of canon.name_tokens (raw or normalised names): (jaccard + overlap) / 2, overlap on the shorter name when it has 2+ tokens; tokens of 5+ letters one typo apart (edit or adjacent swap) count as shared. 0 when either name is NULL or has no token. Symmetric; never raises.';

-- snapshot of sql/canon/canon.lead_candidates.sql
-- canon.lead_candidates: every driver candidate of the given lead rows, by rule, with
-- its score and name similarity, and whether it is kept as evidence or why it is not.
-- The one definition of the rules of SPEC 6, used by the batch matcher and by
-- ops.explain_lead. Reads canon.lead_keys and canon.driver_index. Names are compared as
-- the normalised names both store (canon.token_similarity on their tokens: the score of
-- canon.name_similarity without normalising each name again for every pair).
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
