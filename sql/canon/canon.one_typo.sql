-- canon.one_typo: two different tokens of 4+ letters one typing error apart: one character
-- changed, missing or extra (levenshtein 1), or two adjacent ones swapped (JOSE/JSOE).
-- The TYPO level of canon.name_token_levels. Plain SQL without SET: inlined per pair.
CREATE OR REPLACE FUNCTION canon.one_typo(p_a text, p_b text)
RETURNS boolean
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
  SELECT length(p_a) >= 4 AND length(p_b) >= 4 AND length(p_a) <= 255 AND length(p_b) <= 255
     AND abs(length(p_a) - length(p_b)) <= 1 AND p_a <> p_b
     AND (public.levenshtein_less_equal(p_a, p_b, 1) <= 1
          OR (length(p_a) = length(p_b) AND public.levenshtein_less_equal(p_a, p_b, 2) = 2
              AND EXISTS (SELECT 1 FROM pg_catalog.generate_series(1, length(p_a) - 1) k
                          WHERE overlay(p_a PLACING pg_catalog.substr(p_a, k + 1, 1) || pg_catalog.substr(p_a, k, 1) FROM k FOR 2) = p_b)))
$$;
COMMENT ON FUNCTION canon.one_typo(text, text) IS
  'Two different tokens of 4+ letters one typing error apart: levenshtein 1 or an adjacent swap.';
