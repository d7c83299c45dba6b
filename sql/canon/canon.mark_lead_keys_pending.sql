-- canon.mark_lead_keys_pending: trigger function on canon.identity_links and
-- canon.identity_unmatched. A lead key whose link or unmatched row goes away (deleted,
-- truncated, or moved to another key) is no longer evaluated: its rows of
-- canon_internal.lead_keys are listed in canon_internal.lead_keys_pending again, so that the next batch
-- selection (canon.select_lead_batch reads that table for never-evaluated leads) sees it.
CREATE OR REPLACE FUNCTION canon.mark_lead_keys_pending()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    INSERT INTO canon_internal.lead_keys_pending (lead_id, lead_date)
    SELECT k.lead_id, k.lead_date FROM canon_internal.lead_keys k
    ON CONFLICT (lead_id) DO NOTHING;
  ELSIF OLD.source_table = 'module_ct_cabinet_leads' THEN
    INSERT INTO canon_internal.lead_keys_pending (lead_id, lead_date)
    SELECT k.lead_id, k.lead_date FROM canon_internal.lead_keys k WHERE k.lead_source_pk = OLD.source_pk
    ON CONFLICT (lead_id) DO NOTHING;
  END IF;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION canon.mark_lead_keys_pending() IS 'Trigger: a lead whose link or unmatched row is removed is listed in canon_internal.lead_keys_pending again (evaluated as new by the next run).';
