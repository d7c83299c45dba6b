-- Demo generator, step "schema": the demo schema with the pure helpers every other step
-- uses, the scenario mix, the name lists, the batch log and the ground-truth table.
-- Run on every call (idempotent): helpers are replaced so a newer generator never runs
-- with older helpers left by a previous version.
--
-- Every pseudo-random value comes from md5 of a text key (seed, batch, entity, index,
-- purpose), never from random(): the data is the same whatever plan or parallelism the
-- server picks, and md5 is stable across PostgreSQL versions and platforms.

CREATE SCHEMA IF NOT EXISTS demo;
COMMENT ON SCHEMA demo IS 'Synthetic data generator (cabinet-leads demo): helpers, scenario mix and ground truth.';

-- u: a uniform number in [0, 1) from the n-th 32-bit slice (n = 1..4) of an md5 hex
-- string, so one md5 call feeds four independent draws.
CREATE OR REPLACE FUNCTION demo.u(h text, n integer) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ('x' || substr(h, n * 8 - 7, 8))::bit(32)::bigint::float8 / 4294967296::float8 $$;

-- u16: a uniform number in [0, 1) from the n-th 16-bit slice (n = 1..4) of a 64-bit
-- hash. The trip steps draw for millions of (driver, day) cells from one
-- hashint8extended() each, several times cheaper than md5 and as stable (hash
-- partitioning relies on it across versions).
CREATE OR REPLACE FUNCTION demo.u16(h bigint, n integer) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ((h >> (16 * (n - 1))) & 65535)::float8 / 65536 $$;

-- ri: an integer in [0, m) from the same slice.
CREATE OR REPLACE FUNCTION demo.ri(h text, n integer, m integer) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT floor(demo.u(h, n) * m)::integer $$;

-- pick: one element of a list (NULL for an empty list).
CREATE OR REPLACE FUNCTION demo.pick(a text[], h text, n integer) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT a[1 + demo.ri(h, n, cardinality(a))] $$;

-- perm: an injective map of 0 <= k < modulus onto itself (mult coprime with modulus),
-- so phones, plates and licences derived from distinct row ids never collide by chance.
CREATE OR REPLACE FUNCTION demo.perm(k bigint, modulus bigint, mult bigint, shift bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ((k % modulus) * mult + shift) % modulus $$;

-- scramble8: another bijection of [0, 10^8) (digits reversed, then an affine map), so
-- phones and licences of consecutive ids show no arithmetic pattern in any digit.
CREATE OR REPLACE FUNCTION demo.scramble8(x bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT (reverse(lpad(x::text, 8, '0'))::bigint * 86602541 + 14142135) % 100000000 $$;

-- A 9-digit Peruvian mobile number (national form, without the 51 country code).
CREATE OR REPLACE FUNCTION demo.phone9(k bigint, mult bigint, shift bigint) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT '9' || lpad(demo.scramble8(demo.perm(k, 100000000, mult, shift))::text, 8, '0') $$;

-- A plate in its clean form ABC123 from a code in [0, 26^3 * 1000): three letters from
-- code / 1000, three digits from code % 1000 shifted by a function of the letters (still
-- a bijection) so that consecutive codes do not share a digit pattern.
CREATE OR REPLACE FUNCTION demo.plate_of_code(l bigint, r bigint) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT chr(65 + (l / 676)::integer) || chr(65 + (l / 26 % 26)::integer) || chr(65 + (l % 26)::integer)
         || lpad(((r + l * l * 31 + l * 17) % 1000)::text, 3, '0')
$$;

CREATE OR REPLACE FUNCTION demo.plate(k bigint, mult bigint, shift bigint) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT demo.plate_of_code(demo.perm(k, 17576000, mult, shift) / 1000, demo.perm(k, 17576000, mult, shift) % 1000) $$;

-- A driving licence number: Q + 8 digits (the holder's DNI), as Peru issues them.
CREATE OR REPLACE FUNCTION demo.license(k bigint, mult bigint, shift bigint) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT 'Q' || lpad(demo.scramble8(demo.perm(k, 100000000, mult, shift))::text, 8, '0') $$;

-- Case mapping that does not depend on the database locale (C or ICU, any collation):
-- upper()/lower() leave accented letters alone under the C locale.
CREATE OR REPLACE FUNCTION demo.up(s text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT translate(upper(s), 'áéíóúüñ', 'ÁÉÍÓÚÜÑ') $$;

CREATE OR REPLACE FUNCTION demo.low(s text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT translate(lower(s), 'ÁÉÍÓÚÜÑ', 'áéíóúüñ') $$;

CREATE OR REPLACE FUNCTION demo.strip_accents(s text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT translate(s, 'áéíóúüñÁÉÍÓÚÜÑ', 'aeiouunAEIOUUN') $$;

-- How a person typed a name part in the cabinet: title case as listed (v 0..5), upper
-- (6..8) or lower (9), with accents dropped when strip is true.
CREATE OR REPLACE FUNCTION demo.lead_case(s text, v integer, strip boolean) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT CASE WHEN v >= 9 AND strip THEN demo.strip_accents(demo.low(s))
              WHEN v >= 9 THEN demo.low(s)
              WHEN v >= 6 AND strip THEN demo.strip_accents(demo.up(s))
              WHEN v >= 6 THEN demo.up(s)
              WHEN strip THEN demo.strip_accents(s)
              ELSE s END
$$;

-- How the driver master stores a name part: upper case, accents dropped by some parks.
CREATE OR REPLACE FUNCTION demo.driver_case(s text, strip boolean) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE WHEN strip THEN demo.strip_accents(demo.up(s)) ELSE demo.up(s) END $$;

-- One-letter typo inside a title-case token of 5+ letters (never the first letter, and
-- always a different letter), the kind of error the name similarity must forgive.
CREATE OR REPLACE FUNCTION demo.typo(s text, h text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT CASE
    WHEN s IS NULL OR length(s) < 5 OR old !~ '^[a-z]$' THEN s
    ELSE overlay(s PLACING chr(97 + (ascii(old) - 97 + 1 + demo.ri(h, 2, 25)) % 26) FROM pos FOR 1)
  END
  FROM (SELECT pos, demo.strip_accents(demo.low(substr(s, pos, 1))) AS old
        FROM (SELECT 2 + demo.ri(h, 1, greatest(length(s) - 2, 1)) AS pos) p) x
$$;

-- Phone formats seen in cabinet exports for one national number 977456321.
CREATE OR REPLACE FUNCTION demo.lead_phone(p9 text, v integer) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT CASE v
    WHEN 0 THEN p9
    WHEN 1 THEN '+51 ' || substr(p9, 1, 3) || ' ' || substr(p9, 4, 3) || ' ' || substr(p9, 7, 3)
    WHEN 2 THEN substr(p9, 1, 3) || '-' || substr(p9, 4, 3) || '-' || substr(p9, 7, 3)
    WHEN 3 THEN '51' || p9
    ELSE '0051' || p9
  END
$$;

-- Plate formats seen in cabinet exports for one plate ABC123.
CREATE OR REPLACE FUNCTION demo.lead_plate(p text, v integer) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT CASE v
    WHEN 0 THEN lower(left(p, 3)) || '-' || right(p, 3)
    WHEN 1 THEN left(p, 3) || ' ' || right(p, 3)
    WHEN 2 THEN lower(p)
    WHEN 3 THEN left(p, 3) || '-' || right(p, 3)
    ELSE p
  END
$$;

-- summary_daily.date_file: DD-MM-YYYY is the export's format, YYYY-MM-DD the other one
-- that occurs in real data.
CREATE OR REPLACE FUNCTION demo.date_file(d date, ymd boolean) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT CASE WHEN ymd THEN to_char(d, 'YYYY-MM-DD') ELSE to_char(d, 'DD-MM-YYYY') END $$;

-- The scenario mix of the leads. share is the fraction of leads; drivers is how many
-- driver rows the scenario's person needs; matchable says whether a careful human could
-- name the true driver from the lead's phone, plate and name.
CREATE TABLE IF NOT EXISTS demo.scenario (
  scenario    text PRIMARY KEY,
  share       numeric NOT NULL CHECK (share >= 0),
  drivers     integer NOT NULL CHECK (drivers BETWEEN 0 AND 2),
  matchable   boolean NOT NULL,
  description text NOT NULL,
  ord         integer NOT NULL UNIQUE
);
COMMENT ON TABLE demo.scenario IS 'Scenario mix of the demo leads (share of leads, drivers per person, matchable).';

-- Rewritten on every call so the mix always matches this generator version.
TRUNCATE demo.scenario;
INSERT INTO demo.scenario (ord, scenario, share, drivers, matchable, description) VALUES
  (1,  'PHONE_FORMAT',            0.20,    1, true,  'phone in one of five formats (977456321, +51 977 456 321, 977-456-321, 51977456321, 0051977456321), plate half of the time'),
  (2,  'PLATE_NAME',              0.18,    1, true,  'no phone; plate in a variant format and the name (case and accents vary)'),
  (3,  'PLATE_NAME_TYPO',         0.06,    1, true,  'no phone; plate and a name with a one-letter typo in a surname of 5+ letters'),
  (4,  'PLATE_NAME_ORDER',        0.04,    1, true,  'no phone; plate; surnames typed in first_name and given names in last_name'),
  (5,  'PLATE_NAME_NO_MIDDLE',    0.04,    1, true,  'no phone; plate; the middle name is missing on the lead'),
  (6,  'PLATE_HYPHEN_SURNAME',    0.03,    1, true,  'no phone; plate; surnames hyphenated on the lead (Peña-Núñez) and spaced on the driver'),
  (7,  'PLATE_PARTICLE_SURNAME',  0.03,    1, true,  'no phone; plate; surname with a particle (de la Cruz), sometimes without it on the driver'),
  (8,  'SHIFT_SHARED_PLATE',      0.06,    2, true,  'no phone; the plate is shared by two drivers of the park (shift partners); the name decides'),
  (9,  'TWO_PARKS_SAME_PHONE',    0.04,    2, true,  'phone; the person is a driver in the target park and in another park; the target park driver is the truth'),
  (10, 'OTHER_PARK_ONLY',         0.02,    1, true,  'plate and sometimes phone; the only driver is in another park'),
  (11, 'OFFICE_PHONE_ONLY',       0.03,    1, false, 'only the park office phone (shared by many leads with different names) and a name'),
  (12, 'OFFICE_PHONE_WITH_PLATE', 0.02,    1, true,  'the park office phone plus the plate and the name: the plate and name identify'),
  (13, 'MISSING_KEYS',            0.03,    1, false, 'name only, no phone and no plate, although the person became a driver'),
  (14, 'MISSING_KEYS_NO_DRIVER',  0.02,    0, false, 'name only, no phone and no plate, never activated'),
  (15, 'NO_DRIVER',               0.14,    0, false, 'phone and/or plate and name, but the person never became a driver'),
  (16, 'HOSTILE_ALL_NULL',        0.00375, 0, false, 'every column NULL except id'),
  (17, 'HOSTILE_EMOJI_NAME',      0.00375, 0, false, 'emoji in names and phone'),
  (18, 'HOSTILE_CYRILLIC_NAME',   0.00375, 0, false, 'Cyrillic names and a Cyrillic look-alike plate'),
  (19, 'HOSTILE_LONG_STRINGS',    0.00375, 0, false, '10 kB strings in names, phone, plate and model'),
  (20, 'HOSTILE_SQL_TEXT',        0.00375, 0, false, 'SQL-looking text in names, phone and plate'),
  (21, 'HOSTILE_DUP_EXTERNAL_ID', 0.00375, 0, false, 're-export of the previous lead with the same external_id (truth copied from it)'),
  (22, 'HOSTILE_NULL_LEAD_DATE',  0.00375, 1, true,  'lead_created_at NULL; phone, plate and name still identify the driver'),
  (23, 'HOSTILE_GARBAGE_KEYS',    0.00375, 1, false, 'phone and plate are junk (000000000, n/a, S/P, ---); name only'),
  -- Leads a person must decide (cabinet-leads review): the matcher never resolves them,
  -- so they are not "matchable" (the evidence is in doubt), although a person can decide.
  (24, 'DRIVER_REGISTERED_TWICE', 0.01,    2, false, 'phone; the person has two driver rows in the target park (registered again: same phone and name, older row on another car): AMBIGUOUS'),
  (25, 'PHONE_OF_RELATIVE',       0.01,    2, false, 'a relative''s phone (a driver of the park with the same surnames, another given name) with the lead''s own plate and name: CONFLICT'),
  (26, 'PLATE_NICKNAME',          0.01,    1, false, 'no phone; plate; the lead gives a nickname (Pepe, Lucho) and one surname, the driver all four names: WEAK_MATCH_ONLY');

-- Common Peruvian given names and surnames as people type them (title case, accents),
-- and the cars and colours of the fleet. Constant arrays in IMMUTABLE functions: the
-- planner folds them into the statement once instead of reading them per row.
-- Given names by sex: a person's middle name is of the same sex as the first one.
CREATE OR REPLACE FUNCTION demo.male_names() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ARRAY[
  'José', 'Luis', 'Juan', 'Carlos', 'Jorge', 'Miguel', 'César', 'Víctor', 'Jesús', 'Ángel', 'Raúl',
  'Héctor', 'Óscar', 'Julio', 'Pedro', 'Manuel', 'Roberto', 'Ricardo', 'Fernando', 'Alberto',
  'Eduardo', 'Javier', 'Walter', 'Wilmer', 'Édgar', 'Jhon', 'Jhonatan', 'Elmer', 'Segundo',
  'Percy', 'Alfredo', 'Germán', 'Martín', 'Iván', 'Rubén', 'Nicolás', 'Christian', 'Diego',
  'Renzo', 'Franco', 'Gustavo', 'Hugo', 'Nelson', 'Rolando', 'Teodoro', 'Abel', 'Efraín', 'Joel',
  'Ramón', 'Félix'] $$;

CREATE OR REPLACE FUNCTION demo.female_names() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ARRAY[
  'María', 'Rosa', 'Ana', 'Lucía', 'Carmen', 'Elena', 'Julia', 'Milagros', 'Rocío', 'Sofía',
  'Verónica', 'Patricia', 'Gladys', 'Yolanda', 'Marleny', 'Flor', 'Jessica', 'Karina', 'Sandra',
  'Pilar'] $$;

CREATE OR REPLACE FUNCTION demo.given_names(male boolean) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE WHEN male THEN demo.male_names() ELSE demo.female_names() END $$;

CREATE OR REPLACE FUNCTION demo.surnames() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ARRAY[
  'Quispe', 'Flores', 'Sánchez', 'Rodríguez', 'García', 'Rojas', 'Mamani', 'Huamán', 'Chávez', 'Vásquez',
  'Ramírez', 'Torres', 'Díaz', 'López', 'Mendoza', 'Castillo', 'Espinoza', 'Gutiérrez', 'Pérez', 'Ramos',
  'Cruz', 'Gonzales', 'Fernández', 'Romero', 'Salazar', 'Peña', 'Núñez', 'Muñoz', 'Ibáñez', 'Ordóñez',
  'Yáñez', 'Castañeda', 'Carreño', 'Zúñiga', 'Cóndor', 'Ccori', 'Huamaní', 'Apaza', 'Vargas', 'Medina',
  'Silva', 'Herrera', 'Aguilar', 'Cárdenas', 'Villanueva', 'Paredes', 'Córdova', 'Palomino', 'Tapia', 'Alarcón',
  'Valverde', 'Ríos', 'Meza', 'Soto', 'Campos', 'Ticona', 'Chambi', 'Condori', 'Ñahui', 'Ñaupari',
  'Tello', 'Saavedra', 'Benites', 'Inga', 'Poma', 'Yupanqui', 'Huaranga', 'Cusi', 'Llanos', 'Morales',
  'Reyes', 'Jiménez', 'Álvarez', 'Gómez', 'Martínez', 'Hernández', 'Navarro', 'Cabrera', 'Mejía', 'Zapata',
  'de la Cruz', 'del Águila', 'de los Santos', 'de la Torre', 'del Castillo', 'de la Peña'] $$;

-- The nickname people give in the cabinet instead of their given name (Pepe for José);
-- "Chino" for a name without a usual one.
CREATE OR REPLACE FUNCTION demo.nickname(given text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE given
  WHEN 'José' THEN 'Pepe' WHEN 'Luis' THEN 'Lucho' WHEN 'Jorge' THEN 'Coco' WHEN 'Roberto' THEN 'Beto'
  WHEN 'Alberto' THEN 'Beto' WHEN 'Manuel' THEN 'Manolo' WHEN 'Jesús' THEN 'Chucho' WHEN 'Fernando' THEN 'Nando'
  WHEN 'Eduardo' THEN 'Lalo' WHEN 'Ricardo' THEN 'Richi' WHEN 'Nicolás' THEN 'Nico' WHEN 'Juan' THEN 'Juancho'
  WHEN 'Carlos' THEN 'Charly' WHEN 'Rosa' THEN 'Rosita' WHEN 'María' THEN 'Mary' WHEN 'Patricia' THEN 'Paty'
  ELSE 'Chino' END $$;

-- Single-token surnames (no particle).
CREATE OR REPLACE FUNCTION demo.plain_surnames() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ARRAY(SELECT n FROM unnest(demo.surnames()) WITH ORDINALITY AS t(n, k) WHERE n NOT LIKE '% %' ORDER BY k) $$;

-- Single-token surnames of 5+ letters: where a one-letter typo is still forgivable.
CREATE OR REPLACE FUNCTION demo.long_surnames() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ARRAY(SELECT n FROM unnest(demo.plain_surnames()) WITH ORDINALITY AS t(n, k) WHERE length(n) >= 5 ORDER BY k) $$;

-- Surnames with a particle (de la Cruz), which the name normalisation drops.
CREATE OR REPLACE FUNCTION demo.particle_surnames() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ARRAY(SELECT n FROM unnest(demo.surnames()) WITH ORDINALITY AS t(n, k) WHERE n LIKE '% %' ORDER BY k) $$;

-- brand|model
CREATE OR REPLACE FUNCTION demo.car_models() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ARRAY['Toyota|Yaris', 'Kia|Rio', 'Hyundai|Accent', 'Nissan|Versa', 'Chevrolet|Sail', 'Suzuki|Swift',
                   'Kia|Soluto', 'Hyundai|Grand i10', 'Toyota|Corolla', 'Chery|QQ', 'Nissan|Sentra', 'Toyota|Etios'] $$;

CREATE OR REPLACE FUNCTION demo.colors() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ARRAY['Blanco', 'Gris', 'Plata', 'Negro', 'Rojo', 'Azul', 'Beige'] $$;

-- One row per generator call, so that appending calls never repeat a hash input.
CREATE TABLE IF NOT EXISTS demo.batches (
  batch          integer PRIMARY KEY,
  seed           integer NOT NULL,
  leads          integer NOT NULL,
  drivers        integer NOT NULL,
  trip_days      integer NOT NULL,
  lead_id_from   integer NOT NULL,
  driver_id_from bigint NOT NULL,
  business_today date NOT NULL,
  summary        jsonb NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE demo.batches IS 'One row per demo generator call: options, id ranges and summary counts.';

CREATE TABLE IF NOT EXISTS demo.lead_truth (
  lead_id        integer PRIMARY KEY,
  lead_source_pk text,
  true_driver_id text,
  scenario       text NOT NULL,
  matchable      boolean NOT NULL
);
COMMENT ON TABLE demo.lead_truth IS 'Ground truth of the demo leads: the driver each lead really became (NULL: none) and whether a careful human could identify it from the lead''s phone, plate and name.';
COMMENT ON COLUMN demo.lead_truth.true_driver_id IS 'drivers.driver_id of the person (the target park''s driver when the person drives for several parks); NULL when the lead never became a driver.';
COMMENT ON COLUMN demo.lead_truth.matchable IS 'true when the lead''s phone, plate and name identify the driver without doubt (false: no driver, no usable keys, only the shared office phone, junk).';
