-- Existing rows keyed by the old definition (btrim of spaces only) are brought to the new
-- one: keys re-keyed in every table that stores one, leads that were two under the old key
-- merged, the claims made twice set aside for finance. Recorded as a run
-- (canon.ingestion_runs, job_name repair_lead_keys) and in canon.identity_audit; nothing
-- to do (a new database, no padded ids) writes nothing.
SELECT ops.repair_lead_keys('migration 0029: lead keys re-keyed to canon.lead_source_pk (blanks at the ends of external_id: spaces, TAB, CR/LF, NBSP, other Unicode spaces)');
