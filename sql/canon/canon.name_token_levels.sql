-- canon.name_token_levels: how the tokens of a lead's name (canon.name_tokens form) meet a
-- driver's, token by token, for the probabilistic tier. One row per lead token with its best
-- partner among the driver's tokens and the level: EXACT, PHONETIC (canon.name_phonetic),
-- TYPO (canon.one_typo), GLUED (two tokens typed as one, JUANCARLOS for JUAN CARLOS, or a
-- particle glued on, DELACRUZ for CRUZ; either side), INITIAL, NONE. Then one row per
-- driver token no lead token partners (MISSING: a name the lead left out). Two-letter
-- tokens are fragments of split names and are left out, as in canon.name_veto.
-- PL/pgSQL loops over a handful of tokens, simple expressions only (cheaper per pair than SQL CTEs).
CREATE OR REPLACE FUNCTION canon.name_token_levels(p_lead text[], p_driver text[])
RETURNS TABLE (side text, token text, partner text, level text)
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
ROWS 6
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  l text[];
  d text[];
  lph text[];
  dph text[];
  d_hit boolean[];
  nl integer;
  nd integer;
  best integer;
  best_y text;
  r integer;
  x text;
  y text;
  lx integer;
  ly integer;
  k integer;
BEGIN
  -- Only simple expressions below (no subquery per pair): each would be a query of its own.
  -- the inputs are canon.name_tokens sets (distinct); loops, not queries: no SPI per call
  l := '{}';
  lph := '{}';
  FOREACH x IN ARRAY coalesce(p_lead, '{}') LOOP
    IF length(x) <> 2 THEN
      l := l || x;
      lph := lph || CASE WHEN length(x) >= 3 THEN canon.name_phonetic(x) END;
    END IF;
  END LOOP;
  d := '{}';
  dph := '{}';
  FOREACH y IN ARRAY coalesce(p_driver, '{}') LOOP
    IF length(y) <> 2 THEN
      d := d || y;
      dph := dph || CASE WHEN length(y) >= 3 THEN canon.name_phonetic(y) END;
    END IF;
  END LOOP;
  nl := cardinality(l);
  nd := cardinality(d);
  -- each token's phonetic key once (above), not once per pair
  d_hit := array_fill(false, ARRAY[greatest(nd, 1)]);
  FOR i IN 1 .. nl LOOP
    x := l[i];
    lx := length(x);
    best := 9;
    best_y := NULL;
    FOR j IN 1 .. nd LOOP
      y := d[j];
      ly := length(y);
      r := NULL;
      IF x = y THEN
        r := 1;
      ELSIF lph[i] = dph[j] THEN
        r := 2;
      ELSIF lx >= 4 AND ly >= 4 AND lx <= 255 AND ly <= 255 AND abs(lx - ly) <= 1
            AND public.levenshtein_less_equal(x, y, 2) <= 2 THEN
        -- one edit, or two adjacent letters swapped (as canon.one_typo)
        IF public.levenshtein_less_equal(x, y, 1) <= 1 THEN
          r := 3;
        ELSIF lx = ly THEN
          k := 1;
          WHILE k <= lx AND substr(x, k, 1) = substr(y, k, 1) LOOP
            k := k + 1;
          END LOOP;
          IF k < lx AND substr(x, k, 1) = substr(y, k + 1, 1) AND substr(x, k + 1, 1) = substr(y, k, 1)
             AND substr(x, k + 2) = substr(y, k + 2) THEN
            r := 3;
          END IF;
        END IF;
      END IF;
      IF r IS NULL THEN
        -- glued: a particle glued on (DELACRUZ, CRUZ) either side, or two tokens typed as one
        IF (ly >= 3 AND x IN ('DE' || y, 'DEL' || y, 'DELA' || y, 'DELAS' || y, 'DELOS' || y, 'LA' || y, 'LOS' || y))
           OR (lx >= 3 AND y IN ('DE' || x, 'DEL' || x, 'DELA' || x, 'DELAS' || x, 'DELOS' || x, 'LA' || x, 'LOS' || x)) THEN
          r := 4;
        ELSIF lx >= 6 AND ly >= 3 AND ly < lx
              AND ((left(x, ly) = y AND substr(x, ly + 1) = ANY (d)) OR (right(x, ly) = y AND left(x, lx - ly) = ANY (d))) THEN
          r := 4;
        ELSIF ly >= 6 AND lx >= 3 AND lx < ly
              AND ((left(y, lx) = x AND substr(y, lx + 1) = ANY (l)) OR (right(y, lx) = x AND left(y, ly - lx) = ANY (l))) THEN
          r := 4;
        ELSIF (lx = 1 AND ly > 1 AND left(y, 1) = x) OR (ly = 1 AND lx > 1 AND left(x, 1) = y) THEN
          r := 5;
        END IF;
      END IF;
      IF r IS NOT NULL THEN
        d_hit[j] := true;
        IF r < best THEN
          best := r;
          best_y := y;
        END IF;
      END IF;
    END LOOP;
    side := 'LEAD';
    token := x;
    partner := best_y;
    level := CASE best WHEN 1 THEN 'EXACT' WHEN 2 THEN 'PHONETIC' WHEN 3 THEN 'TYPO' WHEN 4 THEN 'GLUED'
                       WHEN 5 THEN 'INITIAL' ELSE 'NONE' END;
    RETURN NEXT;
  END LOOP;
  FOR j IN 1 .. nd LOOP
    IF NOT d_hit[j] THEN
      side := 'DRIVER';
      token := d[j];
      partner := NULL;
      level := 'MISSING';
      RETURN NEXT;
    END IF;
  END LOOP;
END
$$;
COMMENT ON FUNCTION canon.name_token_levels(text[], text[]) IS
  'Token-by-token comparison of a lead''s name with a driver''s (probabilistic tier): per lead token its best partner and level (EXACT, PHONETIC, TYPO, GLUED, INITIAL, NONE); per driver token without partner a MISSING row. Two-letter fragments left out.';
