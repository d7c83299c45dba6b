-- The m and u probabilities of each comparison level of the probabilistic tier, per version
-- of canon.match_fs_versions: m = P(level | same person), u = P(level | two random
-- records). A level's weight is log2(m / u) bits. u_kind says how u is read: PAIR, a
-- probability as written; PER_DRIVER, an expected number of drivers at this level for a
-- random lead, divided by the number of indexed drivers at run time (plates: the chance that
-- a random driver shares a plate grows with the base); TOKEN_SHARE, a factor on the share of
-- drivers typing the partner token (canon_internal.name_token_stats: rarity weights). m by
-- hand or by EM (ops.estimate_fs_version). A change of the active version's levels marks
-- every OPEN unmatched lead due for a retry; an inactive version's marks nothing.
CREATE TABLE canon.match_fs_levels (
  version     integer NOT NULL REFERENCES canon.match_fs_versions (version) ON DELETE CASCADE,
  comparison  text NOT NULL CHECK (comparison IN ('PLATE', 'NAME_TOKEN', 'NAME_DRIVER_TOKEN', 'HIRE_DATE', 'PARK')),
  level       text NOT NULL,
  m           numeric(8,7) NOT NULL CHECK ((m > 0) AND (m <= 1)),
  u           numeric(12,9) NOT NULL CHECK (u > 0),
  u_kind      text NOT NULL CHECK (u_kind IN ('PAIR', 'PER_DRIVER', 'TOKEN_SHARE')),
  note        text NOT NULL,
  PRIMARY KEY (version, comparison, level),
  CHECK ((u_kind <> 'PAIR') OR (u <= 1))
);

CREATE TRIGGER match_fs_levels_changed
  AFTER INSERT OR DELETE OR UPDATE ON canon.match_fs_levels
  FOR EACH ROW
  EXECUTE FUNCTION canon.mark_open_leads_due_fs_level();

CREATE TRIGGER match_fs_levels_truncated
  AFTER TRUNCATE ON canon.match_fs_levels
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.mark_open_leads_due();

COMMENT ON TABLE canon.match_fs_levels IS
  'm and u per comparison level and version of the probabilistic tier; weight = log2(m / u). u_kind: PAIR (a probability), PER_DRIVER (expected drivers at the level per lead, / indexed drivers), TOKEN_SHARE (factor on the partner token''s share of drivers). A change of the active version''s levels marks every OPEN unmatched lead due for a retry (canon.mark_open_leads_due_fs_level).';

INSERT INTO canon.match_fs_levels (version, comparison, level, m, u, u_kind, note) VALUES
  (1, 'PLATE', 'EXACT',        0.4500000, 0.150000000, 'PER_DRIVER', 'plates equal; u: 0.15 other drivers share a driver''s plate (shift partners, a car changing hands)'),
  (1, 'PLATE', 'CONFUSION',    0.1200000, 0.010000000, 'PER_DRIVER', 'one character read as another (O/0, I/1, B/8, S/5, Z/2, G/6); such near plates rarely exist'),
  (1, 'PLATE', 'ONE_EDIT',     0.1300000, 0.300000000, 'PER_DRIVER', 'one character changed, missing, extra or two swapped; u: 0.3 drivers one edit from a plate at 50k drivers (canon.estimate_fs_u), it grows with the plates in use'),
  (1, 'PLATE', 'DIFFERENT',    0.3000000, 1.000000000, 'PAIR',       'another car (changed car, or the person); u: nearly every random pair'),
  (1, 'NAME_TOKEN', 'EXACT',   0.7000000, 1.000000000, 'TOKEN_SHARE', 'a lead token equal to a driver token; u: the token''s share of drivers'),
  (1, 'NAME_TOKEN', 'PHONETIC', 0.1000000, 1.000000000, 'TOKEN_SHARE', 'same Spanish phonetic key (QUISPE/KISPE, VASQUEZ/BASQUEZ)'),
  (1, 'NAME_TOKEN', 'TYPO',    0.1200000, 2.000000000, 'TOKEN_SHARE', 'one edit or swap (4+ letters); u: twice the share, other tokens are one edit away too'),
  (1, 'NAME_TOKEN', 'GLUED',   0.0300000, 1.000000000, 'TOKEN_SHARE', 'two tokens typed as one (JUANCARLOS, DELACRUZ); u: the rarer part''s share'),
  (1, 'NAME_TOKEN', 'INITIAL', 0.0200000, 0.250000000, 'PAIR',       'an initial and a token starting with it'),
  (1, 'NAME_TOKEN', 'NONE',    0.0300000, 0.950000000, 'PAIR',       'a lead token with no partner (a nickname, another person''s name)'),
  (1, 'NAME_DRIVER_TOKEN', 'MISSING', 0.3500000, 0.900000000, 'PAIR', 'a driver token the lead does not give (a second given name or surname left out)'),
  (1, 'HIRE_DATE', 'NEAR',     0.6000000, 0.030000000, 'PAIR', 'hired 0 to 30 days after the lead'),
  (1, 'HIRE_DATE', 'CLOSE',    0.1500000, 0.090000000, 'PAIR', 'hired 1 to 30 days before, or 31 to 90 days after the lead'),
  (1, 'HIRE_DATE', 'YEAR',     0.1500000, 0.380000000, 'PAIR', 'hired within a year of the lead otherwise'),
  (1, 'HIRE_DATE', 'FAR',      0.1000000, 0.500000000, 'PAIR', 'hired more than a year before or after the lead'),
  (1, 'PARK', 'TARGET',        0.9000000, 0.600000000, 'PAIR', 'the driver is in the target park (the lead''s)'),
  (1, 'PARK', 'OTHER',         0.1000000, 0.400000000, 'PAIR', 'the driver is in another park');
