-- canon.token_similarity: the score of canon.name_similarity on two token sets as
-- canon.name_tokens returns them (sorted, de-duplicated). The matcher compares names it
-- has already normalised (lead_keys.name_norm, driver_index.name_norm): their tokens are
-- string_to_array(name_norm, ' ') (normalize_name is idempotent), so it calls this
-- directly and does not normalise each name again for every pair (2 of the 3 parts of a
-- pair's cost).
CREATE OR REPLACE FUNCTION canon.token_similarity(a text[], b text[])
RETURNS numeric
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
AS $$
-- Token score on the canon.name_tokens sets A and B (raw or normalised names alike):
--   shared  = LEAST(tokens of A with a partner in B, tokens of B with a partner in A)
--   partner = the same token, or one typo apart when both have 5+ letters: edit
--             distance 1 (levenshtein) or two adjacent letters swapped (VINCENT/VINCNET)
--   jaccard = shared / (|A| + |B| - shared)
--   overlap = shared / min(|A|, |B|) when the shorter name has 2+ tokens (JUAN PEREZ is
--             all of PEREZ GOMEZ JUAN CARLOS), else shared / max(|A|, |B|) (JUAN alone
--             is not JUAN PEREZ)
--   score   = round((jaccard + overlap) / 2, 4); 1 for equal sets; 0 when either name
--             is NULL or has no token. Never below the SPEC 5 token score.
-- Tokens are at most 200 characters (canon.normalize_name), under levenshtein's 255
-- (longer ones are never compared by edit distance).
DECLARE
  na     integer := COALESCE(pg_catalog.cardinality(a), 0);
  nb     integer := COALESCE(pg_catalog.cardinality(b), 0);
  hit_a  integer := 0;
  hit_b  boolean[];
  shared numeric;
  x      text;
  y      text;
  lx     integer;
  ly     integer;
  d      integer;
  k      integer;
  hit    boolean;
  pair   boolean;
BEGIN
  IF na = 0 OR nb = 0 THEN
    RETURN 0.0000;
  END IF;
  IF a = b THEN
    RETURN 1.0000;
  END IF;
  hit_b := pg_catalog.array_fill(false, ARRAY[nb]);
  FOR i IN 1 .. na LOOP
    x := a[i];
    lx := pg_catalog.length(x);
    hit := false;
    FOR j IN 1 .. nb LOOP
      y := b[j];
      ly := pg_catalog.length(y);
      pair := x = y;
      IF NOT pair AND lx >= 5 AND ly >= 5 AND lx <= 255 AND ly <= 255 AND pg_catalog.abs(lx - ly) <= 1 THEN
        d := public.levenshtein_less_equal(x, y, 2);
        IF d <= 1 THEN
          pair := true;
        ELSIF d = 2 AND lx = ly THEN
          -- one adjacent transposition: first difference at k, swapped, rest equal
          k := 1;
          WHILE k <= lx AND pg_catalog.substr(x, k, 1) = pg_catalog.substr(y, k, 1) LOOP
            k := k + 1;
          END LOOP;
          pair := k < lx
            AND pg_catalog.substr(x, k, 1) = pg_catalog.substr(y, k + 1, 1)
            AND pg_catalog.substr(x, k + 1, 1) = pg_catalog.substr(y, k, 1)
            AND pg_catalog.substr(x, k + 2) = pg_catalog.substr(y, k + 2);
        END IF;
      END IF;
      IF pair THEN
        hit := true;
        hit_b[j] := true;
      END IF;
    END LOOP;
    IF hit THEN
      hit_a := hit_a + 1;
    END IF;
  END LOOP;
  shared := LEAST(hit_a, pg_catalog.cardinality(pg_catalog.array_positions(hit_b, true)));
  RETURN pg_catalog.round(
    (shared / (na + nb - shared)
     + shared / CASE WHEN LEAST(na, nb) >= 2 THEN LEAST(na, nb) ELSE GREATEST(na, nb) END) / 2,
    4);
END
$$;
COMMENT ON FUNCTION canon.token_similarity(text[], text[]) IS
  'Name similarity 0..1 of two token sets as canon.name_tokens returns them (the score of canon.name_similarity, without normalising again). 0 when either set is NULL or empty.';
