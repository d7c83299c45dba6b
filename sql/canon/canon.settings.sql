-- The product's settings (target park, business time zone, ...): edited with UPDATE, checked
-- against their value_type by the trigger settings_validate; read through canon.setting.
CREATE TABLE canon.settings (
  key         text PRIMARY KEY,
  value       text NOT NULL,
  description text NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now(),
  value_type  text NOT NULL DEFAULT 'TEXT' CHECK (value_type IN ('TEXT', 'IDENTIFIER', 'INTEGER', 'TIME_ZONE')),
  min_value   bigint,
  max_value   bigint,
  CONSTRAINT settings_range_check CHECK (((value_type = 'INTEGER') OR ((min_value IS NULL) AND (max_value IS NULL))) AND ((min_value IS NULL) OR (max_value IS NULL) OR (min_value <= max_value)))
);

CREATE TRIGGER settings_no_truncate
  BEFORE TRUNCATE ON canon.settings
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.enforce_setting_valid();
CREATE TRIGGER settings_validate
  BEFORE INSERT OR DELETE OR UPDATE ON canon.settings
  FOR EACH ROW
  EXECUTE FUNCTION canon.enforce_setting_valid();

COMMENT ON TABLE canon.settings IS
  'Product settings shared by the job and the views (target park, business time zone, ...). Edit with UPDATE; a value invalid for its value_type is refused (trigger settings_validate).';
COMMENT ON COLUMN canon.settings.value_type IS
  'What the value must be: TEXT (anything), IDENTIFIER (not blank, no spaces at its ends), INTEGER (from min_value to max_value), TIME_ZONE (a name of pg_timezone_names). See canon.setting_problem.';
COMMENT ON COLUMN canon.settings.min_value IS
  'Smallest value allowed (INTEGER settings).';
COMMENT ON COLUMN canon.settings.max_value IS
  'Largest value allowed (INTEGER settings).';

INSERT INTO canon.settings (key, value, description, value_type, min_value, max_value) VALUES
  ('target_park_id', '08e20910d81d42658d4334d3f6d10ac0', 'Park whose drivers are preferred by matching and whose leads are claimed.', 'IDENTIFIER', NULL, NULL),
  ('business_timezone', 'America/Lima', 'Time zone that defines "today" for windows, scopes and alerts.', 'TIME_ZONE', NULL, NULL),
  ('shared_phone_min_other_people', '2', 'A lead phone also used by at least this many other leads with dissimilar names is a shared (office) phone, never used by R1.', 'INTEGER', 1, 1000),
  ('alert_week_complete_after_days', '2', 'Days after a lead week (Monday-Sunday) ends before week-over-week alerts treat it as complete; leads arrive about 2 days after lead_created_at.', 'INTEGER', 0, 365),
  ('source_full_read_hours', '24', 'Hours after which summary_daily is read whole by the next run even when the statistics show no write it could not place (a bound on what lost statistics could hide).', 'INTEGER', 1, 8760),
  ('doctor_lead_state_days', '45', 'Days of leads (by lead date) whose stored state doctor compares value by value with the live definition (every lead is checked for membership).', 'INTEGER', 0, 36500),
  ('driver_index_full_refresh_hours', '24', 'Hours between full reconciliations of canon_internal.driver_index with public.drivers: removes deleted drivers (changed and new drivers are found by commit order on every run).', 'INTEGER', 0, 8760),
  ('job_lock_held_max_minutes', '60', 'Minutes after which a session holding the job lock, or a graphile-worker job or queue still locked, is longer than a run can last: status and doctor name it (JOB_LOCK_HELD_TOO_LONG, WORKER_JOB_LOCKED_TOO_LONG).', 'INTEGER', 1, 10080);
