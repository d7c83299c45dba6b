-- canon.clear_lead_state_marks: removes the marks read by canon.take_lead_state_marks in
-- this transaction (same row or key and the same mark_seq), once their lead rows are
-- evaluated; a mark made again meanwhile (new mark_seq) stays for the next evaluation.
-- Returns the number of marks removed.
CREATE OR REPLACE FUNCTION canon.clear_lead_state_marks()
RETURNS integer
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_dirty integer;
  v_pending integer;
  v_paid integer;
BEGIN
  IF to_regclass('pg_temp.lead_state_marks') IS NULL THEN
    RETURN 0;
  END IF;
  DELETE FROM canon_internal.cabinet_lead_state_dirty d
  USING pg_temp.lead_state_marks m
  WHERE m.lead_source_pk IS NOT NULL AND NOT m.paid AND d.lead_source_pk = m.lead_source_pk AND d.mark_seq = m.mark_seq;
  GET DIAGNOSTICS v_dirty = ROW_COUNT;
  DELETE FROM canon_internal.cabinet_lead_state_paid_dirty d
  USING pg_temp.lead_state_marks m
  WHERE m.paid AND d.lead_source_pk = m.lead_source_pk AND d.mark_seq = m.mark_seq;
  GET DIAGNOSTICS v_paid = ROW_COUNT;
  DELETE FROM canon_internal.cabinet_lead_state_pending p
  USING pg_temp.lead_state_marks m
  WHERE m.lead_id IS NOT NULL AND p.lead_id = m.lead_id AND p.mark_seq = m.mark_seq;
  GET DIAGNOSTICS v_pending = ROW_COUNT;
  DROP TABLE pg_temp.lead_state_marks;
  RETURN v_dirty + v_pending + v_paid;
END
$$;
COMMENT ON FUNCTION canon.clear_lead_state_marks() IS
  'Removes exactly the lead state marks taken by canon.take_lead_state_marks in this transaction. Returns how many.';
