-- canon.flush_driver_index_keys: merges the pending lists of the probabilistic tier's GIN
-- indexes on canon_internal.driver_index (plate deletion keys, name phonetic keys) into the
-- indexes. The indexes keep fast update on, so the drivers a run indexes cost an append
-- (2,000 drivers: 58 ms, 214 ms without), and the tier merges them once before it probes
-- (56 ms): a probe would otherwise scan the whole pending list (0.75 ms a lead with 7
-- pending pages, 32 ms with 4 MB). Called by canon.link_probabilistic. SECURITY DEFINER:
-- gin_clean_pending_list needs the index owner, and the job role does not own it.
CREATE OR REPLACE FUNCTION canon.flush_driver_index_keys()
RETURNS bigint
LANGUAGE sql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT gin_clean_pending_list('canon_internal.driver_index_plate_edit_keys_idx'::regclass)
       + gin_clean_pending_list('canon_internal.driver_index_name_keys_idx'::regclass)
$$;
COMMENT ON FUNCTION canon.flush_driver_index_keys() IS
  'Merges the pending lists of the driver index''s GIN indexes (plate deletion keys, name phonetic keys) before the probabilistic tier probes them; returns the pending pages merged. SECURITY DEFINER (the index owner''s right).';
