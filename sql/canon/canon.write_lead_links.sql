-- canon.write_lead_links: the one writer of the links a run decides, for the rules
-- (canon.link_decisions) and the probabilistic tier (canon.link_probabilistic) alike. It
-- reads pg_temp.cabinet_links_to_write, one row per lead to link (lead_source_pk,
-- lead_created_at, driver_id, driver_person_key: the driver's person if it has one,
-- match_rule, match_score, confidence_level, evidence, driver_evidence: what the driver's
-- link records besides the lead it came with), and writes set-based: a person per driver
-- that has none (created only with its links, from the driver's earliest lead), the
-- driver links of those persons and the lead links in one statement (the statement
-- triggers of identity_links run once), and the origin of each person the leads brought.
-- The unmatched rows are the callers' (each keeps its own attempt bookkeeping). Returns
-- the counts written.
CREATE OR REPLACE FUNCTION canon.write_lead_links(p_run_id bigint)
RETURNS TABLE (new_persons integer, driver_links integer, lead_links integer, origins integer)
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET client_min_messages = warning
SET jit = off
AS $$
DECLARE
  v_new_persons integer;
  v_driver_links integer;
  v_lead_links integer;
  v_origins integer;
BEGIN
  DROP TABLE IF EXISTS pg_temp.cabinet_links_new_persons;
  CREATE TEMP TABLE cabinet_links_new_persons ON COMMIT DROP AS
  SELECT DISTINCT ON (w.driver_id)
         w.driver_id, canon.new_person_key() AS person_key, w.lead_source_pk AS first_lead_source_pk,
         w.match_rule, w.match_score, w.confidence_level, w.driver_evidence
  FROM pg_temp.cabinet_links_to_write w
  WHERE w.driver_person_key IS NULL
  ORDER BY w.driver_id, w.lead_created_at, w.lead_source_pk;

  INSERT INTO canon.identity_registry (person_key, confidence_level, primary_phone, primary_license, primary_name, created_run_id)
  SELECT np.person_key, np.confidence_level, i.phone_norm, i.license_norm, i.name_norm, p_run_id
  FROM pg_temp.cabinet_links_new_persons np
  JOIN canon_internal.driver_index i ON i.driver_id = np.driver_id;
  GET DIAGNOSTICS v_new_persons = ROW_COUNT;

  WITH inserted AS (
    INSERT INTO canon.identity_links (source_table, source_pk, person_key, match_rule, match_score, confidence_level, evidence, run_id)
    SELECT 'drivers', np.driver_id, np.person_key, np.match_rule, np.match_score, np.confidence_level,
           jsonb_build_object('linked_with_lead', np.first_lead_source_pk) || coalesce(np.driver_evidence, '{}'), p_run_id
    FROM pg_temp.cabinet_links_new_persons np
    UNION ALL
    SELECT 'module_ct_cabinet_leads', w.lead_source_pk, coalesce(w.driver_person_key, np.person_key),
           w.match_rule, w.match_score, w.confidence_level, w.evidence, p_run_id
    FROM pg_temp.cabinet_links_to_write w
    LEFT JOIN pg_temp.cabinet_links_new_persons np ON np.driver_id = w.driver_id
    RETURNING source_table
  )
  SELECT count(*) FILTER (WHERE i.source_table = 'drivers'), count(*) FILTER (WHERE i.source_table <> 'drivers')
  INTO v_driver_links, v_lead_links
  FROM inserted i;

  -- The origin of a person is the earliest lead that brought it.
  INSERT INTO canon.identity_origin (person_key, origin_tag, origin_source_id, confidence_level, origin_created_at, decided_by, run_id)
  SELECT DISTINCT ON (m.person_key) m.person_key, 'cabinet_lead', m.lead_source_pk, m.confidence_level, m.lead_created_at, 'system', p_run_id
  FROM (
    SELECT coalesce(w.driver_person_key, np.person_key) AS person_key, w.lead_source_pk, w.confidence_level, w.lead_created_at
    FROM pg_temp.cabinet_links_to_write w
    LEFT JOIN pg_temp.cabinet_links_new_persons np ON np.driver_id = w.driver_id
  ) m
  ORDER BY m.person_key, m.lead_created_at, m.lead_source_pk
  ON CONFLICT (person_key) DO NOTHING;
  GET DIAGNOSTICS v_origins = ROW_COUNT;

  DROP TABLE pg_temp.cabinet_links_new_persons;
  RETURN QUERY SELECT v_new_persons, v_driver_links, v_lead_links, v_origins;
END
$$;
COMMENT ON FUNCTION canon.write_lead_links(bigint) IS
  'The one writer of the links a run decides (rules and probabilistic tier): persons for drivers without one, driver and lead links in one statement, origins, from pg_temp.cabinet_links_to_write. Returns the counts written.';
