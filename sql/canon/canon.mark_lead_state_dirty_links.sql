-- canon.mark_lead_state_dirty_links: statement-level trigger function on
-- canon.identity_links (one trigger per event, transition tables old_rows / new_rows).
-- Marks in canon_internal.cabinet_lead_state_dirty the lead keys whose state a link change can
-- alter: the lead links themselves, and every lead of a person whose driver links
-- changed (the person's driver may be another one now). One INSERT per statement,
-- whoever writes; the next evaluation (pipeline or ops.* tool) re-reads those leads.
CREATE OR REPLACE FUNCTION canon.mark_lead_state_dirty_links()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_lead_keys text[];
  v_persons uuid[];
BEGIN
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    v_lead_keys := ARRAY(SELECT n.source_pk FROM new_rows n WHERE n.source_table = 'module_ct_cabinet_leads');
    v_persons := ARRAY(SELECT DISTINCT n.person_key FROM new_rows n WHERE n.source_table = 'drivers');
  END IF;
  IF TG_OP IN ('DELETE', 'UPDATE') THEN
    v_lead_keys := coalesce(v_lead_keys, '{}') || ARRAY(SELECT o.source_pk FROM old_rows o WHERE o.source_table = 'module_ct_cabinet_leads');
    v_persons := coalesce(v_persons, '{}') || ARRAY(SELECT DISTINCT o.person_key FROM old_rows o WHERE o.source_table = 'drivers');
  END IF;

  INSERT INTO canon_internal.cabinet_lead_state_dirty AS d (lead_source_pk)
  SELECT k.lead_source_pk
  FROM (
    SELECT unnest(v_lead_keys) AS lead_source_pk
    UNION
    SELECT l.source_pk
    FROM canon.identity_links l
    WHERE l.person_key = ANY (v_persons) AND l.source_table = 'module_ct_cabinet_leads'
  ) k
  ON CONFLICT (lead_source_pk) DO UPDATE
    SET mark_seq = excluded.mark_seq, marked_at = excluded.marked_at;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION canon.mark_lead_state_dirty_links() IS
  'Trigger on canon.identity_links: marks the lead keys whose state a link change can alter (canon_internal.cabinet_lead_state_dirty).';
