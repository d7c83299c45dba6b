-- canon.take_lead_state_marks: the marks a lead state evaluation consumes, as visible now,
-- into pg_temp.lead_state_marks (lead rows of canon_internal.cabinet_lead_state_pending, keys of
-- canon_internal.cabinet_lead_state_dirty and of canon_internal.cabinet_lead_state_paid_dirty
-- (paid), each with its mark_seq); adds those not read yet when
-- called again in the same transaction. Returns the lead rows newly taken (marked rows
-- and the rows of marked keys). canon.clear_lead_state_marks removes exactly these marks
-- afterwards: a row or key marked again meanwhile has a new mark_seq and stays.
-- Callers: canon.generate_cabinet_claims (step 7), ops.refresh_cabinet_lead_state.
CREATE OR REPLACE FUNCTION canon.take_lead_state_marks()
RETURNS integer[]
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
-- its temp table is made "IF NOT EXISTS" / dropped "IF EXISTS": no NOTICE for that in psql
SET client_min_messages = warning
AS $$
DECLARE
  v_ids integer[];
BEGIN
  CREATE TEMP TABLE IF NOT EXISTS lead_state_marks (lead_id integer, lead_source_pk text, mark_seq bigint NOT NULL,
                                                   paid boolean NOT NULL DEFAULT false)
    ON COMMIT DROP;
  -- Probed per mark when called again (the marks' statistics are rarely current: a plan of
  -- one row, then a scan of the marks taken per mark, 250 ms for 2,000 marks).
  CREATE INDEX IF NOT EXISTS lead_state_marks_row_idx ON pg_temp.lead_state_marks (lead_id, mark_seq);
  CREATE INDEX IF NOT EXISTS lead_state_marks_key_idx ON pg_temp.lead_state_marks (lead_source_pk, mark_seq);
  WITH taken AS (
    INSERT INTO pg_temp.lead_state_marks
    SELECT p.lead_id, NULL, p.mark_seq, false
    FROM canon_internal.cabinet_lead_state_pending p
    WHERE NOT EXISTS (SELECT 1 FROM pg_temp.lead_state_marks m WHERE m.lead_id = p.lead_id AND m.mark_seq = p.mark_seq)
    UNION ALL
    SELECT NULL, d.lead_source_pk, d.mark_seq, false
    FROM canon_internal.cabinet_lead_state_dirty d
    WHERE NOT EXISTS (SELECT 1 FROM pg_temp.lead_state_marks m
                      WHERE m.lead_source_pk = d.lead_source_pk AND m.mark_seq = d.mark_seq AND NOT m.paid)
    UNION ALL
    SELECT NULL, d.lead_source_pk, d.mark_seq, true
    FROM canon_internal.cabinet_lead_state_paid_dirty d
    WHERE NOT EXISTS (SELECT 1 FROM pg_temp.lead_state_marks m
                      WHERE m.lead_source_pk = d.lead_source_pk AND m.mark_seq = d.mark_seq AND m.paid)
    RETURNING lead_id, lead_source_pk
  )
  SELECT ARRAY(
    SELECT t.lead_id FROM taken t WHERE t.lead_id IS NOT NULL
    UNION
    SELECT unnest(canon.lead_ids_of_keys(ARRAY(SELECT t.lead_source_pk FROM taken t WHERE t.lead_source_pk IS NOT NULL))))
  INTO v_ids;
  RETURN v_ids;
END
$$;
COMMENT ON FUNCTION canon.take_lead_state_marks() IS
  'Reads the lead state marks (pending rows, dirty keys, keys whose paid claims changed) visible now into pg_temp.lead_state_marks and returns the lead rows they name; canon.clear_lead_state_marks removes exactly those marks.';
