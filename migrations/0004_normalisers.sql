-- Up Migration
-- snapshot of sql/canon/canon.normalize_phone.sql
-- canon.normalize_phone: the one comparison key for phone numbers (SPEC 5), used by the
-- driver matching index, lead matching (R1_PHONE_EXACT) and the shared-values view.
CREATE OR REPLACE FUNCTION canon.normalize_phone(p_phone text)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
STRICT
PARALLEL SAFE
AS $$
-- PL/pgSQL because it is 8 to 10 times faster than the same steps as a SQL function
-- with subqueries (2 us against 18-24 us a call, PostgreSQL 15 and 18).
DECLARE
  -- ASCII digits only, then leading zeros off (the 00 international prefix, a trunk 0)
  v_digits text := pg_catalog.ltrim(pg_catalog.regexp_replace(p_phone, '[^0-9]+', '', 'g'), '0');
BEGIN
  -- country code 51 off an 11-digit number, and a trunk 0 written after it
  -- (+51 (01) 456-7890 is the same line as (01) 456-7890)
  IF pg_catalog.length(v_digits) = 11 AND pg_catalog.left(v_digits, 2) = '51' THEN
    v_digits := pg_catalog.ltrim(pg_catalog.substr(v_digits, 3), '0');
  END IF;
  -- junk: too short for a phone (< 7), longer than E.164 allows (> 15), one digit repeated
  IF pg_catalog.length(v_digits) NOT BETWEEN 7 AND 15
     OR pg_catalog.btrim(v_digits, pg_catalog.left(v_digits, 1)) = '' THEN
    RETURN NULL;
  END IF;
  RETURN v_digits;
END
$$;
COMMENT ON FUNCTION canon.normalize_phone(text) IS
  'Phone comparison key, the national number: ASCII digits only, leading zeros stripped, country code 51 stripped from 11-digit numbers (''+51 977 456 321'' -> 977456321). NULL when fewer than 7 or more than 15 digits remain or all digits are the same. Idempotent; never raises.';

-- snapshot of sql/canon/canon.normalize_plate.sql
-- canon.normalize_plate: the one comparison key for vehicle plates (SPEC 5), used by the
-- driver matching index and lead matching (R3_PLATE_EXACT_NAME_SIMILAR, R3B).
CREATE OR REPLACE FUNCTION canon.normalize_plate(p_plate text)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
STRICT
PARALLEL SAFE
AS $$
-- PL/pgSQL because it is 3 to 4 times faster than a SQL function with a subquery.
DECLARE
  -- upper case first (ASCII rules, COLLATE "C": the same on every server), then A-Z0-9
  v_plate text := pg_catalog.regexp_replace(pg_catalog.upper(p_plate COLLATE "C"), '[^A-Z0-9]+', '', 'g');
BEGIN
  -- junk: outside 4..12 characters (Peruvian plates have 6), no digit at all (SIN PLACA,
  -- NO TIENE, PENDIENTE) or one character repeated (000000, XXXXXX)
  IF pg_catalog.length(v_plate) NOT BETWEEN 4 AND 12
     OR v_plate !~ '[0-9]'
     OR pg_catalog.btrim(v_plate, pg_catalog.left(v_plate, 1)) = '' THEN
    RETURN NULL;
  END IF;
  RETURN v_plate;
END
$$;
COMMENT ON FUNCTION canon.normalize_plate(text) IS
  'Plate comparison key: upper-cased, then only A-Z and 0-9 kept (''abc-123 x'' -> ABC123X). NULL when fewer than 4 or more than 12 characters remain, when no digit remains (SIN PLACA) or all characters are the same. Idempotent; never raises.';

-- snapshot of sql/canon/canon.normalize_license.sql
-- canon.normalize_license: the one comparison key for driving licence numbers (SPEC 5),
-- used by the driver matching index and lead matching (R2_LICENSE_EXACT).
CREATE OR REPLACE FUNCTION canon.normalize_license(p_license text)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
STRICT
PARALLEL SAFE
AS $$
-- PL/pgSQL because it is 3 to 4 times faster than a SQL function with a subquery.
DECLARE
  -- upper case first (ASCII rules, COLLATE "C": the same on every server), then A-Z0-9
  v_license text := pg_catalog.regexp_replace(pg_catalog.upper(p_license COLLATE "C"), '[^A-Z0-9]+', '', 'g');
BEGIN
  -- junk: outside 5..20 characters (a Peruvian licence is a letter and the 8-digit DNI),
  -- no digit at all (NO TIENE, EN TRAMITE) or one character repeated (00000000)
  IF pg_catalog.length(v_license) NOT BETWEEN 5 AND 20
     OR v_license !~ '[0-9]'
     OR pg_catalog.btrim(v_license, pg_catalog.left(v_license, 1)) = '' THEN
    RETURN NULL;
  END IF;
  RETURN v_license;
END
$$;
COMMENT ON FUNCTION canon.normalize_license(text) IS
  'Licence comparison key: upper-cased, then only A-Z and 0-9 kept (''q-4567 8901'' -> Q45678901). NULL when fewer than 5 or more than 20 characters remain, when no digit remains (NO TIENE) or all characters are the same. Idempotent; never raises.';

-- snapshot of sql/canon/canon.normalize_name.sql
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

-- snapshot of sql/canon/canon.name_tokens.sql
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

-- snapshot of sql/canon/canon.name_similarity.sql
-- canon.name_similarity: how alike two person names are, 0..1 (SPEC 5), for lead
-- matching (R3/R3B at >= 0.66, AMBIGUOUS when the best two are < 0.15 apart).
CREATE OR REPLACE FUNCTION canon.name_similarity(p_name_a text, p_name_b text)
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
-- PL/pgSQL on purpose: it keeps the tokeniser's plan cached between calls, where a
-- SQL-language version re-plans the nested canon.normalize_name call on every pair
-- (measured per pair: 16 us against 470 us on PostgreSQL 15, 15 us against 174 us on 18).
-- Tokens are at most 200 characters (canon.normalize_name), under levenshtein's 255.
DECLARE
  a      text[] := canon.name_tokens(p_name_a);
  b      text[] := canon.name_tokens(p_name_b);
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
COMMENT ON FUNCTION canon.name_similarity(text, text) IS
  'Name similarity 0..1 on the token sets of canon.name_tokens (raw or normalised names): (jaccard + overlap) / 2, overlap on the shorter name when it has 2+ tokens; tokens of 5+ letters one typo apart (edit or adjacent swap) count as shared. 0 when either name is NULL or has no token. Symmetric; never raises.';
