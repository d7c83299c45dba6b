-- The upstream columns the product reads and the type family each must have (SPEC 3); checked by
-- canon.check_source_contract at the start of every run.
CREATE TABLE canon.source_contract (
  table_name  text NOT NULL,
  column_name text NOT NULL,
  type_family text NOT NULL CHECK (type_family IN ('text', 'integer', 'timestamp', 'date', 'boolean', 'numeric')),
  PRIMARY KEY (table_name, column_name)
);

COMMENT ON TABLE canon.source_contract IS
  'Columns of the upstream tables the product reads, with the type family each must have.';

INSERT INTO canon.source_contract (table_name, column_name, type_family) VALUES
  ('module_ct_cabinet_leads', 'id', 'integer'),
  ('module_ct_cabinet_leads', 'external_id', 'text'),
  ('module_ct_cabinet_leads', 'lead_created_at', 'timestamp'),
  ('module_ct_cabinet_leads', 'first_name', 'text'),
  ('module_ct_cabinet_leads', 'middle_name', 'text'),
  ('module_ct_cabinet_leads', 'last_name', 'text'),
  ('module_ct_cabinet_leads', 'park_phone', 'text'),
  ('module_ct_cabinet_leads', 'asset_plate_number', 'text'),
  ('drivers', 'driver_id', 'text'),
  ('drivers', 'park_id', 'text'),
  ('drivers', 'first_name', 'text'),
  ('drivers', 'middle_name', 'text'),
  ('drivers', 'last_name', 'text'),
  ('drivers', 'full_name', 'text'),
  ('drivers', 'phone', 'text'),
  ('drivers', 'license_number', 'text'),
  ('drivers', 'license_normalized_number', 'text'),
  ('drivers', 'car_number', 'text'),
  ('drivers', 'car_normalized_number', 'text'),
  ('drivers', 'hire_date', 'date'),
  ('summary_daily', 'driver_id', 'text'),
  ('summary_daily', 'date_file', 'text'),
  ('summary_daily', 'count_orders_completed', 'integer'),
  ('drivers', 'created_at', 'timestamp'),
  ('drivers', 'updated_at', 'timestamp');
