-- ops.repair_name_roles: brings the relatives veto's caches back to their live
-- definitions after a NAME_TOKEN_STATS or DRIVER_NAME_ROLES violation of
-- ops.check_invariants (only writes that bypassed their triggers cause one:
-- session_replication_role = replica, a disabled trigger, a hand edit):
--   SELECT ops.repair_name_roles();
-- canon_internal.driver_name_roles rows are compared with their live definition in full and
-- only the differing ones rewritten; canon_internal.name_token_stats is then counted again from
-- them. Holds off index writes (a run waits) while it works: about 10 s at 1M drivers.
CREATE OR REPLACE FUNCTION ops.repair_name_roles()
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_removed bigint;
  v_rewritten bigint;
  v_tokens bigint;
BEGIN
  LOCK TABLE canon_internal.driver_index IN SHARE ROW EXCLUSIVE MODE;
  LOCK TABLE canon_internal.driver_name_roles IN SHARE ROW EXCLUSIVE MODE;
  DELETE FROM canon_internal.driver_name_roles r
  WHERE NOT EXISTS (SELECT 1 FROM canon_internal.driver_index i WHERE i.driver_id = r.driver_id);
  GET DIAGNOSTICS v_removed = ROW_COUNT;
  INSERT INTO canon_internal.driver_name_roles AS r (driver_id, given_names, surnames, indexed_at)
  SELECT v.driver_id, v.given_names, v.surnames, v.indexed_at
  FROM canon.driver_name_roles_live(NULL) v
  LEFT JOIN canon_internal.driver_name_roles o ON o.driver_id = v.driver_id
  WHERE o.driver_id IS NULL
     OR (o.given_names, o.surnames, o.indexed_at) IS DISTINCT FROM (v.given_names, v.surnames, v.indexed_at)
  ORDER BY v.driver_id
  ON CONFLICT (driver_id) DO UPDATE
    SET given_names = excluded.given_names, surnames = excluded.surnames, indexed_at = excluded.indexed_at;
  GET DIAGNOSTICS v_rewritten = ROW_COUNT;
  -- The counters from what is stored now (the triggers above kept them only as right as
  -- they were).
  DELETE FROM canon_internal.name_token_stats;
  INSERT INTO canon_internal.name_token_stats (token, as_given, as_surname)
  SELECT v.token, v.as_given, v.as_surname FROM canon.v_name_token_stats v;
  GET DIAGNOSTICS v_tokens = ROW_COUNT;
  RETURN jsonb_build_object('roles_removed', v_removed, 'roles_rewritten', v_rewritten, 'tokens_counted', v_tokens);
END
$$;
COMMENT ON FUNCTION ops.repair_name_roles() IS
  'Repair of NAME_TOKEN_STATS / DRIVER_NAME_ROLES violations: rewrites the canon_internal.driver_name_roles rows that differ from canon.driver_name_roles_live (full comparison), removes those of drivers not indexed, and counts canon_internal.name_token_stats again. Returns counts.';
