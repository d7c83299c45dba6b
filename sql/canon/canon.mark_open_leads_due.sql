-- canon.mark_open_leads_due: statement trigger function on canon.match_rules and
-- canon.match_parameters: a change of the rules can change the outcome of every lead left
-- unmatched, so every OPEN one is due for a retry (canon.identity_unmatched.retry_due),
-- whatever the driver index did. Linked leads are not re-evaluated (SPEC 6).
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
  'Trigger on canon.match_rules and canon.match_parameters: every OPEN unmatched lead is due for a retry.';
