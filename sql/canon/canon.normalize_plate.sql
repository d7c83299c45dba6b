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
