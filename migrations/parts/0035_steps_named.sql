-- Steps 4b-6 are functions of their own (canon.mark_retries_due, canon.select_lead_batch,
-- canon.link_decisions, called by the pipeline procedure): the function that did them all goes.
DROP FUNCTION IF EXISTS canon.match_cabinet_leads(bigint, date, integer, boolean);
DROP FUNCTION IF EXISTS canon.lead_rows_since_read();
DROP FUNCTION IF EXISTS canon.local_snapshot_xmin(pg_snapshot);
