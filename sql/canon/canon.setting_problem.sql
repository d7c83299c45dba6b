-- canon.setting_problem: what is wrong with a value of a product setting for its type
-- (canon.settings.value_type, min_value, max_value), as one sentence; NULL when it is
-- valid. One definition for the trigger that refuses a bad value where it is written
-- (canon.enforce_setting_valid) and for doctor, which finds one stored behind its back
-- (ops.check_invariants, SETTING_INVALID). Types:
--   TEXT        anything (not validated)
--   IDENTIFIER  a key compared exactly (target_park_id): not blank, no spaces or control
--               characters at its ends (such a park id silently matches no driver)
--   INTEGER     digits with an optional minus sign, from min_value to max_value (the
--               readers cast it to integer)
--   TIME_ZONE   a name of pg_timezone_names, any case ('America/Lima'); abbreviations
--               and POSIX strings are refused: 'UTC-5' means UTC+5 to PostgreSQL
CREATE OR REPLACE FUNCTION canon.setting_problem(p_value text, p_value_type text, p_min_value bigint, p_max_value bigint)
RETURNS text
LANGUAGE plpgsql
STABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  c_int_min constant bigint := -2147483648;
  c_int_max constant bigint := 2147483647;
  v_range text;
  v_closest text;
BEGIN
  IF p_value IS NULL THEN
    RETURN 'no value';
  END IF;
  CASE p_value_type
    WHEN 'TEXT' THEN
      RETURN NULL;
    WHEN 'IDENTIFIER' THEN
      IF p_value !~ '[^[:space:][:cntrl:]\u00a0\u2000-\u200b\u202f\u205f\u3000\ufeff]' THEN
        RETURN 'blank: expected an identifier';
      ELSIF p_value ~ '^[[:space:][:cntrl:]\u00a0\u2000-\u200b\u202f\u205f\u3000\ufeff]|[[:space:][:cntrl:]\u00a0\u2000-\u200b\u202f\u205f\u3000\ufeff]$' THEN
        RETURN 'spaces or control characters at its ends: expected the identifier alone (it is compared exactly)';
      END IF;
      RETURN NULL;
    WHEN 'INTEGER' THEN
      v_range := format('expected an integer from %s to %s',
                        greatest(coalesce(p_min_value, c_int_min), c_int_min), least(coalesce(p_max_value, c_int_max), c_int_max));
      IF p_value !~ '^-?[0-9]+$' THEN
        RETURN 'not an integer: ' || v_range;
      ELSIF length(ltrim(p_value, '-0')) > 18
            OR p_value::bigint NOT BETWEEN greatest(coalesce(p_min_value, c_int_min), c_int_min)
                                       AND least(coalesce(p_max_value, c_int_max), c_int_max) THEN
        RETURN 'out of range: ' || v_range;
      END IF;
      RETURN NULL;
    WHEN 'TIME_ZONE' THEN
      IF EXISTS (SELECT 1 FROM pg_catalog.pg_timezone_names z WHERE lower(z.name) = lower(p_value)) THEN
        RETURN NULL;
      END IF;
      IF p_value ~ '[0-9]' THEN
        RETURN 'unknown time zone: expected a name of pg_timezone_names such as America/Lima '
               '(an offset like UTC-5 means UTC+5 to PostgreSQL)';
      END IF;
      -- The closest name, when the value looks like a typo of one (America/Lim).
      SELECT z.name INTO v_closest
      FROM pg_catalog.pg_timezone_names z
      WHERE public.levenshtein(lower(left(p_value, 200)), lower(z.name)) <= 3
      ORDER BY public.levenshtein(lower(left(p_value, 200)), lower(z.name)), z.name
      LIMIT 1;
      RETURN 'unknown time zone: expected a name of pg_timezone_names'
             || coalesce(' (did you mean ' || v_closest || '?)', ' such as America/Lima');
    ELSE
      RETURN format('unknown value_type %s: expected TEXT, IDENTIFIER, INTEGER or TIME_ZONE', coalesce(p_value_type, 'NULL'));
  END CASE;
END
$$;
COMMENT ON FUNCTION canon.setting_problem(text, text, bigint, bigint) IS
  'What is wrong with a setting value for its value_type (TEXT, IDENTIFIER, INTEGER with min/max, TIME_ZONE), in one sentence; NULL when valid. Used by the trigger on canon.settings and by ops.check_invariants.';
