-- canon.enforce_lead_not_linked_and_open: deferred constraint trigger function. At
-- commit, a lead is never both linked and OPEN in canon.identity_unmatched.
CREATE OR REPLACE FUNCTION canon.enforce_lead_not_linked_and_open()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF NEW.source_table = 'module_ct_cabinet_leads'
     AND EXISTS (SELECT 1 FROM canon.identity_links l
                 WHERE l.source_table = NEW.source_table AND l.source_pk = NEW.source_pk)
     AND EXISTS (SELECT 1 FROM canon.identity_unmatched u
                 WHERE u.source_table = NEW.source_table AND u.source_pk = NEW.source_pk AND u.status = 'OPEN') THEN
    RAISE EXCEPTION 'lead % is both linked and OPEN in canon.identity_unmatched', NEW.source_pk
      USING ERRCODE = 'CL011';
  END IF;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION canon.enforce_lead_not_linked_and_open() IS 'Constraint trigger: a lead is never both linked and OPEN-unmatched (checked at commit).';
