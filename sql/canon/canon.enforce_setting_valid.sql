-- canon.enforce_setting_valid: trigger function of canon.settings (trigger
-- settings_validate, BEFORE INSERT OR UPDATE OR DELETE per row; trigger
-- settings_no_truncate, BEFORE TRUNCATE). A value that every run would fail on (an
-- unknown time zone, a blank park id, a non-integer) is refused where it is written,
-- with the setting and the value named (SQLSTATE 22023), instead of failing every later
-- run. A setting with a type is read by the product, so it is never deleted or renamed
-- (23001): its value is changed instead. Also stamps updated_at when a value changes.
CREATE OR REPLACE FUNCTION canon.enforce_setting_valid()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_problem text;
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    RAISE EXCEPTION 'canon.settings cannot be truncated: the product reads its settings; UPDATE a value instead'
      USING ERRCODE = '23001';
  END IF;
  IF TG_OP IN ('DELETE', 'UPDATE') AND OLD.value_type <> 'TEXT'
     AND (TG_OP = 'DELETE' OR NEW.key IS DISTINCT FROM OLD.key) THEN
    RAISE EXCEPTION 'setting % cannot be %: the product reads it; UPDATE its value instead',
                    OLD.key, CASE WHEN TG_OP = 'DELETE' THEN 'deleted' ELSE 'renamed' END
      USING ERRCODE = '23001';
  END IF;
  IF TG_OP = 'DELETE' THEN
    RETURN OLD;
  END IF;

  v_problem := canon.setting_problem(NEW.value, NEW.value_type, NEW.min_value, NEW.max_value);
  IF v_problem IS NOT NULL THEN
    RAISE EXCEPTION 'invalid setting % = %: %', NEW.key, quote_nullable(NEW.value), v_problem
      USING ERRCODE = '22023',
            HINT = 'The type and range of every setting: SELECT key, value, value_type, min_value, max_value FROM canon.settings;';
  END IF;
  IF TG_OP = 'UPDATE' AND NEW.value IS DISTINCT FROM OLD.value AND NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
    NEW.updated_at := now();
  END IF;
  RETURN NEW;
END
$$;
COMMENT ON FUNCTION canon.enforce_setting_valid() IS
  'Trigger of canon.settings: refuses a value invalid for its value_type (22023, naming setting and value, canon.setting_problem), the deletion, renaming or truncation of a typed setting (23001); stamps updated_at.';
