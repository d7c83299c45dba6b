-- canon.mark_open_leads_due: trigger function on canon.match_rules and
-- canon.match_parameters (statement triggers), and on canon.match_fs_versions (row triggers
-- on the active version only; its levels: canon.mark_open_leads_due_fs_level): a change of the
-- rules can change the outcome of every lead left unmatched, so every OPEN one is due for a
-- retry (canon.identity_unmatched.retry_due), whatever the driver index did. Linked leads are
-- not re-evaluated (SPEC 6).
CREATE OR REPLACE FUNCTION canon.mark_open_leads_due()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  UPDATE canon.identity_unmatched u SET retry_due = true WHERE u.status = 'OPEN' AND NOT u.retry_due;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION canon.mark_open_leads_due() IS
  'Trigger on canon.match_rules, canon.match_parameters and the active version of canon.match_fs_versions: every OPEN unmatched lead is due for a retry.';
