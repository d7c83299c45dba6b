-- canon.lead_source_pk: the one definition of a cabinet lead's key, used by every
-- link, claim, view, tool and the import: the external_id without the blanks at its
-- ends (canon.blank_characters: spaces, TAB, CR/LF, NBSP, other Unicode spaces, zero
-- width spaces), or the integer id as text when nothing is left. 'NB-1', 'NB-1<TAB>'
-- and '<NBSP>NB-1' are one lead. A plain SQL function with no SET clause, so that it is
-- inlined into the views that evaluate it for every lead row (names schema-qualified).
-- canon.lead_source_pk(external_id, NULL) is an external id's key, NULL when blank.
CREATE OR REPLACE FUNCTION canon.lead_source_pk(p_external_id text, p_id integer)
RETURNS text
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
  SELECT COALESCE(NULLIF(pg_catalog.btrim(p_external_id, canon.blank_characters()), ''), p_id::text)
$$;
COMMENT ON FUNCTION canon.lead_source_pk(text, integer) IS
  'Lead key: COALESCE(NULLIF(btrim(external_id, canon.blank_characters()), ''''), id::text): the external_id without blanks at its ends, else the id.';
