-- canon.move_claimed_leads_on: step 7d. The stored state of every row of the lead keys
-- just claimed follows its claims (flags and stage through canon.limbo_stage_of, the
-- view's own expression): their chain was evaluated by this step or is stored and
-- unchanged (a change would have marked it), so their trips are not read again. Returns
-- the rows written.
CREATE OR REPLACE FUNCTION canon.move_claimed_leads_on(p_run_id bigint, p_keys text[])
RETURNS integer
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET client_min_messages = warning
SET jit = off
AS $$
DECLARE
  v_written integer;
BEGIN
  -- Each key's claims probed through the claims' key and each key's rows through the hash
  -- index: written as EXISTS per milestone and joined, the claims were hashed whole and
  -- every stored row scanned (380 ms for 650 keys at 200k leads; this way 20 ms).
  WITH claimed AS MATERIALIZED (
    SELECT k.lead_source_pk, m.c1, m.c5, m.c25
    FROM (SELECT DISTINCT unnest(p_keys) AS lead_source_pk) k
    CROSS JOIN LATERAL (
      SELECT coalesce(bool_or(cl.milestone = 1), false) AS c1,
             coalesce(bool_or(cl.milestone = 5), false) AS c5,
             coalesce(bool_or(cl.milestone = 25), false) AS c25
      FROM canon.claims_yango_cabinet_14d cl
      WHERE cl.lead_source_pk = k.lead_source_pk) m
  )
  UPDATE canon_internal.cabinet_lead_state s
  SET has_claim_m1 = c.c1, has_claim_m5 = c.c5, has_claim_m25 = c.c25,
      limbo_stage = canon.limbo_stage_of(s.person_key, s.driver_id, s.trips_in_window,
                                         s.reached_m1, s.reached_m5, s.reached_m25, c.c1, c.c5, c.c25),
      evaluated_at = now(), evaluated_run_id = p_run_id
  FROM claimed c
  WHERE s.lead_source_pk = c.lead_source_pk
    AND (s.has_claim_m1, s.has_claim_m5, s.has_claim_m25) IS DISTINCT FROM (c.c1, c.c5, c.c25);
  GET DIAGNOSTICS v_written = ROW_COUNT;
  IF v_written > 0 THEN
    -- (as canon.refresh_lead_state does: counts and snapshots made before are stale)
    UPDATE canon_internal.cabinet_lead_state_meta SET changed_at = now();
  END IF;
  RETURN v_written;
END
$$;
COMMENT ON FUNCTION canon.move_claimed_leads_on(bigint, text[]) IS
  'Step 7d: the stored state of the rows of the given (just claimed) lead keys follows their claims. Returns rows written.';
