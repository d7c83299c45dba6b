-- canon.mark_reopened_lead_due: BEFORE UPDATE trigger function on canon.identity_unmatched
-- (fired only when a lead is set back to OPEN other than by an attempt, e.g. by hand from
-- IGNORED). OPEN leads are retried only when due (retry_due): a reopened lead is due.
CREATE OR REPLACE FUNCTION canon.mark_reopened_lead_due()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  NEW.retry_due := true;
  RETURN NEW;
END
$$;
COMMENT ON FUNCTION canon.mark_reopened_lead_due() IS 'Trigger: an unmatched lead set back to OPEN by hand is due for a retry (retry_due).';
