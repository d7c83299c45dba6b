-- Every setting the product reads has a type, and a value is checked against it where it
-- is written (trigger settings_validate, canon.enforce_setting_valid), not by the next
-- run failing on it. The values already stored are not checked here (a migration must
-- not fail on them): `cabinet-leads doctor` names any invalid one (SETTING_INVALID).
ALTER TABLE canon.settings
  ADD COLUMN IF NOT EXISTS value_type text NOT NULL DEFAULT 'TEXT'
    CONSTRAINT settings_value_type_check CHECK (value_type IN ('TEXT', 'IDENTIFIER', 'INTEGER', 'TIME_ZONE')),
  ADD COLUMN IF NOT EXISTS min_value bigint,
  ADD COLUMN IF NOT EXISTS max_value bigint;
ALTER TABLE canon.settings
  ADD CONSTRAINT settings_range_check CHECK (
    (value_type = 'INTEGER' OR (min_value IS NULL AND max_value IS NULL))
    AND (min_value IS NULL OR max_value IS NULL OR min_value <= max_value));
COMMENT ON TABLE canon.settings IS
  'Product settings shared by the job and the views (target park, business time zone, ...). Edit with UPDATE; a value invalid for its value_type is refused (trigger settings_validate).';
COMMENT ON COLUMN canon.settings.value_type IS
  'What the value must be: TEXT (anything), IDENTIFIER (not blank, no spaces at its ends), INTEGER (from min_value to max_value), TIME_ZONE (a name of pg_timezone_names). See canon.setting_problem.';
COMMENT ON COLUMN canon.settings.min_value IS 'Smallest value allowed (INTEGER settings).';
COMMENT ON COLUMN canon.settings.max_value IS 'Largest value allowed (INTEGER settings).';

UPDATE canon.settings s
SET value_type = t.value_type, min_value = t.min_value, max_value = t.max_value
FROM (VALUES
  ('target_park_id',                  'IDENTIFIER', NULL::bigint, NULL::bigint),
  ('business_timezone',               'TIME_ZONE',  NULL,         NULL),
  -- 0 = a full refresh on every run; a year at most
  ('driver_index_full_refresh_hours', 'INTEGER',    0,          8760),
  -- 0 would make every phone shared (R1 never used)
  ('shared_phone_min_other_people',   'INTEGER',    1,          1000),
  ('alert_week_complete_after_days',  'INTEGER',    0,          365),
  ('trips_settle_days',               'INTEGER',    0,          365)
) t (key, value_type, min_value, max_value)
WHERE s.key = t.key;

DROP TRIGGER IF EXISTS settings_validate ON canon.settings;
CREATE TRIGGER settings_validate
  BEFORE INSERT OR UPDATE OR DELETE ON canon.settings
  FOR EACH ROW EXECUTE FUNCTION canon.enforce_setting_valid();
DROP TRIGGER IF EXISTS settings_no_truncate ON canon.settings;
CREATE TRIGGER settings_no_truncate
  BEFORE TRUNCATE ON canon.settings
  FOR EACH STATEMENT EXECUTE FUNCTION canon.enforce_setting_valid();
