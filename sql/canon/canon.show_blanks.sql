-- canon.show_blanks: a text as a person can read it on a screen, where lead keys that
-- differ only by blanks look alike: control characters (C0, DEL, C1), the blanks of
-- canon.blank_characters other than a space, and a space at either end are written as
-- \uXXXX, a backslash as \\ ('NB-1<TAB>' is shown NB-1\u0009). For examples and listings
-- (ops.check_invariants, ops.v_cabinet_claims_duplicated), never for keys.
CREATE OR REPLACE FUNCTION canon.show_blanks(p_text text)
RETURNS text
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT CASE WHEN p_text = '' THEN '' ELSE (
    SELECT string_agg(
             CASE WHEN x.c = E'\\' THEN E'\\\\'
                  WHEN x.c = ' ' AND x.n > 1 AND x.n < x.len THEN ' '
                  WHEN ascii(x.c) < 32 OR ascii(x.c) BETWEEN 127 AND 159 OR strpos(canon.blank_characters(), x.c) > 0
                    THEN E'\\u' || lpad(upper(to_hex(ascii(x.c))), 4, '0')
                  ELSE x.c
             END, '' ORDER BY x.n)
    FROM (SELECT t.c, t.n, count(*) OVER () AS len
          FROM regexp_split_to_table(p_text, '') WITH ORDINALITY t (c, n)) x) END
$$;
COMMENT ON FUNCTION canon.show_blanks(text) IS
  'A text with control characters, blanks other than an inner space, and spaces at its ends written as \uXXXX (backslash as \\): lead keys that differ only by blanks, told apart on a screen.';
