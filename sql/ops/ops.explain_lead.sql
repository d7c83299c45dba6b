-- ops.explain_lead: "why is this lead (not) matched?" for one lead key: its normalised
-- keys, its current state (link or unmatched row), every candidate with rule, score and
-- why it was kept or rejected, and the decision the matcher would take now (with the
-- probabilistic tier's, probabilistic_now, for a lead the rules leave behind).
--   SELECT jsonb_pretty(ops.explain_lead('9f3a...'));
-- It keys the lead's rows first (canon_internal.lead_keys), so it works on leads never run yet;
-- candidates come from the driver index as of its last refresh (shown in the result),
-- with the driver's name, phone and plate as public.drivers holds them. `scope` says
-- whether the runs still evaluate the lead (canon.last_run_scope): one dated before their
-- days_back is not retried, and the explanation says so. `explanation` is the sentence
-- for people (`cabinet-leads explain KEY` prints it first).
-- SECURITY DEFINER (its owner's rights, a fixed search_path, every name qualified): a
-- cabinet_leads_reader may call it, who may neither read the canon tables nor write the
-- lead keys it refreshes; the keys are a cache of the lead row (what the next run writes
-- anyway), and the lead key is only ever compared, never run as SQL. EXECUTE is granted
-- to the product's roles only (canon.grant_product_roles).
CREATE OR REPLACE FUNCTION ops.explain_lead(p_lead_source_pk text)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- keying the lead's rows drops temp tables "IF EXISTS": no NOTICE for that in psql
SET client_min_messages = warning
AS $$
DECLARE
  v_ids integer[];
  v_rep integer;
  v_decision record;
  v_fs record;
  v_scope record;
  v_lead_date date;
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
  -- the probabilistic tier, on the leads the rules leave behind (as the run does)
  SELECT * INTO v_fs FROM canon.probabilistic_decisions(
    CASE WHEN v_decision.decision IN ('NO_CANDIDATES', 'WEAK_MATCH_ONLY') THEN ARRAY[v_rep] ELSE '{}'::integer[] END);
  SELECT * INTO v_scope FROM canon.last_run_scope();
  SELECT k.lead_date INTO v_lead_date FROM canon_internal.lead_keys k WHERE k.lead_id = v_rep;

  SELECT jsonb_build_object(
    'lead_source_pk', p_lead_source_pk,
    'lead_rows', to_jsonb(v_ids),
    'driver_index_refreshed_at', (SELECT st.last_refresh_at FROM canon_internal.driver_index_state st),
    'keys', (SELECT jsonb_build_object('lead_date', k.lead_date, 'lead_name', k.lead_name, 'phone_norm', k.phone_norm,
                                       'plate_norm', k.plate_norm, 'license_norm', k.license_norm, 'name_norm', k.name_norm)
             FROM canon_internal.lead_keys k WHERE k.lead_id = v_rep),
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
    'scope', jsonb_build_object('days_back', v_scope.days_back, 'scope_from', v_scope.scope_from,
                               'as_of_run', v_scope.run_id, 'in_scope', v_lead_date >= v_scope.scope_from),
    'decision_now', jsonb_build_object('decision', v_decision.decision, 'driver_id', v_decision.driver_id,
                                       'match_rule', v_decision.match_rule, 'match_score', v_decision.match_score,
                                       'confidence_level', v_decision.confidence_level, 'evidence', v_decision.evidence),
    'probabilistic_now', CASE WHEN v_fs.lead_id IS NOT NULL THEN jsonb_build_object(
                           'outcome', v_fs.outcome, 'why_not_linked', v_fs.why, 'driver_id', v_fs.driver_id,
                           'probability', v_fs.probability, 'match_weight', v_fs.match_weight, 'margin_bits', v_fs.margin_bits,
                           'fs_version', v_fs.fs_version, 'in_words', v_fs.evidence->>'in_words', 'candidates', v_fs.candidates) END,
    'candidates', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                      'driver_id', c.driver_id, 'park_id', c.park_id, 'in_target_park', c.in_target_park,
                      'rule', c.rule, 'score', c.score, 'name_similarity', c.name_similarity,
                      'hire_date', c.hire_date, 'hire_in_window', c.hire_in_window,
                      'kept', c.kept, 'reject_reason', c.reject_reason, 'name_veto', c.name_veto,
                      'driver_name', d.driver_name, 'phone', d.phone, 'plate', d.plate)
                    ORDER BY c.kept DESC, c.score DESC, c.name_similarity DESC, c.driver_id), '[]'::jsonb)
                   FROM canon.lead_candidates(ARRAY[v_rep]) c
                   LEFT JOIN LATERAL (
                     SELECT coalesce(nullif(btrim(x.full_name), ''),
                                     nullif(btrim(concat_ws(' ', x.first_name, x.middle_name, x.last_name)), '')) AS driver_name,
                            x.phone, coalesce(x.car_number, x.car_normalized_number) AS plate
                     FROM public.drivers x
                     WHERE x.driver_id = c.driver_id
                     LIMIT 1
                   ) d ON true),
    'explanation', CASE v_decision.decision
      WHEN 'MATCH' THEN format('Matches driver %s by %s (score %s).', v_decision.driver_id, v_decision.match_rule, v_decision.match_score)
      WHEN 'MISSING_KEYS' THEN 'No usable phone, plate or licence: nothing to match on; fix the lead data or resolve it by hand (ops.resolve_lead).'
      WHEN 'SHARED_KEY' THEN 'Its only key is a phone shared by several people (an office phone): not evidence; needs a plate or a manual resolution.'
      WHEN 'WEAK_MATCH_ONLY' THEN 'Its plate is known but no driver of that plate has a similar name (>= 0.66), or the similar one differs by a given name or a surname (a relative: name_veto): check the candidates and resolve by hand if one is right.'
      WHEN 'AMBIGUOUS' THEN 'Several drivers fit equally well: never resolved automatically; pick one with ops.resolve_lead.'
      WHEN 'CONFLICT' THEN 'Different rules point to different drivers: check the candidates and resolve by hand.'
      ELSE CASE
        WHEN v_lead_date >= v_scope.scope_from THEN
          'No driver has its phone or plate yet: the next run after a driver with that phone or plate arrives tries it again.'
        WHEN v_lead_date IS NULL THEN
          'No driver has its phone or plate yet, and the lead has no lead date (lead_created_at): no run selects it; fix the lead row or resolve it by hand (ops.resolve_lead).'
        ELSE format('No driver has its phone or plate yet, and its lead date %s is before the runs'' scope (days_back %s: from %s): it is not retried. To retry it once: cabinet-leads reconcile --days-back %s (CALL ops.reconcile_cabinet_leads_pipeline(p_days_back => %s)).',
                    v_lead_date, v_scope.days_back, v_scope.scope_from,
                    canon.business_today() - v_lead_date, canon.business_today() - v_lead_date)
      END
    END
    || CASE v_fs.outcome
         WHEN 'LINK' THEN format(' The probabilistic tier links driver %s (R4_PROBABILISTIC, probability %s): %s.',
                                 v_fs.driver_id, v_fs.probability, v_fs.evidence->>'in_words')
         WHEN 'REVIEW' THEN format(' The probabilistic tier finds a probable driver %s (probability %s, not linked: %s): a person decides (PROBABLE_MATCH, cabinet-leads review): %s.',
                                   v_fs.driver_id, v_fs.probability, v_fs.why, v_fs.evidence->>'in_words')
         ELSE '' END)
  INTO v_result;
  RETURN v_result;
END
$$;
COMMENT ON FUNCTION ops.explain_lead(text) IS 'Why a lead is (not) matched: normalised keys, state, every candidate with rule, score, kept or reject reason, and the decision now. SECURITY DEFINER: readers may call it.';
