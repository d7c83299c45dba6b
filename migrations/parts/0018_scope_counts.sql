-- Step 7's scope counters (leads in scope, with identity, driver, trips, ...) are kept with
-- the scope they were counted for: a run in which no stored lead state changed reuses them
-- instead of counting every stored row of the scope again (issue 7: run with nothing new).
ALTER TABLE canon.cabinet_lead_state_meta
  ADD COLUMN scope_counts jsonb,
  ADD COLUMN scope_counts_from date,
  ADD COLUMN scope_counts_at timestamptz;
COMMENT ON COLUMN canon.cabinet_lead_state_meta.scope_counts IS
  'Counters of the stored rows with lead_date >= scope_counts_from, counted at scope_counts_at; reused while changed_at <= scope_counts_at.';
