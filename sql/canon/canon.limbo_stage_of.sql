-- canon.limbo_stage_of: a lead's limbo stage (SPEC 8) from its chain and the claims of
-- its key, the first that applies: NO_IDENTITY, NO_DRIVER, NO_TRIPS_14D, TRIPS_NO_CLAIM,
-- OK. The one definition: canon.v_cabinet_lead_status computes it for every lead, and
-- step 7 (canon.generate_cabinet_claims) with it moves the leads it has just claimed on,
-- without reading their trips a second time. One expression (inlined).
CREATE OR REPLACE FUNCTION canon.limbo_stage_of(
  p_person_key uuid, p_driver_id text, p_trips_in_window bigint,
  p_reached_m1 boolean, p_reached_m5 boolean, p_reached_m25 boolean,
  p_has_claim_m1 boolean, p_has_claim_m5 boolean, p_has_claim_m25 boolean)
RETURNS text
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
  SELECT CASE
           WHEN p_person_key IS NULL THEN 'NO_IDENTITY'
           WHEN p_driver_id IS NULL THEN 'NO_DRIVER'
           WHEN p_trips_in_window <= 0 THEN 'NO_TRIPS_14D'
           WHEN (p_reached_m1 AND NOT p_has_claim_m1)
             OR (p_reached_m5 AND NOT p_has_claim_m5)
             OR (p_reached_m25 AND NOT p_has_claim_m25) THEN 'TRIPS_NO_CLAIM'
           ELSE 'OK'
         END
$$;
COMMENT ON FUNCTION canon.limbo_stage_of(uuid, text, bigint, boolean, boolean, boolean, boolean, boolean, boolean) IS
  'Limbo stage from a lead''s person, driver, trips in window, milestones reached and claims present: NO_IDENTITY, NO_DRIVER, NO_TRIPS_14D, TRIPS_NO_CLAIM or OK (the first that applies).';
