-- canon.flush_unmatched_key_indexes: merges the pending lists of the GIN indexes on the OPEN
-- unmatched leads the probabilistic tier sees (canon.identity_unmatched: plate deletion keys;
-- name phonetic keys when p_names) into the indexes. The indexes keep fast update on, so
-- the rows a run writes cost an append, and canon.mark_tier_retries_due merges them once
-- before it probes: each probe would otherwise read the whole pending list. The name index
-- is merged only when it is probed (its list waits otherwise). SECURITY DEFINER:
-- gin_clean_pending_list needs the index owner, and the job role does not own it.
CREATE OR REPLACE FUNCTION canon.flush_unmatched_key_indexes(p_names boolean)
RETURNS bigint
LANGUAGE sql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT gin_clean_pending_list('canon.identity_unmatched_plate_edit_keys_idx'::regclass)
       + CASE WHEN p_names THEN gin_clean_pending_list('canon.identity_unmatched_name_keys_idx'::regclass) ELSE 0 END
$$;
COMMENT ON FUNCTION canon.flush_unmatched_key_indexes(boolean) IS
  'Merges the pending lists of the GIN indexes on the OPEN unmatched leads the tier sees (plate deletion keys; name phonetic keys when p_names) before canon.mark_tier_retries_due probes them; returns the pending pages merged. SECURITY DEFINER (the index owner''s right).';
