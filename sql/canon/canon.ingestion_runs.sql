-- One row per run of any job of the product (SPEC 8): parameters, stats, durations, outcome.
-- Written by ops.reconcile_cabinet_leads_pipeline and the ops.* tools; read by status, report,
-- alerts and people.
CREATE TABLE canon.ingestion_runs (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  job_name        text NOT NULL,
  status          text NOT NULL CHECK (status IN ('RUNNING', 'COMPLETED', 'FAILED', 'SKIPPED')),
  dry_run         boolean NOT NULL DEFAULT false,
  source_tables   jsonb NOT NULL DEFAULT '[]'::jsonb,
  params          jsonb NOT NULL DEFAULT '{}'::jsonb,
  scope_date_from date,
  scope_date_to   date,
  stats           jsonb NOT NULL DEFAULT '{}'::jsonb,
  error_message   text,
  error_sqlstate  text,
  started_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
  completed_at    timestamptz,
  created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
  trigger         text NOT NULL DEFAULT 'psql',
  client_host     text,
  client_pid      integer,
  backend_pid     integer NOT NULL DEFAULT pg_backend_pid(),
  backend_start   timestamptz,
  worker_job_id   text,
  db_user         text NOT NULL DEFAULT CURRENT_USER,
  CONSTRAINT ingestion_runs_check CHECK ((status = 'RUNNING') = (completed_at IS NULL))
);

CREATE INDEX ingestion_runs_created_at_idx ON canon.ingestion_runs (created_at DESC);
CREATE INDEX ingestion_runs_job_status_idx ON canon.ingestion_runs (job_name, status, created_at DESC);

COMMENT ON TABLE canon.ingestion_runs IS
  'One row per run of any job of the product, with its parameters, stats and outcome.';
