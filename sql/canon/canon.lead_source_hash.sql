-- canon.lead_source_hash: the fingerprint of the source values a lead row is keyed from
-- (canon_internal.lead_keys.source_hash): a row is keyed again when it differs. The one definition,
-- used by canon.refresh_lead_keys and the cache check canon.lead_keys_drift. STABLE as
-- timestamp::text is (DateStyle), so that it is inlined.
CREATE OR REPLACE FUNCTION canon.lead_source_hash(
  p_external_id text, p_lead_created_at timestamp without time zone, p_park_phone text, p_asset_plate_number text,
  p_first_name text, p_middle_name text, p_last_name text)
RETURNS text
LANGUAGE sql
STABLE
PARALLEL SAFE
AS $$
  SELECT md5(concat_ws(E'\x1f', p_external_id, p_lead_created_at::text, p_park_phone, p_asset_plate_number,
                       p_first_name, p_middle_name, p_last_name))
$$;
COMMENT ON FUNCTION canon.lead_source_hash(text, timestamp without time zone, text, text, text, text, text) IS
  'md5 of the lead row values its keys are computed from (canon_internal.lead_keys.source_hash).';
