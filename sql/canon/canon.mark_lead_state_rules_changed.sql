-- canon.mark_lead_state_rules_changed: statement-level trigger function on
-- canon.claim_rules. Windows, thresholds and amounts of every lead may change with the
-- rules, so the next evaluation re-reads every lead (full_refresh_needed).
CREATE OR REPLACE FUNCTION canon.mark_lead_state_rules_changed()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  UPDATE canon_internal.cabinet_lead_state_meta SET full_refresh_needed = true, updated_at = now();
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION canon.mark_lead_state_rules_changed() IS
  'Trigger on canon.claim_rules: the next evaluation re-reads every lead''s state.';
