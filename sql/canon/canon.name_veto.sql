-- canon.name_veto: SPEC 5 "Relatives are different people". Two names that each carry a
-- name the other lacks, in the same role (a different given name: JOSE CARLOS vs JUAN
-- CARLOS; a different surname: QUISPE MAMANI vs QUISPE HUAMAN), are two people, whatever
-- their token score (3 of 4 tokens shared scores 0.675). Called by canon.lead_candidates
-- on the pairs whose score alone would be a name match; returns NULL (no veto) or the
-- tokens each side lacks with the role judged for each, for the candidates and evidence.
CREATE OR REPLACE FUNCTION canon.name_veto(
  p_a text[], p_a_given text[], p_a_surnames text[],
  p_b text[], p_b_given text[], p_b_surnames text[],
  p_usage_given text[], p_usage_surnames text[])
RETURNS jsonb
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
-- p_a, p_b: the two names as canon.name_tokens sets. p_*_given / p_*_surnames: the tokens
-- of that record's given-name fields (first and middle name) and of its last-name field
-- (NULL when the record has no such field, e.g. a driver with only full_name).
-- p_usage_given / p_usage_surnames: tokens the drivers clearly use as given names / as
-- surnames (canon.name_token_usage).
--   unshared = tokens of one name with no partner in the other. Partner: the same token,
--              one typo apart (tokens of 5+ letters, as canon.token_similarity: edit
--              distance 1 or an adjacent swap), or an initial (C and CARLOS).
--   role     = the drivers' usage when clear; else the field the token was typed in,
--              read the other way round when the record's fields are swapped (its tokens
--              of clear usage mostly sit in the other role's field); else UNKNOWN.
--   veto     = an unshared token on each side of the same role, UNKNOWN fitting either
--              role. A missing middle name (nothing unshared on one side) never vetoes,
--              nor a middle name on one side against a surname on the other, nor a token
--              of two letters (a fragment: VAN'T HOF is VAN T HOF, VAN'WT HOF is VAN WT
--              HOF in FEBRL); an initial (one letter) does (C is not ALBERTO).
-- Result: NULL, or {"a": {token: role}, "b": {token: role}} with every unshared token.
DECLARE
  na      integer := COALESCE(cardinality(p_a), 0);
  nb      integer := COALESCE(cardinality(p_b), 0);
  hit_a   boolean[];
  hit_b   boolean[];
  ua      text[] := '{}';
  ub      text[] := '{}';
  ra      text[] := '{}';
  rb      text[] := '{}';
  x       text;
  y       text;
  lx      integer;
  ly      integer;
  d       integer;
  k       integer;
  pair    boolean;
  swapped boolean;
  u_role  text;
  f_role  text;
  agree   integer;
  differ  integer;
  out_a   jsonb := '{}';
  out_b   jsonb := '{}';
  veto    boolean := false;
BEGIN
  IF na = 0 OR nb = 0 THEN
    RETURN NULL;
  END IF;
  -- UNSHARED: the partner rule of canon.token_similarity, plus initials.
  hit_a := array_fill(false, ARRAY[na]);
  hit_b := array_fill(false, ARRAY[nb]);
  FOR i IN 1 .. na LOOP
    x := p_a[i];
    lx := length(x);
    FOR j IN 1 .. nb LOOP
      y := p_b[j];
      ly := length(y);
      pair := x = y
        OR (lx = 1 AND ly > 1 AND left(y, 1) = x)
        OR (ly = 1 AND lx > 1 AND left(x, 1) = y);
      IF NOT pair AND lx >= 5 AND ly >= 5 AND lx <= 255 AND ly <= 255 AND abs(lx - ly) <= 1 THEN
        d := public.levenshtein_less_equal(x, y, 2);
        IF d <= 1 THEN
          pair := true;
        ELSIF d = 2 AND lx = ly THEN
          k := 1;
          WHILE k <= lx AND substr(x, k, 1) = substr(y, k, 1) LOOP
            k := k + 1;
          END LOOP;
          pair := k < lx
            AND substr(x, k, 1) = substr(y, k + 1, 1)
            AND substr(x, k + 1, 1) = substr(y, k, 1)
            AND substr(x, k + 2) = substr(y, k + 2);
        END IF;
      END IF;
      IF pair THEN
        hit_a[i] := true;
        hit_b[j] := true;
      END IF;
    END LOOP;
  END LOOP;
  FOR i IN 1 .. na LOOP
    IF NOT hit_a[i] AND length(p_a[i]) <> 2 THEN ua := ua || p_a[i]; END IF;
  END LOOP;
  FOR j IN 1 .. nb LOOP
    IF NOT hit_b[j] AND length(p_b[j]) <> 2 THEN ub := ub || p_b[j]; END IF;
  END LOOP;
  IF cardinality(ua) = 0 OR cardinality(ub) = 0 THEN
    RETURN NULL;
  END IF;

  -- ROLES of the unshared tokens, record a then record b.
  FOR side IN 1 .. 2 LOOP
    DECLARE
      r_given    text[] := CASE side WHEN 1 THEN p_a_given ELSE p_b_given END;
      r_surnames text[] := CASE side WHEN 1 THEN p_a_surnames ELSE p_b_surnames END;
      r_unshared text[] := CASE side WHEN 1 THEN ua ELSE ub END;
      r_roles    text[] := '{}';
    BEGIN
      -- Swapped fields: the tokens whose usage is clear mostly sit in the other field.
      agree := 0;
      differ := 0;
      FOREACH x IN ARRAY COALESCE(r_given, '{}') || COALESCE(r_surnames, '{}') LOOP
        u_role := CASE WHEN x = ANY (p_usage_given) THEN 'GIVEN_NAME' WHEN x = ANY (p_usage_surnames) THEN 'SURNAME' END;
        f_role := CASE WHEN x = ANY (r_given) AND NOT COALESCE(x = ANY (r_surnames), false) THEN 'GIVEN_NAME'
                       WHEN x = ANY (r_surnames) AND NOT COALESCE(x = ANY (r_given), false) THEN 'SURNAME' END;
        IF u_role IS NOT NULL AND f_role IS NOT NULL THEN
          IF u_role = f_role THEN agree := agree + 1; ELSE differ := differ + 1; END IF;
        END IF;
      END LOOP;
      swapped := differ > agree;
      FOREACH x IN ARRAY r_unshared LOOP
        u_role := CASE WHEN x = ANY (p_usage_given) THEN 'GIVEN_NAME' WHEN x = ANY (p_usage_surnames) THEN 'SURNAME' END;
        f_role := CASE WHEN x = ANY (r_given) AND NOT COALESCE(x = ANY (r_surnames), false)
                         THEN CASE WHEN swapped THEN 'SURNAME' ELSE 'GIVEN_NAME' END
                       WHEN x = ANY (r_surnames) AND NOT COALESCE(x = ANY (r_given), false)
                         THEN CASE WHEN swapped THEN 'GIVEN_NAME' ELSE 'SURNAME' END END;
        r_roles := r_roles || COALESCE(u_role, f_role, 'UNKNOWN');
      END LOOP;
      IF side = 1 THEN ra := r_roles; ELSE rb := r_roles; END IF;
    END;
  END LOOP;

  -- VETO: one unshared token on each side in the same role (UNKNOWN fits either).
  FOR i IN 1 .. cardinality(ua) LOOP
    FOR j IN 1 .. cardinality(ub) LOOP
      IF ra[i] = rb[j] OR ra[i] = 'UNKNOWN' OR rb[j] = 'UNKNOWN' THEN
        veto := true;
      END IF;
    END LOOP;
  END LOOP;
  IF NOT veto THEN
    RETURN NULL;
  END IF;
  FOR i IN 1 .. cardinality(ua) LOOP
    out_a := out_a || jsonb_build_object(ua[i], ra[i]);
  END LOOP;
  FOR j IN 1 .. cardinality(ub) LOOP
    out_b := out_b || jsonb_build_object(ub[j], rb[j]);
  END LOOP;
  RETURN jsonb_build_object('a', out_a, 'b', out_b);
END
$$;
COMMENT ON FUNCTION canon.name_veto(text[], text[], text[], text[], text[], text[], text[], text[]) IS
  'SPEC 5 relatives veto: NULL, or {"a": {token: role}, "b": {token: role}} when names a and b (canon.name_tokens sets) each carry an unshared token (no equal, one-typo or initial partner; two-letter fragments never count) of the same role (GIVEN_NAME, SURNAME; UNKNOWN fits either). Roles: clear usage among the drivers (p_usage_*), else the record''s field (p_*_given / p_*_surnames), read swapped when the record''s clear tokens mostly sit in the other field. Symmetric; never vetoes a name whose tokens all have a partner in the other.';
