-- canon.fs_plate_block_pair: whether a lead and a driver found by the probabilistic tier's
-- plate block are a pair it compares: plates equal or one edit apart
-- (canon.plate_comparison), and the names share a token (a random plate one edit away is
-- another person's car: several per plate at 1M drivers). Read by canon.fs_blocked_pairs and
-- canon.mark_retries_due. Plain SQL without SET or STRICT: inlined (the token test first,
-- it is the cheap one).
CREATE OR REPLACE FUNCTION canon.fs_plate_block_pair(p_lead_plate text, p_lead_name text, p_driver_plate text, p_driver_name text)
RETURNS boolean
LANGUAGE sql
IMMUTABLE
AS $$
  SELECT pg_catalog.string_to_array(p_lead_name, ' ') OPERATOR(pg_catalog.&&) pg_catalog.string_to_array(p_driver_name, ' ')
         AND (canon.plate_comparison(p_lead_plate, p_driver_plate)).level OPERATOR(pg_catalog.<>) 'DIFFERENT'
$$;
COMMENT ON FUNCTION canon.fs_plate_block_pair(text, text, text, text) IS
  'Probabilistic tier: a plate-block pair is compared when the plates are equal or one edit apart and the names share a token (NULL: a plate or name unknown).';
