-- How long the job lock, or a graphile-worker job's lock, may be held before status and
-- doctor name the holder (ops.job_lock_holders, ops.worker_jobs_locked): longer than a
-- run can last. A run's statement_timeout is 15 min by default (--timeout); an hour
-- leaves room for a longer backfill run and is still well before the 2-hour alert.
INSERT INTO canon.settings (key, value, description, value_type, min_value, max_value) VALUES
  ('job_lock_held_max_minutes', '60',
   'Minutes after which a session holding the job lock, or a graphile-worker job or queue still locked, is longer than a run can last: status and doctor name it (JOB_LOCK_HELD_TOO_LONG, WORKER_JOB_LOCKED_TOO_LONG).',
   'INTEGER', 1, 10080)
ON CONFLICT DO NOTHING;

-- The product's roles, cabinet_leads_job and cabinet_leads_reader (NOLOGIN), and their
-- rights: created when the migrating role may create roles; otherwise the migration still
-- applies and `cabinet-leads migrate` prints the SQL a DBA must run (docs/security.md).
SELECT canon.grant_product_roles();
