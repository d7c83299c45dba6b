-- canon.mark_open_leads_due_fs_level: row trigger function on canon.match_fs_levels: a change
-- of an m or u of the ACTIVE version of the probabilistic tier can change the outcome of every
-- lead left unmatched, so every OPEN one is due for a retry (canon.mark_open_leads_due does the
-- marking); the levels of an inactive version (a version being written, or an estimate of
-- ops.estimate_fs_version waiting for a person) change nothing until it is activated.
CREATE OR REPLACE FUNCTION canon.mark_open_leads_due_fs_level()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM canon.match_fs_versions v WHERE v.active AND v.version IN (OLD.version, NEW.version)) THEN
    UPDATE canon.identity_unmatched u SET retry_due = true WHERE u.status = 'OPEN' AND NOT u.retry_due;
  END IF;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION canon.mark_open_leads_due_fs_level() IS
  'Trigger on canon.match_fs_levels: a level of the active version changed, every OPEN unmatched lead is due for a retry; levels of inactive versions mark nothing.';
