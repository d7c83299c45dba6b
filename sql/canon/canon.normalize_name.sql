-- canon.normalize_name: the one comparison form of a person's name (SPEC 5), stored in
-- the driver matching index and in match evidence, and compared by canon.name_similarity.
CREATE OR REPLACE FUNCTION canon.normalize_name(p_name text)
RETURNS text
LANGUAGE sql
IMMUTABLE
STRICT
PARALLEL SAFE
AS $$
  -- Only the first 200 characters count, so a 10 kB string costs what a name costs.
  -- Accents go (unaccent with its dictionary named: no search_path needed; Ñ -> N), then
  -- ASCII upper case (COLLATE "C": the same result on every server). Every run of
  -- anything but A-Z0-9 (spaces, hyphens, punctuation, other scripts, emoji) separates
  -- tokens. Particles and tokens without a letter (numbers) are dropped; the rest is a
  -- set: de-duplicated, sorted, joined by single spaces. NULL when no token remains.
  SELECT pg_catalog.string_agg(DISTINCT token, ' ' ORDER BY token)
  FROM pg_catalog.regexp_split_to_table(
         pg_catalog.upper(
           pg_catalog.left(public.unaccent('public.unaccent'::regdictionary, pg_catalog.left(p_name, 200)), 200)
           COLLATE "C"),
         '[^A-Z0-9]+') AS token
  WHERE token ~ '[A-Z]'
    AND token NOT IN ('DE', 'DEL', 'LA', 'LOS', 'LAS', 'EL', 'Y', 'E')
$$;
COMMENT ON FUNCTION canon.normalize_name(text) IS
  'Name as its token set: accents removed, upper case, punctuation to spaces, particles (DE DEL LA LOS LAS EL Y E) and numbers dropped, tokens sorted and de-duplicated, joined by single spaces (''María  de la  Cruz'' -> CRUZ MARIA); first 200 characters only. NULL when no token remains. Idempotent.';
