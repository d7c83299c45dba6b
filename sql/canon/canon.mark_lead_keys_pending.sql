-- canon.mark_lead_keys_pending: trigger function on canon.identity_links and
-- canon.identity_unmatched. A lead key whose link or unmatched row goes away (deleted,
-- truncated, or moved to another key) is no longer evaluated: its rows in
-- canon.lead_keys are marked match_pending again, so that the next batch selection
-- (canon.match_cabinet_leads reads only pending rows for never-evaluated leads) sees it.
CREATE OR REPLACE FUNCTION canon.mark_lead_keys_pending()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    UPDATE canon.lead_keys k SET match_pending = true WHERE NOT k.match_pending;
  ELSIF OLD.source_table = 'module_ct_cabinet_leads' THEN
    UPDATE canon.lead_keys k SET match_pending = true
    WHERE k.lead_source_pk = OLD.source_pk AND NOT k.match_pending;
  END IF;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION canon.mark_lead_keys_pending() IS 'Trigger: a lead whose link or unmatched row is removed is marked match_pending again in canon.lead_keys (evaluated as new by the next run).';
