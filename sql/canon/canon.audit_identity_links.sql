-- canon.audit_identity_links: statement-level trigger function on canon.identity_links
-- (one trigger per event, each with its transition table). Appends one
-- canon.identity_audit row per link inserted (LINK), deleted (UNLINK) or moved to
-- another person (RELINK), in one INSERT ... SELECT per statement, whoever writes:
-- the pipeline (actor 'run <id>', from the link's run_id), the ops.* tools or a
-- statement typed in psql (actor = current_user). The ops.* tools pass their note and
-- extra details through the transaction-local settings cabinet.audit_note and
-- cabinet.audit_details (jsonb).
CREATE OR REPLACE FUNCTION canon.audit_identity_links()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_note text := nullif(current_setting('cabinet.audit_note', true), '');
  v_details jsonb := coalesce(nullif(current_setting('cabinet.audit_details', true), '')::jsonb, '{}'::jsonb);
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO canon.identity_audit (
      action, source_table, source_pk, person_key, driver_id, match_rule, match_score,
      decided_by, actor, run_id, note, details)
    SELECT 'LINK', n.source_table, n.source_pk, n.person_key,
           CASE WHEN n.source_table = 'drivers' THEN n.source_pk END,
           n.match_rule, n.match_score,
           CASE WHEN n.run_id IS NULL THEN 'manual' ELSE 'system' END,
           CASE WHEN n.run_id IS NULL THEN current_user::text ELSE 'run ' || n.run_id END,
           n.run_id, v_note,
           v_details || jsonb_build_object('link_id', n.id, 'confidence_level', n.confidence_level)
    FROM new_links n;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO canon.identity_audit (
      action, source_table, source_pk, person_key, driver_id, match_rule, match_score,
      decided_by, actor, run_id, note, details)
    SELECT 'UNLINK', o.source_table, o.source_pk, o.person_key,
           CASE WHEN o.source_table = 'drivers' THEN o.source_pk END,
           o.match_rule, o.match_score,
           'manual', current_user::text, NULL, v_note,
           v_details || jsonb_build_object('removed_link', to_jsonb(o))
    FROM old_links o;
  ELSIF TG_OP = 'UPDATE' THEN
    INSERT INTO canon.identity_audit (
      action, source_table, source_pk, person_key, driver_id, match_rule, match_score,
      decided_by, actor, run_id, note, details)
    SELECT 'RELINK', n.source_table, n.source_pk, n.person_key,
           CASE WHEN n.source_table = 'drivers' THEN n.source_pk END,
           n.match_rule, n.match_score,
           CASE WHEN n.run_id IS NOT NULL AND n.run_id IS DISTINCT FROM o.run_id THEN 'system' ELSE 'manual' END,
           CASE WHEN n.run_id IS NOT NULL AND n.run_id IS DISTINCT FROM o.run_id THEN 'run ' || n.run_id ELSE current_user::text END,
           CASE WHEN n.run_id IS DISTINCT FROM o.run_id THEN n.run_id END,
           v_note,
           v_details || jsonb_build_object('link_id', n.id, 'previous_link', to_jsonb(o))
    FROM old_links o
    JOIN new_links n ON n.id = o.id
    WHERE n.person_key IS DISTINCT FROM o.person_key
       OR n.source_pk IS DISTINCT FROM o.source_pk
       OR n.source_table IS DISTINCT FROM o.source_table;
  END IF;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION canon.audit_identity_links() IS
  'Statement trigger on canon.identity_links: one canon.identity_audit row per link inserted (LINK), deleted (UNLINK) or moved to another person (RELINK); actor = ''run <id>'' or current_user.';
