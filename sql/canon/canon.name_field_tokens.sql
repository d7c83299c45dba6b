-- canon.name_field_tokens: the tokens of one name field (first_name, middle_name,
-- last_name) split as canon.normalize_name splits a name (accents removed, upper case,
-- every run of anything but A-Z0-9 separates), to tell which field a name token was typed
-- in: the name roles of canon_internal.driver_name_roles and of a lead (canon.name_veto_of).
-- Unsorted, with repeats, particles and numbers left in (they never equal a token of
-- canon.name_tokens, so they never decide anything): one regexp split per field, several
-- times cheaper than canon.name_tokens, paid for every driver of a full index build.
CREATE OR REPLACE FUNCTION canon.name_field_tokens(p_field text)
RETURNS text[]
LANGUAGE sql
STABLE
PARALLEL SAFE
AS $$
  -- STABLE as unaccent is, not STRICT and without SET: so it is inlined into the calling
  -- query (a call per field costs twice the expression). The first 200 characters, as
  -- canon.normalize_name. NULL when the field has no token.
  SELECT nullif(pg_catalog.array_remove(pg_catalog.regexp_split_to_array(
           pg_catalog.upper(pg_catalog.left(public.unaccent('public.unaccent'::regdictionary, pg_catalog.left(p_field, 200)), 200)
                            COLLATE "C"),
           '[^A-Z0-9]+'), ''), '{}')
$$;
COMMENT ON FUNCTION canon.name_field_tokens(text) IS
  'Tokens of one name field, split as canon.normalize_name splits (accents removed, upper case, on anything but A-Z0-9); unsorted, repeats, particles and numbers kept; NULL when none. Tells which field a name token was typed in.';
