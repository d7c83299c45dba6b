-- canon.plate_comparison: how a lead's plate compares with a driver's (both normalised), as
-- the probabilistic tier weighs it: EXACT; CONFUSION (one character changed into one it is
-- mistaken for when typed or read: O/0, I/1, B/8, S/5, Z/2, G/6); ONE_EDIT (another
-- character changed, one missing or added, two adjacent ones swapped); DIFFERENT. NULL
-- when either plate is unknown. note says what differs, for the evidence in words.
CREATE OR REPLACE FUNCTION canon.plate_comparison(p_lead text, p_driver text, OUT level text, OUT note text)
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  la integer := length(p_lead);
  lb integer := length(p_driver);
  k integer;
  a text;
  b text;
BEGIN
  IF p_lead IS NULL OR p_driver IS NULL THEN
    RETURN;
  END IF;
  IF p_lead = p_driver THEN
    level := 'EXACT';
    RETURN;
  END IF;
  level := 'DIFFERENT';
  IF abs(la - lb) > 1 THEN
    RETURN;
  END IF;
  -- first differing position
  k := 1;
  WHILE k <= least(la, lb) AND substr(p_lead, k, 1) = substr(p_driver, k, 1) LOOP
    k := k + 1;
  END LOOP;
  a := substr(p_lead, k, 1);
  b := substr(p_driver, k, 1);
  IF la = lb THEN
    IF substr(p_lead, k + 1) = substr(p_driver, k + 1) THEN
      IF (a || b) IN ('O0', '0O', 'I1', '1I', 'B8', '8B', 'S5', '5S', 'Z2', '2Z', 'G6', '6G') THEN
        level := 'CONFUSION';
        note := a || '/' || b;
      ELSE
        level := 'ONE_EDIT';
        note := a || '/' || b;
      END IF;
    ELSIF k < la AND a = substr(p_driver, k + 1, 1) AND b = substr(p_lead, k + 1, 1)
          AND substr(p_lead, k + 2) = substr(p_driver, k + 2) THEN
      level := 'ONE_EDIT';
      note := 'swapped ' || a || b || '/' || b || a;
    END IF;
  ELSIF la < lb THEN
    IF substr(p_lead, k) = substr(p_driver, k + 1) THEN
      level := 'ONE_EDIT';
      note := 'missing ' || b;
    END IF;
  ELSE
    IF substr(p_lead, k + 1) = substr(p_driver, k) THEN
      level := 'ONE_EDIT';
      note := 'extra ' || a;
    END IF;
  END IF;
END
$$;
COMMENT ON FUNCTION canon.plate_comparison(text, text) IS
  'Plate comparison level of the probabilistic tier: EXACT, CONFUSION (one of O/0, I/1, B/8, S/5, Z/2, G/6), ONE_EDIT (other substitution, missing or extra character, adjacent swap) or DIFFERENT; NULL when a plate is unknown. note: what differs (O/0, missing 3, swapped 21/12).';
