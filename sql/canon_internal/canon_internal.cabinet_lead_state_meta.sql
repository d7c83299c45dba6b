-- Internal bookkeeping of the stored lead state (one row): the last daily sweep, whether every
-- lead must be evaluated again (claim rules changed), when the stored state last changed.
CREATE TABLE canon_internal.cabinet_lead_state_meta (
  singleton           boolean DEFAULT true PRIMARY KEY CHECK (singleton),
  last_sweep_date     date,
  last_sweep_at       timestamptz,
  full_refresh_needed boolean NOT NULL DEFAULT true,
  updated_at          timestamptz NOT NULL DEFAULT now(),
  changed_at          timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE canon_internal.cabinet_lead_state_meta IS
  'Lead state bookkeeping (internal): the last daily sweep, whether the claim rules changed (every lead is re-evaluated, and shown live until then), when the stored state last changed.';
COMMENT ON COLUMN canon_internal.cabinet_lead_state_meta.changed_at IS
  'Last time a stored lead state row was written or removed: a limbo snapshot taken after it copies the previous counts.';

INSERT INTO canon_internal.cabinet_lead_state_meta (singleton, full_refresh_needed) VALUES
  (true, true);
