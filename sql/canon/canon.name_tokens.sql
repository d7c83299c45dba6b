-- canon.name_tokens: the tokens of canon.normalize_name as a sorted text[], for
-- canon.name_similarity and for SQL that compares names token by token.
CREATE OR REPLACE FUNCTION canon.name_tokens(p_name text)
RETURNS text[]
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
  -- Not STRICT, so that it is inlined into the calling query (string_to_array(NULL) is NULL).
  SELECT pg_catalog.string_to_array(canon.normalize_name(p_name), ' ')
$$;
COMMENT ON FUNCTION canon.name_tokens(text) IS
  'Tokens of canon.normalize_name as a sorted, de-duplicated text[]; NULL when the name has no token.';
