-- canon.blank_characters: the one list of the characters that count as blank at the ends
-- of a cabinet external_id (canon.lead_source_pk strips them; the import lets that
-- function decide). Unicode White_Space plus the invisible characters copy-paste and
-- spreadsheets leave at the ends of ids; docs/limbo-and-claims.md says why. IMMUTABLE
-- with no argument: the planner evaluates it once per query, so callers pay nothing per row.
-- In a database whose encoding is not UTF8 the characters it cannot hold are left out
-- (no value there can contain them).
CREATE OR REPLACE FUNCTION canon.blank_characters()
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_code_points integer[] := ARRAY[
    -- Unicode White_Space (PropList.txt): TAB, LF, VT, FF, CR, SPACE, NEXT LINE (NEL),
    -- NO-BREAK SPACE, OGHAM SPACE MARK, EN QUAD .. HAIR SPACE, LINE SEPARATOR, PARAGRAPH
    -- SEPARATOR, NARROW NO-BREAK SPACE, MEDIUM MATHEMATICAL SPACE, IDEOGRAPHIC SPACE
    x'0009', x'000A', x'000B', x'000C', x'000D', x'0020', x'0085', x'00A0', x'1680',
    x'2000', x'2001', x'2002', x'2003', x'2004', x'2005', x'2006', x'2007', x'2008', x'2009', x'200A',
    x'2028', x'2029', x'202F', x'205F', x'3000',
    -- invisible, not White_Space: MONGOLIAN VOWEL SEPARATOR (White_Space before Unicode
    -- 6.3), ZERO WIDTH SPACE, WORD JOINER, ZERO WIDTH NO-BREAK SPACE (a byte order mark)
    x'180E', x'200B', x'2060', x'FEFF']::integer[];
  v_code integer;
  v_blanks text := '';
BEGIN
  IF getdatabaseencoding() = 'UTF8' THEN
    FOREACH v_code IN ARRAY v_code_points LOOP
      v_blanks := v_blanks || chr(v_code);
    END LOOP;
    RETURN v_blanks;
  END IF;
  -- Other encodings: chr() would read the code point as a byte there; convert from UTF-8.
  FOREACH v_code IN ARRAY v_code_points LOOP
    BEGIN
      v_blanks := v_blanks || convert_from(
        CASE WHEN v_code < 128 THEN set_byte('\x00'::bytea, 0, v_code)
             WHEN v_code < 2048 THEN set_byte(set_byte('\x0000'::bytea, 0, 192 | (v_code >> 6)), 1, 128 | (v_code & 63))
             ELSE set_byte(set_byte(set_byte('\x000000'::bytea, 0, 224 | (v_code >> 12)), 1, 128 | ((v_code >> 6) & 63)), 2, 128 | (v_code & 63))
        END, 'UTF8');
    EXCEPTION WHEN untranslatable_character OR character_not_in_repertoire THEN
      NULL; -- not a character of this database's encoding
    END;
  END LOOP;
  RETURN v_blanks;
END
$$;
COMMENT ON FUNCTION canon.blank_characters() IS
  'The characters that are blank at the ends of a lead''s external_id: Unicode White_Space (U+0009-000D, 0020, 0085, 00A0, 1680, 2000-200A, 2028, 2029, 202F, 205F, 3000) plus U+180E, 200B, 2060, FEFF. Used by canon.lead_source_pk.';
