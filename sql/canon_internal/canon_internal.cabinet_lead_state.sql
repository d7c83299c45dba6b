-- Internal cache: the stored state of every dated lead row (what canon.lead_status_live says,
-- as of evaluated_at). Written by the pipeline's lead state steps (canon.refresh_lead_state) and
-- the ops.* tools; read by canon.v_cabinet_lead_status_current, which shows the live state of a
-- row whose stored state is not current. Checked by ops.check_caches (LEAD_STATE_CURRENT).
CREATE TABLE canon_internal.cabinet_lead_state (
  lead_id             integer PRIMARY KEY,
  lead_source_pk      text NOT NULL,
  lead_date           date NOT NULL,
  person_key          uuid,
  driver_id           text,
  window_days         integer,
  window_end          date,
  trips_in_window     bigint NOT NULL,
  trip_rows_in_window bigint NOT NULL,
  currency            text,
  m1_trips_threshold  integer,
  m1_amount           numeric(12,2),
  reached_m1          boolean NOT NULL,
  m5_trips_threshold  integer,
  m5_amount           numeric(12,2),
  reached_m5          boolean NOT NULL,
  m25_trips_threshold integer,
  m25_amount          numeric(12,2),
  reached_m25         boolean NOT NULL,
  expected_amount     numeric(12,2) NOT NULL,
  has_claim_m1        boolean NOT NULL,
  has_claim_m5        boolean NOT NULL,
  has_claim_m25       boolean NOT NULL,
  limbo_stage         text NOT NULL CHECK (limbo_stage IN ('NO_IDENTITY', 'NO_DRIVER', 'NO_TRIPS_14D', 'TRIPS_NO_CLAIM', 'OK')),
  evaluated_at        timestamptz NOT NULL DEFAULT now(),
  evaluated_run_id    bigint,
  key_rows            integer NOT NULL DEFAULT 1,
  paid_claims         integer NOT NULL DEFAULT 0,
  paid_amount         numeric(12,2) NOT NULL DEFAULT 0
) WITH (autovacuum_vacuum_scale_factor='0.02', autovacuum_vacuum_threshold='1000');

CREATE INDEX cabinet_lead_state_lead_date_idx ON canon_internal.cabinet_lead_state (lead_date);
CREATE INDEX cabinet_lead_state_lead_source_pk_idx ON canon_internal.cabinet_lead_state USING hash (lead_source_pk);
-- The few rows sharing a lead key, which the weekly funnel counts per key (canon.funnel_week_counts_of).
CREATE INDEX cabinet_lead_state_shared_key_idx ON canon_internal.cabinet_lead_state (lead_id)
  WHERE key_rows > 1;
-- The oldest stored leads of the stages the report lists (ops.oldest_actionable_leads).
CREATE INDEX cabinet_lead_state_no_driver_idx ON canon_internal.cabinet_lead_state (lead_date)
  WHERE limbo_stage = 'NO_DRIVER';
CREATE INDEX cabinet_lead_state_trips_no_claim_idx ON canon_internal.cabinet_lead_state (lead_date)
  WHERE limbo_stage = 'TRIPS_NO_CLAIM';
CREATE INDEX cabinet_lead_state_window_end_idx ON canon_internal.cabinet_lead_state (window_end)
  WHERE driver_id IS NOT NULL;
-- The leads of the drivers whose trip rows a run found written (canon.schedule_lead_state):
-- probed per driver instead of a pass over every stored lead.
CREATE INDEX cabinet_lead_state_driver_idx ON canon_internal.cabinet_lead_state (driver_id)
  WHERE driver_id IS NOT NULL;

CREATE TRIGGER cabinet_lead_state_count_delete
  AFTER DELETE ON canon_internal.cabinet_lead_state REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.count_lead_state_changes();
CREATE TRIGGER cabinet_lead_state_count_insert
  AFTER INSERT ON canon_internal.cabinet_lead_state REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.count_lead_state_changes();
CREATE TRIGGER cabinet_lead_state_count_truncate
  AFTER TRUNCATE ON canon_internal.cabinet_lead_state
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.count_lead_state_changes();
CREATE TRIGGER cabinet_lead_state_count_update
  AFTER UPDATE ON canon_internal.cabinet_lead_state REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.count_lead_state_changes();

COMMENT ON COLUMN canon_internal.cabinet_lead_state.paid_claims IS
  'Claims of this key with status paid, of the milestones the lead has a threshold for (what the weekly funnel counts as paid); a change of status marks the key in canon_internal.cabinet_lead_state_paid_dirty.';
COMMENT ON COLUMN canon_internal.cabinet_lead_state.paid_amount IS
  'The amount_expected of those paid claims, summed.';
COMMENT ON TABLE canon_internal.cabinet_lead_state IS
  'One row per cabinet lead row with lead_created_at: canon.v_cabinet_lead_status as of evaluated_at, maintained by the pipeline (canon.generate_cabinet_claims) and the ops.* tools. Read through ops.v_cabinet_leads_limbo.';
