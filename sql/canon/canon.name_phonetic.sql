-- canon.name_phonetic: a Spanish phonetic key of one normalised name token, so that
-- spellings people use for the same sound compare equal: QU/K/C (QUISPE, KISPE), V/B
-- (VASQUEZ, BASQUEZ), Z/S/C before E or I (ZUNIGA, SUNIGA), Y/LL/I (YUPANQUI, IUPANKI),
-- a silent H (HUAMAN, UAMAN), G/J before E or I, W/U, PH/F, doubled letters. Read by the
-- probabilistic tier (canon.name_token_levels) and the name-key index of the driver index.
-- Plain SQL without SET: inlined (a SET clause costs more than the regexps, per token).
CREATE OR REPLACE FUNCTION canon.name_phonetic(p_token text)
RETURNS text
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
  SELECT pg_catalog.regexp_replace(
           pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(
             pg_catalog.regexp_replace(pg_catalog.regexp_replace(pg_catalog.regexp_replace(pg_catalog.regexp_replace(
               pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(p_token, 'CH', '#'), 'QU', 'K'), 'PH', 'F'), 'LL', 'Y'),
               'GU([EI])', '~\1', 'g'), 'G([EI])', 'J\1', 'g'), 'C([EI])', 'S\1', 'g'), 'X', 'KS', 'g'),
             'C', 'K'), 'Z', 'S'), 'V', 'B'), 'Y', 'I'), 'W', 'U'), 'H', ''), '~', 'G'), '#', 'CH'),
           '(.)\1+', '\1', 'g')
$$;
COMMENT ON FUNCTION canon.name_phonetic(text) IS
  'Spanish phonetic key of a normalised name token: QU/K/C, V/B, Z/S/CE/CI, Y/LL/I, silent H, GE/JE, W/U, PH/F, doubled letters (QUISPE and KISPE give KISPE; VASQUEZ and BAZQUEZ give BASKES).';
