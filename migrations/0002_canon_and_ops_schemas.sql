-- Up Migration
-- The product's own schemas and tables (SPEC 4). canon = identity, runs, claims;
-- ops = views, snapshots and alerts read by people. Enum-like columns are text with
-- CHECK constraints (upper case as in SPEC.md) so a DBA can read and extend them.

CREATE SCHEMA IF NOT EXISTS canon;
CREATE SCHEMA IF NOT EXISTS ops;
COMMENT ON SCHEMA canon IS 'Cabinet leads reconciliation: canonical identities, links, runs and claims.';
COMMENT ON SCHEMA ops IS 'Cabinet leads reconciliation: pipeline entry point, limbo views, snapshots and alerts.';

CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS fuzzystrmatch;
CREATE EXTENSION IF NOT EXISTS unaccent;

-- Settings that views and the job must agree on live in the database, not in env.
CREATE TABLE canon.settings (
  key         text PRIMARY KEY,
  value       text NOT NULL,
  description text NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE canon.settings IS 'Product settings shared by the job and the views (target park, business time zone). Edit with UPDATE.';
INSERT INTO canon.settings (key, value, description) VALUES
  ('target_park_id', '08e20910d81d42658d4334d3f6d10ac0', 'Park whose drivers are preferred by matching and whose leads are claimed.'),
  ('business_timezone', 'America/Lima', 'Time zone that defines "today" for windows, scopes and alerts.');

CREATE TABLE canon.ingestion_runs (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  job_name         text NOT NULL,
  status           text NOT NULL CHECK (status IN ('RUNNING', 'COMPLETED', 'FAILED', 'SKIPPED')),
  dry_run          boolean NOT NULL DEFAULT false,
  source_tables    jsonb NOT NULL DEFAULT '[]'::jsonb,
  params           jsonb NOT NULL DEFAULT '{}'::jsonb,
  scope_date_from  date,
  scope_date_to    date,
  stats            jsonb NOT NULL DEFAULT '{}'::jsonb,
  error_message    text,
  error_sqlstate   text,
  started_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
  completed_at     timestamptz,
  created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
  trigger          text NOT NULL DEFAULT 'psql',
  client_host      text,
  client_pid       integer,
  backend_pid      integer NOT NULL DEFAULT pg_backend_pid(),
  backend_start    timestamptz,
  worker_job_id    text,
  db_user          text NOT NULL DEFAULT current_user,
  CHECK ((status = 'RUNNING') = (completed_at IS NULL))
);
CREATE INDEX ingestion_runs_created_at_idx ON canon.ingestion_runs (created_at DESC);
CREATE INDEX ingestion_runs_job_status_idx ON canon.ingestion_runs (job_name, status, created_at DESC);
COMMENT ON TABLE canon.ingestion_runs IS 'One row per run of any job of the product, with its parameters, stats and outcome.';

CREATE TABLE canon.identity_registry (
  person_key        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  confidence_level  text NOT NULL CHECK (confidence_level IN ('HIGH', 'MEDIUM', 'LOW')),
  primary_phone     text,
  primary_license   text,
  primary_name      text,
  created_run_id    bigint REFERENCES canon.ingestion_runs (id),
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE canon.identity_registry IS 'One row per canonical person. Created only together with the link that needs it.';

CREATE TABLE canon.identity_links (
  id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  source_table      text NOT NULL CHECK (source_table IN ('module_ct_cabinet_leads', 'drivers')),
  source_pk         text NOT NULL,
  person_key        uuid NOT NULL REFERENCES canon.identity_registry (person_key),
  match_rule        text NOT NULL,
  match_score       numeric(5, 2) NOT NULL CHECK (match_score BETWEEN 0 AND 100),
  confidence_level  text NOT NULL CHECK (confidence_level IN ('HIGH', 'MEDIUM', 'LOW')),
  evidence          jsonb NOT NULL DEFAULT '{}'::jsonb,
  linked_at         timestamptz NOT NULL DEFAULT now(),
  run_id            bigint REFERENCES canon.ingestion_runs (id),
  UNIQUE (source_table, source_pk)
);
CREATE INDEX identity_links_person_key_idx ON canon.identity_links (person_key, source_table, linked_at DESC);
COMMENT ON TABLE canon.identity_links IS 'Source record (lead or driver) to canonical person. A driver belongs to at most one person.';

CREATE TABLE canon.identity_unmatched (
  id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  source_table      text NOT NULL CHECK (source_table IN ('module_ct_cabinet_leads')),
  source_pk         text NOT NULL,
  reason_code       text NOT NULL CHECK (reason_code IN ('AMBIGUOUS', 'CONFLICT', 'WEAK_MATCH_ONLY', 'SHARED_KEY', 'NO_CANDIDATES', 'MISSING_KEYS')),
  details           jsonb NOT NULL DEFAULT '{}'::jsonb,
  candidates        jsonb NOT NULL DEFAULT '[]'::jsonb,
  status            text NOT NULL DEFAULT 'OPEN' CHECK (status IN ('OPEN', 'RESOLVED', 'IGNORED')),
  first_attempt_at  timestamptz NOT NULL DEFAULT now(),
  last_attempt_at   timestamptz NOT NULL DEFAULT now(),
  first_run_id      bigint REFERENCES canon.ingestion_runs (id),
  last_run_id       bigint REFERENCES canon.ingestion_runs (id),
  attempts          integer NOT NULL DEFAULT 1 CHECK (attempts >= 1),
  resolved_at       timestamptz,
  note              text,
  UNIQUE (source_table, source_pk),
  CHECK (jsonb_typeof(candidates) = 'array' AND jsonb_array_length(candidates) <= 5)
);
CREATE INDEX identity_unmatched_open_idx ON canon.identity_unmatched (last_attempt_at) WHERE status = 'OPEN';
COMMENT ON TABLE canon.identity_unmatched IS 'Why a lead has no person: reason, normalised keys, up to 5 candidates, retry bookkeeping.';

CREATE TABLE canon.identity_origin (
  person_key         uuid PRIMARY KEY REFERENCES canon.identity_registry (person_key),
  origin_tag         text NOT NULL CHECK (origin_tag IN ('cabinet_lead')),
  origin_source_id   text NOT NULL,
  confidence_level   text NOT NULL CHECK (confidence_level IN ('HIGH', 'MEDIUM', 'LOW')),
  origin_created_at  timestamp without time zone,
  decided_by         text NOT NULL CHECK (decided_by IN ('system', 'manual')),
  decided_at         timestamptz NOT NULL DEFAULT now(),
  run_id             bigint REFERENCES canon.ingestion_runs (id)
);
CREATE INDEX identity_origin_source_idx ON canon.identity_origin (origin_source_id);
COMMENT ON TABLE canon.identity_origin IS 'One row per person that came from a cabinet lead; written in the same transaction as the lead link.';

CREATE TABLE canon.claim_rules (
  milestone        integer NOT NULL CHECK (milestone > 0),
  trips_threshold  integer NOT NULL CHECK (trips_threshold > 0),
  amount           numeric(12, 2) NOT NULL CHECK (amount >= 0),
  currency         text NOT NULL DEFAULT 'PEN',
  window_days      integer NOT NULL CHECK (window_days > 0),
  valid_from       date NOT NULL DEFAULT DATE '2000-01-01',
  valid_to         date,
  PRIMARY KEY (milestone, valid_from),
  CHECK (valid_to IS NULL OR valid_to > valid_from)
);
INSERT INTO canon.claim_rules (milestone, trips_threshold, amount, currency, window_days) VALUES
  (1, 1, 25, 'PEN', 14),
  (5, 5, 35, 'PEN', 14),
  (25, 25, 100, 'PEN', 14);
COMMENT ON TABLE canon.claim_rules IS 'Milestones of the 14-day cabinet claim: trips threshold, amount, currency, window, validity (by lead_date).';

CREATE TABLE canon.claims_yango_cabinet_14d (
  lead_source_pk   text NOT NULL,
  milestone        integer NOT NULL CHECK (milestone > 0),
  person_key       uuid REFERENCES canon.identity_registry (person_key),
  driver_id        text,
  lead_date        date NOT NULL,
  amount_expected  numeric(12, 2) NOT NULL CHECK (amount_expected >= 0),
  currency         text NOT NULL DEFAULT 'PEN',
  status           text NOT NULL CHECK (status IN ('expected', 'generated', 'paid', 'rejected', 'expired')),
  generated_at     timestamptz,
  paid_at          timestamptz,
  run_id           bigint REFERENCES canon.ingestion_runs (id),
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (lead_source_pk, milestone)
);
CREATE INDEX claims_yango_cabinet_14d_lead_date_idx ON canon.claims_yango_cabinet_14d (lead_date);
COMMENT ON TABLE canon.claims_yango_cabinet_14d IS 'One claim per (lead_source_pk, milestone). The job never overwrites a paid or rejected claim.';

-- Source contract: what the product reads from the upstream tables.
CREATE TABLE canon.source_contract (
  table_name   text NOT NULL,
  column_name  text NOT NULL,
  type_family  text NOT NULL CHECK (type_family IN ('text', 'integer', 'timestamp', 'date', 'boolean', 'numeric')),
  PRIMARY KEY (table_name, column_name)
);
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
  ('summary_daily', 'count_orders_completed', 'integer');
COMMENT ON TABLE canon.source_contract IS 'Columns of the upstream tables the product reads, with the type family each must have.';

-- Down Migration
DROP SCHEMA ops CASCADE;
DROP SCHEMA canon CASCADE;
