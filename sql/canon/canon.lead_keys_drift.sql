-- canon.lead_keys_drift: lead rows whose cache row in canon_internal.lead_keys is not what
-- canon.refresh_lead_keys would write now: not keyed, keyed under another key or with
-- other source values (hash), listed unkeyed while their key fits, or keyed while the row
-- is gone. Rows written since the last read, and rows deleted since (as the statistics
-- say), are the next run's work, not drift. Read by ops.check_caches, repaired by
-- ops.repair_caches.
CREATE OR REPLACE FUNCTION canon.lead_keys_drift()
RETURNS TABLE (lead_id integer, example text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
  WITH seen AS (
    SELECT canon.xmin_age_limit(s.seen_xmin) AS age_limit,
           s.tuples_deleted IS DISTINCT FROM pg_stat_get_tuples_deleted('public.module_ct_cabinet_leads'::regclass) AS deleted_since
    FROM canon_internal.source_scan_state s
    WHERE s.source_table = 'module_ct_cabinet_leads'
  ),
  leads AS (
    SELECT l.id, canon.lead_source_pk(l.external_id, l.id) AS lead_source_pk,
           canon.lead_source_hash(l.external_id, l.lead_created_at, l.park_phone, l.asset_plate_number,
                              l.first_name, l.middle_name, l.last_name) AS source_hash,
           (se.age_limit IS NULL OR age(l.xmin) <= se.age_limit) AS written_since_read
    FROM public.module_ct_cabinet_leads l CROSS JOIN seen se
  )
  SELECT coalesce(l.id, k.lead_id, u.lead_id),
         format('lead id %s: %s', coalesce(l.id, k.lead_id, u.lead_id),
                CASE WHEN l.id IS NULL THEN 'cached, but the lead row is gone'
                     WHEN k.lead_id IS NULL AND u.lead_id IS NULL THEN 'not keyed'
                     WHEN k.lead_id IS NULL THEN 'listed unkeyed with a key of ' || length(l.lead_source_pk) || ' characters'
                     WHEN k.lead_source_pk <> l.lead_source_pk THEN 'keyed under ' || left(k.lead_source_pk, 40) || ', its key is ' || left(l.lead_source_pk, 40)
                     ELSE 'keyed with values that are not the row''s' END)
  FROM leads l
  FULL JOIN canon_internal.lead_keys k ON k.lead_id = l.id
  FULL JOIN canon_internal.lead_rows_unkeyed u ON u.lead_id = coalesce(l.id, k.lead_id)
  WHERE NOT coalesce(l.written_since_read, false)
    AND (l.id IS NULL
         OR (k.lead_id IS NULL AND (u.lead_id IS NULL OR length(l.lead_source_pk) <= 200))
         OR (k.lead_id IS NOT NULL AND (k.lead_source_pk <> l.lead_source_pk OR k.source_hash <> l.source_hash)))
    AND NOT (l.id IS NULL AND coalesce((SELECT se.deleted_since FROM seen se), true))
$$;
COMMENT ON FUNCTION canon.lead_keys_drift() IS
  'Lead rows whose canon_internal.lead_keys (or lead_rows_unkeyed) row differs from what keying them now would write; the next run''s work excepted.';
