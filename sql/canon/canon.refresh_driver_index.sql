-- canon.refresh_driver_index: pipeline step 4. Brings canon.driver_index up to date with
-- public.drivers: incrementally (drivers whose updated_at/created_at is past the
-- watermark, re-normalised only when their source values changed), and fully every
-- driver_index_full_refresh_hours (also removes deleted drivers). Returns step stats.
CREATE OR REPLACE FUNCTION canon.refresh_driver_index(p_run_id bigint)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_state canon.driver_index_state%ROWTYPE;
  v_full boolean;
  v_since timestamp;
  v_scanned integer;
  v_upserted integer;
  v_deleted integer := 0;
  v_watermark timestamp;
BEGIN
  SELECT * INTO v_state FROM canon.driver_index_state FOR UPDATE;
  v_full := NOT FOUND OR v_state.last_full_at IS NULL OR v_state.watermark IS NULL
            OR v_state.last_full_at < now() - make_interval(hours => canon.setting('driver_index_full_refresh_hours')::integer);
  -- An hour of overlap catches rows committed late with an older updated_at.
  v_since := CASE WHEN v_full THEN NULL ELSE v_state.watermark - interval '1 hour' END;

  WITH source AS (
    SELECT DISTINCT ON (d.driver_id)
           d.driver_id, d.park_id, d.phone, d.license_normalized_number, d.license_number,
           d.car_normalized_number, d.car_number, d.full_name, d.first_name, d.middle_name, d.last_name, d.hire_date,
           coalesce(d.updated_at, d.created_at) AS changed_at
    FROM public.drivers d
    WHERE nullif(btrim(d.driver_id), '') IS NOT NULL
      AND length(d.driver_id) <= 200 -- garbage ids (10 kB) cannot be indexed: counted below
      AND (v_since IS NULL OR coalesce(d.updated_at, d.created_at) >= v_since)
    ORDER BY d.driver_id, coalesce(d.updated_at, d.created_at) DESC NULLS LAST
  ),
  hashed AS (
    SELECT s.*,
           md5(concat_ws(E'\x1f', s.park_id, s.phone, s.license_normalized_number, s.license_number,
                         s.car_normalized_number, s.car_number, s.full_name, s.first_name, s.middle_name,
                         s.last_name, s.hire_date::text)) AS source_hash
    FROM source s
  ),
  changed AS (
    SELECT h.*
    FROM hashed h
    LEFT JOIN canon.driver_index i ON i.driver_id = h.driver_id
    WHERE i.driver_id IS NULL OR i.source_hash <> h.source_hash
  ),
  upserted AS (
    INSERT INTO canon.driver_index AS i (
      driver_id, park_id, phone_norm, license_norm, plate_norm, name_norm, hire_date,
      source_hash, source_changed_at, indexed_at, indexed_run_id)
    SELECT c.driver_id, c.park_id,
           canon.normalize_phone(c.phone),
           canon.normalize_license(coalesce(nullif(btrim(c.license_normalized_number), ''), c.license_number)),
           canon.normalize_plate(coalesce(nullif(btrim(c.car_normalized_number), ''), c.car_number)),
           canon.normalize_name(coalesce(nullif(btrim(c.full_name), ''), concat_ws(' ', c.first_name, c.middle_name, c.last_name))),
           c.hire_date, c.source_hash, c.changed_at, now(), p_run_id
    FROM changed c
    ON CONFLICT (driver_id) DO UPDATE
      SET park_id = excluded.park_id, phone_norm = excluded.phone_norm, license_norm = excluded.license_norm,
          plate_norm = excluded.plate_norm, name_norm = excluded.name_norm, hire_date = excluded.hire_date,
          source_hash = excluded.source_hash, source_changed_at = excluded.source_changed_at,
          indexed_at = excluded.indexed_at, indexed_run_id = excluded.indexed_run_id
    RETURNING 1
  )
  SELECT (SELECT count(*) FROM hashed), (SELECT count(*) FROM upserted), (SELECT max(changed_at) FROM hashed)
  INTO v_scanned, v_upserted, v_watermark;

  IF v_full THEN
    DELETE FROM canon.driver_index i
    WHERE NOT EXISTS (SELECT 1 FROM public.drivers d WHERE d.driver_id = i.driver_id);
    GET DIAGNOSTICS v_deleted = ROW_COUNT;
  END IF;

  INSERT INTO canon.driver_index_state AS s (singleton, watermark, last_full_at, last_refresh_at, last_run_id)
  VALUES (true, v_watermark, CASE WHEN v_full THEN now() END, now(), p_run_id)
  ON CONFLICT (singleton) DO UPDATE
    SET watermark = greatest(s.watermark, excluded.watermark),
        last_full_at = coalesce(excluded.last_full_at, s.last_full_at),
        last_refresh_at = excluded.last_refresh_at,
        last_run_id = excluded.last_run_id
  WHERE s.watermark IS DISTINCT FROM greatest(s.watermark, excluded.watermark)
     OR excluded.last_full_at IS NOT NULL;

  RETURN jsonb_build_object(
    'mode', CASE WHEN v_full THEN 'full' ELSE 'incremental' END,
    'drivers_scanned', v_scanned,
    'drivers_reindexed', v_upserted,
    'drivers_removed', v_deleted,
    'drivers_indexed', CASE WHEN v_full THEN (SELECT count(*) FROM canon.driver_index) END,
    'drivers_skipped_bad_id', CASE WHEN v_full THEN (
      SELECT count(*) FROM public.drivers d
      WHERE nullif(btrim(d.driver_id), '') IS NULL OR length(d.driver_id) > 200) END);
END
$$;
COMMENT ON FUNCTION canon.refresh_driver_index(bigint) IS 'Pipeline step 4: incremental (watermark) or full refresh of canon.driver_index from public.drivers. Returns step stats.';
