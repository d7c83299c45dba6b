-- canon.require_note: every operator tool and repair that changes identities or claims
-- records why (ops.unlink_lead, ops.resolve_lead, ops.ignore_lead, ops.repair_lead_keys):
-- a NULL or blank note is refused with 22023, 'a note is required: <p_ask>', p_ask saying
-- what the note should explain ('say why lead ''X'' is ignored').
CREATE OR REPLACE FUNCTION canon.require_note(p_note text, p_ask text)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF p_note IS NULL OR btrim(p_note) = '' THEN
    RAISE EXCEPTION 'a note is required: %', p_ask USING ERRCODE = '22023';
  END IF;
END
$$;
COMMENT ON FUNCTION canon.require_note(text, text) IS
  'Operator tools'' note check: refuses a NULL or blank note (22023, ''a note is required: '' followed by p_ask, what the note should say).';
