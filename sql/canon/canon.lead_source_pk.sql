-- canon.lead_source_pk: the one definition of a cabinet lead's key, used by every
-- link, claim, view and tool: the trimmed external_id, or the integer id as text.
CREATE OR REPLACE FUNCTION canon.lead_source_pk(p_external_id text, p_id integer)
RETURNS text
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
  SELECT COALESCE(NULLIF(btrim(p_external_id), ''), p_id::text)
$$;
COMMENT ON FUNCTION canon.lead_source_pk(text, integer) IS 'Lead key: COALESCE(NULLIF(btrim(external_id), ''''), id::text).';
