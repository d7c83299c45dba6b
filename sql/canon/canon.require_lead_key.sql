-- canon.require_lead_key: the first check of every operator tool that takes a lead key
-- (ops.unlink_lead, ops.resolve_lead, ops.ignore_lead): a NULL or blank key is refused
-- with 22023 and a message naming the value, before anything is locked or read.
CREATE OR REPLACE FUNCTION canon.require_lead_key(p_lead_source_pk text)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF p_lead_source_pk IS NULL OR btrim(p_lead_source_pk) = '' THEN
    RAISE EXCEPTION 'invalid lead_source_pk %: expected a lead key', coalesce(quote_literal(p_lead_source_pk), 'NULL')
      USING ERRCODE = '22023';
  END IF;
END
$$;
COMMENT ON FUNCTION canon.require_lead_key(text) IS
  'Operator tools'' first check: refuses a NULL or blank lead key (22023, naming the value).';
