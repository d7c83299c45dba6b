-- Step 7 notices appended trip rows precisely (the drivers in the pages appended since the
-- last look) instead of re-reading every open window; the snapshot copies the previous
-- counts when no lead state changed (issue 7: steady run < 2 s, idle run < 300 ms).
CREATE TYPE canon.summary_daily_write_counts AS (
  relfilenode  oid,
  inserted     bigint,
  modified     bigint,
  blocks       bigint
);
COMMENT ON TYPE canon.summary_daily_write_counts IS
  'public.summary_daily file node, cumulative inserted and updated+deleted rows, size in pages (canon.summary_daily_writes()).';

ALTER TABLE canon.cabinet_lead_state_meta
  DROP COLUMN trips_fingerprint,
  ADD COLUMN trips_relfilenode oid,
  ADD COLUMN trips_inserted bigint,
  ADD COLUMN trips_modified bigint,
  ADD COLUMN trips_blocks bigint,
  ADD COLUMN changed_at timestamptz NOT NULL DEFAULT now();
COMMENT ON COLUMN canon.cabinet_lead_state_meta.trips_blocks IS
  'Size of public.summary_daily in pages when step 7 last read its new rows: appended rows are looked for from there.';
COMMENT ON COLUMN canon.cabinet_lead_state_meta.changed_at IS
  'Last time a stored lead state row was written or removed: a limbo snapshot taken after it copies the previous counts.';

DROP FUNCTION canon.summary_daily_fingerprint();
