-- Limbo counts of every completed run over all leads (SPEC 9), written by ops.snapshot_limbo
-- (step 8); the time series people read is ops.v_limbo_history.
CREATE TABLE ops.limbo_snapshots (
  run_id               bigint PRIMARY KEY,
  taken_at             timestamptz NOT NULL DEFAULT now(),
  business_date        date NOT NULL,
  leads                integer NOT NULL CHECK (leads >= 0),
  leads_with_identity  integer NOT NULL CHECK (leads_with_identity >= 0),
  leads_with_driver    integer NOT NULL CHECK (leads_with_driver >= 0),
  limbo_no_identity    integer NOT NULL CHECK (limbo_no_identity >= 0),
  limbo_no_driver      integer NOT NULL CHECK (limbo_no_driver >= 0),
  limbo_no_trips_14d   integer NOT NULL CHECK (limbo_no_trips_14d >= 0),
  limbo_trips_no_claim integer NOT NULL CHECK (limbo_trips_no_claim >= 0),
  limbo_ok             integer NOT NULL CHECK (limbo_ok >= 0),
  CONSTRAINT limbo_snapshots_run_id_fkey FOREIGN KEY (run_id) REFERENCES canon.ingestion_runs(id) ON DELETE CASCADE,
  CONSTRAINT limbo_snapshots_check CHECK (((((limbo_no_identity + limbo_no_driver) + limbo_no_trips_14d) + limbo_trips_no_claim) + limbo_ok) = leads)
);

CREATE INDEX limbo_snapshots_taken_at_idx ON ops.limbo_snapshots (taken_at DESC, run_id DESC);

COMMENT ON TABLE ops.limbo_snapshots IS
  'Limbo counts of every completed run over all leads (written by ops.snapshot_limbo, step 8); time series in ops.v_limbo_history.';
