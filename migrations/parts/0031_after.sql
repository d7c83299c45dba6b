-- After the views stop reading it: the max(id) watermark goes.
DROP FUNCTION IF EXISTS canon.lead_state_watermark();
-- An infinite lead_created_at is no lead date (canon.lead_date_of): such rows are undated.
UPDATE canon.lead_keys SET lead_date = NULL WHERE lead_date IS NOT NULL AND NOT isfinite(lead_date);
UPDATE canon.lead_keys_pending SET lead_date = NULL WHERE lead_date IS NOT NULL AND NOT isfinite(lead_date);
DELETE FROM canon.cabinet_lead_state WHERE NOT isfinite(lead_date);
