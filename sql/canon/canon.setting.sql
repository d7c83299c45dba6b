-- canon.setting: the value of one product setting (canon.settings), for SQL that
-- must agree with the job (target park, business time zone). Raises on unknown keys.
CREATE OR REPLACE FUNCTION canon.setting(p_key text)
RETURNS text
LANGUAGE plpgsql
STABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_value text;
BEGIN
  SELECT s.value INTO v_value FROM canon.settings s WHERE s.key = p_key;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'unknown setting "%": known settings are listed in canon.settings', p_key
      USING ERRCODE = '22023';
  END IF;
  RETURN v_value;
END
$$;
COMMENT ON FUNCTION canon.setting(text) IS 'Value of a product setting from canon.settings; raises on an unknown key.';
