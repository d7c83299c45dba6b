-- Internal bookkeeping: how far each upstream table has been read, by commit order (the oldest
-- transaction in progress at the last read). Written by canon.key_changed_leads,
-- canon.refresh_driver_index and canon.trip_drivers_changed; docs/change-detection.md.
CREATE TABLE canon_internal.source_scan_state (
  source_table     text PRIMARY KEY CHECK (source_table IN ('module_ct_cabinet_leads', 'drivers', 'summary_daily')),
  seen_xmin        xid8,
  seen_snapshot    pg_snapshot,
  full_seen_xmin   xid8,
  blocks           bigint,
  relfilenode      oid,
  stats_epoch      text,
  tuples_accounted bigint,
  tuples_updated   bigint,
  tuples_deleted   bigint,
  rows_read        bigint,
  rows_dated       bigint,
  full_read_at     timestamptz,
  read_at          timestamptz,
  run_id           bigint
);

COMMENT ON TABLE canon_internal.source_scan_state IS
  'Bookkeeping (internal): how far each upstream table has been read, by commit order. Written by canon.key_changed_leads, canon.refresh_driver_index and canon.trip_drivers_changed; see docs/change-detection.md.';
COMMENT ON COLUMN canon_internal.source_scan_state.seen_xmin IS
  'Oldest transaction still in progress when the last read started (pg_snapshot_xmin of its snapshot): every row version written by an older transaction was read then. NULL: read every row.';
COMMENT ON COLUMN canon_internal.source_scan_state.seen_snapshot IS
  'summary_daily: the snapshot of the last read of its appended pages; rows not visible to it are counted as new (for the insert accounting).';
COMMENT ON COLUMN canon_internal.source_scan_state.full_seen_xmin IS
  'summary_daily: seen_xmin of the last read of the whole table; advances only with a whole read.';
COMMENT ON COLUMN canon_internal.source_scan_state.blocks IS
  'summary_daily: its size in pages at the last read; pages from blocks - 1 on are read every run.';
COMMENT ON COLUMN canon_internal.source_scan_state.tuples_accounted IS
  'summary_daily: inserts of the statistics system accounted for: found in appended pages one by one, or by a whole read.';
COMMENT ON COLUMN canon_internal.source_scan_state.rows_dated IS
  'module_ct_cabinet_leads: dated rows (finite lead_created_at) at the last read; the lead state holds one row for each once evaluated.';

INSERT INTO canon_internal.source_scan_state (source_table) VALUES
  ('module_ct_cabinet_leads'),
  ('drivers'),
  ('summary_daily');
