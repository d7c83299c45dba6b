-- canon.lead_candidates: every driver candidate of the given lead rows, by rule, with
-- its score and name similarity, and whether it is kept as evidence or why it is not.
-- The one definition of the rules of SPEC 6, used by the batch matcher and by
-- ops.explain_lead. Reads canon_internal.lead_keys and canon_internal.driver_index, always by key: a batch
-- (at most a run's limit) is probed into the driver index, never joined by hashing the
-- whole index, which the planner chose at 1M drivers from its estimates, nor with JIT
-- (10,000 leads at 1M: 2.2 s as planned, 0.86 s without JIT, 0.59 s by key). Names are
-- compared as the normalised names both store (canon.token_similarity on their tokens:
-- the score of canon.name_similarity without normalising each name again per pair).
-- A pair whose score alone is a name match but whose names differ by a given name or a
-- surname (SPEC 5, relatives) is vetoed (canon.name_veto, roles from both records' fields
-- and canon.name_token_usage): looked up only for the few pairs scoring in [name_similarity_min, 1).
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
  reject_reason text,
  name_veto jsonb
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
           canon.setting('shared_phone_min_other_people')::integer AS min_other_people,
           mp.name_similarity_min AS sim_min, mp.name_gap_min AS gap_min,
           mp.hire_days_before_lead AS hire_before, mp.hire_days_after_lead AS hire_after
    FROM canon.match_parameters mp
  ),
  -- Below, no two derived sets of the size of the batch are joined: each step is per lead,
  -- a window over the candidates of a lead, or a lookup in the few shared phones. (This
  -- function is planned without knowing the batch size; such a join became a nested loop
  -- over both: quadratic, 1.5 s for 10,000 leads against 60 ms for 2,000.)
  batch AS (
    SELECT k.* FROM canon_internal.lead_keys k WHERE k.lead_id = ANY (p_lead_ids)
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
      FROM canon_internal.lead_keys o
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
                   CROSS JOIN LATERAL (
                     SELECT string_to_array(b.name_norm, ' ') AS lt, string_to_array(n.name_norm, ' ') AS ot) t
                   CROSS JOIN LATERAL (SELECT canon.token_similarity(t.lt, t.ot) AS sim) s
                   WHERE pn.phone_norm = b.phone_norm
                     AND (b.name_norm IS NULL
                          OR (n.name_norm <> b.name_norm
                              AND (s.sim < (SELECT pr.sim_min FROM params pr)
                                   -- a relative's name is another person's (SPEC 5)
                                   OR canon.name_veto_of(t.lt, b.lead_id, NULL, t.ot, NULL, NULL) IS NOT NULL)))
                   LIMIT (SELECT pr.min_other_people FROM params pr)) x)
           END AS other_people
    FROM batch b
  ),
  raw AS (
    SELECT l.lead_id, l.lead_source_pk, l.name_norm AS lead_name_norm, l.lead_date, l.other_people,
           'PHONE' AS rule_group, d.driver_id, d.park_id, d.name_norm, d.hire_date
    FROM leads l JOIN canon_internal.driver_index d ON d.phone_norm = l.phone_norm
    UNION ALL
    SELECT l.lead_id, l.lead_source_pk, l.name_norm, l.lead_date, l.other_people,
           'LICENSE', d.driver_id, d.park_id, d.name_norm, d.hire_date
    FROM leads l JOIN canon_internal.driver_index d ON d.license_norm = l.license_norm
    UNION ALL
    SELECT l.lead_id, l.lead_source_pk, l.name_norm, l.lead_date, l.other_people,
           'PLATE', d.driver_id, d.park_id, d.name_norm, d.hire_date
    FROM leads l JOIN canon_internal.driver_index d ON d.plate_norm = l.plate_norm
  ),
  scored AS (
    SELECT r.lead_id, r.lead_source_pk, r.rule_group, r.driver_id, r.park_id, r.name_norm, r.lead_name_norm,
           r.park_id IS NOT DISTINCT FROM p.target_park AS in_target_park,
           CASE WHEN r.lead_name_norm = r.name_norm THEN 1.0000
                ELSE round(coalesce(canon.token_similarity(string_to_array(r.lead_name_norm, ' '), string_to_array(r.name_norm, ' ')), 0), 4)
           END AS name_similarity,
           r.hire_date,
           (r.hire_date IS NULL OR r.hire_date BETWEEN r.lead_date - p.hire_before AND r.lead_date + p.hire_after) AS hire_in_window,
           coalesce(r.other_people, 0) >= p.min_other_people AS lead_phone_shared,
           x.present IS NULL AS driver_deleted,
           lbl.present IS NOT NULL AS not_this_driver
    FROM raw r
    CROSS JOIN params p
    -- a person said this lead is not this driver (canon.lead_driver_labels): one probe per candidate
    LEFT JOIN LATERAL (SELECT true AS present FROM canon.lead_driver_labels lb
                       WHERE lb.lead_source_pk = r.lead_source_pk AND lb.driver_id = r.driver_id) lbl ON true
    -- One probe per candidate, a plain column after: a NOT EXISTS here was planned as a
    -- hashed subplan, one scan of public.drivers per later reference (3 x 30 ms of every
    -- batch at 200k drivers).
    LEFT JOIN LATERAL (SELECT true AS present FROM public.drivers x WHERE x.driver_id = r.driver_id LIMIT 1) x ON true
  ),
  -- A plate's driver whose name scores as a match may still be a relative (SPEC 5): the
  -- veto is looked up for those pairs only (a score of 1 leaves nothing to differ).
  vetted AS (
    SELECT sc.*,
           CASE WHEN sc.rule_group = 'PLATE' AND sc.name_similarity >= p.sim_min AND sc.name_similarity < 1 THEN
             canon.name_veto_of(string_to_array(sc.lead_name_norm, ' '), sc.lead_id, NULL,
                                string_to_array(sc.name_norm, ' '), NULL, sc.driver_id)
           END AS veto
    FROM scored sc
    CROSS JOIN params p
  ),
  -- Several drivers on one phone with different names are different people: when a lead's
  -- phone finds 2+ drivers (not deleted), each is compared with the one of the smallest
  -- name (a relative's name is a different person's too).
  phone_grouped AS (
    SELECT sc.*,
           first_value(sc.driver_id) OVER (PARTITION BY sc.lead_id
                                           ORDER BY (sc.rule_group = 'PHONE' AND NOT sc.driver_deleted) DESC,
                                                    sc.name_norm, sc.driver_id) AS phone_ref_driver,
           min(sc.name_norm) FILTER (WHERE sc.rule_group = 'PHONE' AND NOT sc.driver_deleted)
             OVER (PARTITION BY sc.lead_id) AS phone_ref_name,
           count(*) FILTER (WHERE sc.rule_group = 'PHONE' AND NOT sc.driver_deleted)
             OVER (PARTITION BY sc.lead_id) AS phone_drivers
    FROM vetted sc
  ),
  phone_compared AS (
    SELECT g.*,
           g.phone_drivers > 1
             AND bool_or(CASE WHEN g.rule_group = 'PHONE' AND NOT g.driver_deleted AND g.phone_drivers > 1
                                   AND g.name_norm IS DISTINCT FROM g.phone_ref_name
                              THEN (SELECT x.sim < (SELECT pr.sim_min FROM params pr)
                                           OR (x.sim < 1
                                               AND canon.name_veto_of(x.dt, NULL, g.driver_id, x.rt, NULL, g.phone_ref_driver) IS NOT NULL)
                                    FROM (SELECT string_to_array(g.name_norm, ' ') AS dt, string_to_array(g.phone_ref_name, ' ') AS rt) t
                                    CROSS JOIN LATERAL (SELECT coalesce(canon.token_similarity(t.dt, t.rt), 0) AS sim, t.dt, t.rt) x)
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
             WHEN sc.not_this_driver THEN 'NOT_THIS_DRIVER'
             WHEN sc.rule_group = 'PHONE' AND sc.lead_phone_shared THEN 'PHONE_SHARED_BY_LEADS'
             WHEN sc.rule_group = 'PHONE' AND coalesce(sc.phone_shared_by_drivers, false) THEN 'PHONE_SHARED_BY_DRIVERS'
             WHEN sc.rule_group = 'PLATE' AND sc.name_similarity < (SELECT pr.sim_min FROM params pr) THEN 'NAME_NOT_SIMILAR'
             WHEN sc.rule_group = 'PLATE' AND sc.veto IS NOT NULL THEN 'NAME_VETO'
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
  -- name_gap_min). Ranked among the lead's plate candidates still standing (the partition's
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
         mr.score::numeric AS score,
         mr.confidence_level,
         p.name_similarity, p.hire_date, p.hire_in_window,
         final.reason IS NULL AS kept,
         final.reason AS reject_reason,
         CASE WHEN p.veto IS NOT NULL THEN jsonb_build_object('lead', p.veto->'a', 'driver', p.veto->'b') END AS name_veto
  FROM plate_ranked p
  JOIN canon.match_rules mr ON mr.rule = p.rule
  CROSS JOIN LATERAL (
    SELECT CASE
             WHEN p.plate_standing AND p.plate_pos > 1 AND p.best_similarity - p.second_similarity >= (SELECT pr.gap_min FROM params pr)
               THEN 'NAME_LESS_SIMILAR_THAN_BEST'
             ELSE p.reason
           END AS reason
  ) final
$$;
COMMENT ON FUNCTION canon.lead_candidates(integer[]) IS 'All driver candidates of the given lead rows (canon_internal.lead_keys.lead_id), by rule, with score, name similarity, kept or reject_reason, and name_veto ({"lead": {token: role}, "driver": {...}}) when a plate driver''s name is a relative''s (NAME_VETO).';
