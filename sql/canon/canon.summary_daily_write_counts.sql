-- canon.summary_daily_write_counts: what canon.summary_daily_writes returns (the statistics
-- system's view of public.summary_daily), for canon.trip_drivers_changed to compare with
-- what it last acted on (canon_internal.source_scan_state).
CREATE TYPE canon.summary_daily_write_counts AS (
  relfilenode  oid,
  inserted     bigint,
  updated      bigint,
  deleted      bigint,
  blocks       bigint,
  stats_epoch  text
);
COMMENT ON TYPE canon.summary_daily_write_counts IS
  'What the statistics system says of public.summary_daily (canon.summary_daily_writes).';
