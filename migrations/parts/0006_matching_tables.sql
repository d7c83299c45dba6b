-- Matching: the driver matching index and the lead keys, both derived data owned by
-- the product and refreshed by the pipeline (steps 4 and 5).

-- drivers.created_at / updated_at drive the incremental refresh of the index.
INSERT INTO canon.source_contract (table_name, column_name, type_family) VALUES
  ('drivers', 'created_at', 'timestamp'),
  ('drivers', 'updated_at', 'timestamp')
ON CONFLICT DO NOTHING;

CREATE TABLE canon.driver_index (
  driver_id          text PRIMARY KEY,
  park_id            text,
  phone_norm         text,
  license_norm       text,
  plate_norm         text,
  name_norm          text,
  hire_date          date,
  source_hash        text NOT NULL,
  source_changed_at  timestamp without time zone,
  indexed_at         timestamptz NOT NULL DEFAULT now(),
  indexed_run_id     bigint
);
CREATE INDEX driver_index_phone_idx ON canon.driver_index (phone_norm) WHERE phone_norm IS NOT NULL;
CREATE INDEX driver_index_license_idx ON canon.driver_index (license_norm) WHERE license_norm IS NOT NULL;
CREATE INDEX driver_index_plate_idx ON canon.driver_index (plate_norm) WHERE plate_norm IS NOT NULL;
COMMENT ON TABLE canon.driver_index IS 'Normalised matching keys of every driver of public.drivers, refreshed incrementally by each run (step 4).';

CREATE TABLE canon.driver_index_state (
  singleton          boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  watermark          timestamp without time zone,
  last_full_at       timestamptz,
  last_refresh_at    timestamptz,
  last_run_id        bigint
);
COMMENT ON TABLE canon.driver_index_state IS 'Watermark of the incremental driver index refresh and time of the last full reconciliation.';

CREATE TABLE canon.lead_keys (
  lead_id            integer PRIMARY KEY,
  lead_source_pk     text NOT NULL,
  lead_created_at    timestamp without time zone,
  lead_date          date,
  phone_norm         text,
  plate_norm         text,
  license_norm       text,
  name_norm          text,
  lead_name          text,
  source_hash        text NOT NULL,
  indexed_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX lead_keys_source_pk_idx ON canon.lead_keys (lead_source_pk, lead_id);
CREATE INDEX lead_keys_phone_idx ON canon.lead_keys (phone_norm) WHERE phone_norm IS NOT NULL;
CREATE INDEX lead_keys_lead_date_idx ON canon.lead_keys (lead_date);
COMMENT ON TABLE canon.lead_keys IS 'Normalised matching keys of every cabinet lead row (new rows added by each run; batch rows re-keyed).';

INSERT INTO canon.settings (key, value, description) VALUES
  ('driver_index_full_refresh_hours', '24', 'Hours between full reconciliations of canon.driver_index with public.drivers (removes deleted drivers, catches changes without updated_at).'),
  ('shared_phone_min_other_people', '2', 'A lead phone also used by at least this many other leads with dissimilar names is a shared (office) phone, never used by R1.')
ON CONFLICT DO NOTHING;
