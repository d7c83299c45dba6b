-- Internal cache: the normalised matching keys of every cabinet lead row. Written by
-- canon.refresh_lead_keys (rows changed since the last read, by commit order); read by the matcher
-- and the lead state. Checked by ops.check_caches (LEAD_KEYS_CURRENT).
CREATE TABLE canon_internal.lead_keys (
  lead_id         integer PRIMARY KEY,
  lead_source_pk  text NOT NULL,
  lead_created_at timestamp,
  lead_date       date,
  phone_norm      text,
  plate_norm      text,
  license_norm    text,
  name_norm       text,
  lead_name       text,
  source_hash     text NOT NULL,
  indexed_at      timestamptz NOT NULL DEFAULT now()
) WITH (autovacuum_vacuum_scale_factor='0.02', autovacuum_vacuum_threshold='1000');

CREATE INDEX lead_keys_lead_date_idx ON canon_internal.lead_keys (lead_date);
CREATE INDEX lead_keys_license_idx ON canon_internal.lead_keys (license_norm)
  WHERE license_norm IS NOT NULL;
CREATE INDEX lead_keys_phone_idx ON canon_internal.lead_keys (phone_norm)
  WHERE phone_norm IS NOT NULL;
CREATE INDEX lead_keys_plate_idx ON canon_internal.lead_keys (plate_norm)
  WHERE plate_norm IS NOT NULL;
CREATE INDEX lead_keys_source_pk_idx ON canon_internal.lead_keys (lead_source_pk, lead_id);

COMMENT ON TABLE canon_internal.lead_keys IS
  'Normalised matching keys of every cabinet lead row (new rows added by each run; batch rows re-keyed).';
