-- canon.link_probabilistic: pipeline step 6b, right after canon.link_decisions. The leads of
-- the batch the rules left NO_CANDIDATES or WEAK_MATCH_ONLY (pg_temp.cabinet_decisions) go
-- through the probabilistic tier (canon.probabilistic_decisions), set-based: LINK writes
-- (canon.write_lead_links, the one link writer) the person (reused, or one new per driver),
-- lead and driver links with rule R4_PROBABILISTIC, score = probability x 100 and the
-- evidence per field, the origin, and resolves the
-- unmatched row link_decisions just wrote; REVIEW turns that row into PROBABLE_MATCH with the
-- tier's candidates and weights (details.probabilistic says why it was not linked); NONE
-- leaves the rules' reason. Returns step stats.
CREATE OR REPLACE FUNCTION canon.link_probabilistic(p_run_id bigint)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET client_min_messages = warning
SET jit = off
AS $$
DECLARE
  v_t timestamptz;
  v_decide_ms numeric;
  v_evaluated integer;
  v_new_persons integer;
  v_driver_links integer;
  v_lead_links integer;
  v_origins integer;
  v_review integer;
  v_flushed bigint;
  v_flush_ms numeric;
BEGIN
  -- the drivers indexed by this run, merged into the blocks' indexes before they are probed
  v_t := clock_timestamp();
  v_flushed := canon.flush_driver_index_keys();
  v_flush_ms := round((extract(epoch FROM clock_timestamp() - v_t) * 1000)::numeric, 1);
  v_t := clock_timestamp();
  DROP TABLE IF EXISTS pg_temp.cabinet_fs_decisions;
  CREATE TEMP TABLE cabinet_fs_decisions ON COMMIT DROP AS
  SELECT f.*, d.decision AS rules_decision, k.lead_created_at, dl.person_key AS driver_person_key
  FROM canon.probabilistic_decisions(ARRAY(
         SELECT d.lead_id FROM pg_temp.cabinet_decisions d
         WHERE d.batch_kind = 'NO_IDENTITY' AND d.decision IN ('NO_CANDIDATES', 'WEAK_MATCH_ONLY'))) f
  JOIN pg_temp.cabinet_decisions d ON d.lead_id = f.lead_id
  JOIN canon_internal.lead_keys k ON k.lead_id = f.lead_id
  LEFT JOIN canon.identity_links dl ON dl.source_table = 'drivers' AND dl.source_pk = f.driver_id
  -- only leads still OPEN (an IGNORED one stays as a person left it)
  JOIN canon.identity_unmatched u ON u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = f.lead_source_pk
                                 AND u.status = 'OPEN'
  WHERE f.outcome IN ('LINK', 'REVIEW');
  v_evaluated := (SELECT count(*) FROM pg_temp.cabinet_decisions d
                  WHERE d.batch_kind = 'NO_IDENTITY' AND d.decision IN ('NO_CANDIDATES', 'WEAK_MATCH_ONLY'));
  v_decide_ms := round((extract(epoch FROM clock_timestamp() - v_t) * 1000)::numeric, 1);

  -- LINK (canon.write_lead_links, the one link writer): persons, links, origins.
  v_t := clock_timestamp();
  DROP TABLE IF EXISTS pg_temp.cabinet_links_to_write;
  CREATE TEMP TABLE cabinet_links_to_write ON COMMIT DROP AS
  SELECT f.lead_source_pk, f.lead_created_at, f.driver_id, f.driver_person_key,
         'R4_PROBABILISTIC'::text AS match_rule, round(f.probability * 100, 2) AS match_score,
         CASE WHEN f.probability >= 0.9999 THEN 'HIGH' ELSE 'MEDIUM' END AS confidence_level,
         f.evidence || jsonb_build_object('rules', jsonb_build_array('R4_PROBABILISTIC'), 'rules_reason', f.rules_decision,
                                          'candidates', f.candidates) AS evidence,
         jsonb_build_object('fs_version', f.fs_version) AS driver_evidence
  FROM pg_temp.cabinet_fs_decisions f
  WHERE f.outcome = 'LINK';
  SELECT w.new_persons, w.driver_links, w.lead_links, w.origins
  INTO v_new_persons, v_driver_links, v_lead_links, v_origins
  FROM canon.write_lead_links(p_run_id) w;
  DROP TABLE pg_temp.cabinet_links_to_write;

  UPDATE canon.identity_unmatched u
  SET status = 'RESOLVED', resolved_at = now()
  FROM pg_temp.cabinet_fs_decisions f
  WHERE f.outcome = 'LINK'
    AND u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = f.lead_source_pk AND u.status = 'OPEN';

  -- REVIEW: the tier's candidates replace the rules' (a person decides from them).
  UPDATE canon.identity_unmatched u
  SET reason_code = 'PROBABLE_MATCH',
      candidates = f.candidates,
      details = u.details || jsonb_build_object('probabilistic', jsonb_build_object(
        'fs_version', f.fs_version, 'why_not_linked', f.why, 'probability', f.probability,
        'match_weight', f.match_weight, 'margin_bits', f.margin_bits, 'rules_reason', f.rules_decision,
        'in_words', f.evidence->>'in_words'))
  FROM pg_temp.cabinet_fs_decisions f
  WHERE f.outcome = 'REVIEW'
    AND u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = f.lead_source_pk AND u.status = 'OPEN';
  GET DIAGNOSTICS v_review = ROW_COUNT;

  RETURN jsonb_build_object(
    'leads_evaluated', v_evaluated,
    'newly_linked', v_lead_links,
    'new_persons', v_new_persons,
    'newly_driver_linked', v_driver_links,
    'origins_written', v_origins,
    'probable_match', v_review,
    'probable_match_by_why', (SELECT coalesce(jsonb_object_agg(r.why, r.n), '{}'::jsonb) FROM (
        SELECT f.why, count(*) AS n FROM pg_temp.cabinet_fs_decisions f WHERE f.outcome = 'REVIEW' GROUP BY f.why) r),
    'fs_version', (SELECT fv.version FROM canon.match_fs_versions fv WHERE fv.active),
    'index_pages_merged', v_flushed,
    'durations_ms', jsonb_build_object(
      'merge_index_keys', v_flush_ms,
      'decide', v_decide_ms,
      'link', round((extract(epoch FROM clock_timestamp() - v_t) * 1000)::numeric, 1)));
END
$$;
COMMENT ON FUNCTION canon.link_probabilistic(bigint) IS
  'Pipeline step 6b: the probabilistic tier on the batch''s NO_CANDIDATES / WEAK_MATCH_ONLY leads: LINK (R4_PROBABILISTIC, score = probability x 100, evidence per field), REVIEW (unmatched row becomes PROBABLE_MATCH with the tier''s candidates), NONE (untouched). Returns step stats.';
