-- canon.fs_blocked_pairs: the probabilistic tier's blocking, the candidate drivers of the
-- given lead rows, each read by index: the plate block (a driver's plate equal or one edit
-- away, incl. swaps and O/0-like confusions: a shared canon.plate_edit_keys key, GIN
-- driver_index_plate_edit_keys_idx; kept when canon.fs_plate_block_pair) and the name block
-- (the lead's rare keys, canon.fs_rare_name_keys, each the drivers of canon.fs_name_block).
-- The one definition of which drivers the tier compares with a lead: read by
-- canon.probabilistic_candidates and, for the leads a driver change should have made due,
-- by canon.retry_due_drift (canon.mark_retries_due finds the same pairs from the drivers'
-- side).
CREATE OR REPLACE FUNCTION canon.fs_blocked_pairs(p_lead_ids integer[])
RETURNS TABLE (lead_id integer, driver_id text, blocks text[])
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
-- a probe per lead: the planner would rather hash the whole index
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
  WITH v AS MATERIALIZED (
    SELECT canon.fs_rare_token_max() AS rare_max, fv.name_block_max_drivers
    FROM canon.match_fs_versions fv
    WHERE fv.active
  ),
  batch AS (
    SELECT k.lead_id, k.plate_norm, k.name_norm
    FROM canon_internal.lead_keys k
    WHERE k.lead_id = ANY (p_lead_ids)
  ),
  -- Plate block: any shared deletion key (GIN, by hash), kept when one edit away at most and the
  -- names share a token.
  plate_block AS (
    SELECT b.lead_id, x.driver_id, 'PLATE' AS block
    FROM batch b
    CROSS JOIN LATERAL (
      SELECT d.driver_id
      FROM canon_internal.driver_index d
      WHERE canon.plate_edit_hashes(d.plate_norm) && canon.plate_edit_hashes(b.plate_norm)
        AND d.plate_norm IS NOT NULL
        AND canon.fs_plate_block_pair(b.plate_norm, b.name_norm, d.plate_norm, d.name_norm)
    ) x
    WHERE b.plate_norm IS NOT NULL
  ),
  -- Name block: the drivers of each of the leads' rare keys, looked up once per key.
  key_leads AS (
    SELECT r.key, array_agg(b.lead_id) AS lead_ids
    FROM batch b
    CROSS JOIN v
    CROSS JOIN LATERAL canon.fs_rare_name_keys(b.name_norm, v.rare_max) AS r (key)
    GROUP BY r.key
  ),
  name_block AS (
    SELECT l.lead_id, d.driver_id, 'NAME' AS block
    FROM key_leads kl
    CROSS JOIN v
    CROSS JOIN LATERAL unnest(canon.fs_name_block(kl.key, v.name_block_max_drivers)) AS d (driver_id)
    CROSS JOIN LATERAL unnest(kl.lead_ids) AS l (lead_id)
  )
  SELECT p.lead_id, p.driver_id, array_agg(DISTINCT p.block ORDER BY p.block)
  FROM (SELECT * FROM plate_block UNION ALL SELECT * FROM name_block) p
  GROUP BY p.lead_id, p.driver_id
$$;
COMMENT ON FUNCTION canon.fs_blocked_pairs(integer[]) IS
  'Probabilistic tier, blocking: candidate drivers of the given lead rows (plate equal or one edit away with a shared name token; rare name keys), with the blocks that found each.';
