-- canon.refresh_lead_keys: normalised matching keys of cabinet lead rows into
-- canon.lead_keys: every row newer than the last one keyed, plus the given rows (the
-- run's batch), re-keyed only when their source values changed. Rows keyed for the first
-- time are listed in canon.lead_keys_pending (not evaluated yet). Returns rows written.
-- A lead key over 200 characters is garbage (no index can hold a 10 kB key): such rows
-- are never keyed nor evaluated; each run counts them (match.leads_with_oversized_key).
CREATE OR REPLACE FUNCTION canon.refresh_lead_keys(p_lead_ids integer[] DEFAULT '{}')
RETURNS integer
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_max_id integer := coalesce((SELECT max(k.lead_id) FROM canon.lead_keys k), 0);
  v_written integer;
BEGIN
  WITH source AS (
    SELECT l.id, l.external_id, l.lead_created_at, l.park_phone, l.asset_plate_number,
           l.first_name, l.middle_name, l.last_name,
           md5(concat_ws(E'\x1f', l.external_id, l.lead_created_at::text, l.park_phone, l.asset_plate_number,
                         l.first_name, l.middle_name, l.last_name)) AS source_hash,
           true AS is_new
    FROM public.module_ct_cabinet_leads l
    WHERE l.id > v_max_id
      AND length(canon.lead_source_pk(l.external_id, l.id)) <= 200
    UNION ALL
    SELECT l.id, l.external_id, l.lead_created_at, l.park_phone, l.asset_plate_number,
           l.first_name, l.middle_name, l.last_name,
           md5(concat_ws(E'\x1f', l.external_id, l.lead_created_at::text, l.park_phone, l.asset_plate_number,
                         l.first_name, l.middle_name, l.last_name)),
           NOT EXISTS (SELECT 1 FROM canon.lead_keys k WHERE k.lead_id = l.id)
    FROM public.module_ct_cabinet_leads l
    WHERE l.id = ANY (p_lead_ids) AND l.id <= v_max_id
      AND length(canon.lead_source_pk(l.external_id, l.id)) <= 200
  ),
  written AS (
    INSERT INTO canon.lead_keys AS k (
      lead_id, lead_source_pk, lead_created_at, lead_date, phone_norm, plate_norm, license_norm,
      name_norm, lead_name, source_hash, indexed_at)
    SELECT s.id,
           canon.lead_source_pk(s.external_id, s.id),
           s.lead_created_at,
           s.lead_created_at::date,
           canon.normalize_phone(s.park_phone),
           canon.normalize_plate(s.asset_plate_number),
           NULL, -- the cabinet export carries no licence number: R2 cannot fire for leads
           canon.normalize_name(concat_ws(' ', s.first_name, s.middle_name, s.last_name)),
           nullif(left(regexp_replace(btrim(concat_ws(' ', s.first_name, s.middle_name, s.last_name)), '\s+', ' ', 'g'), 200), ''),
           s.source_hash,
           now()
    FROM source s
    ON CONFLICT (lead_id) DO UPDATE
      SET lead_source_pk = excluded.lead_source_pk, lead_created_at = excluded.lead_created_at,
          lead_date = excluded.lead_date, phone_norm = excluded.phone_norm, plate_norm = excluded.plate_norm,
          license_norm = excluded.license_norm, name_norm = excluded.name_norm, lead_name = excluded.lead_name,
          source_hash = excluded.source_hash, indexed_at = excluded.indexed_at
      WHERE k.source_hash <> excluded.source_hash
    RETURNING k.lead_id, k.lead_date
  ),
  -- A row keyed for the first time is not evaluated yet; a re-keyed row stays as it was
  -- (its listed lead_date follows its new one).
  pending AS (
    INSERT INTO canon.lead_keys_pending (lead_id, lead_date)
    SELECT s.id, s.lead_created_at::date FROM source s WHERE s.is_new
    ON CONFLICT (lead_id) DO NOTHING
  ),
  pending_redated AS (
    UPDATE canon.lead_keys_pending q SET lead_date = w.lead_date
    FROM written w
    WHERE q.lead_id = w.lead_id AND q.lead_date IS DISTINCT FROM w.lead_date
  )
  SELECT count(*) INTO v_written FROM written;
  RETURN v_written;
END
$$;
COMMENT ON FUNCTION canon.refresh_lead_keys(integer[]) IS 'Keys every new lead row and re-keys the given rows when their source changed; returns rows written.';
