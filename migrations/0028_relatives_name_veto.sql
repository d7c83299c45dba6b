-- Up Migration
-- snapshot of migrations/parts/0028_name_roles_tables.sql
-- SPEC 5 "Relatives are different people": which name tokens the drivers type as given
-- names and which as surnames, so the relatives veto (canon.name_veto) can tell a
-- different given name from a missing middle name when names arrive in the wrong fields.
-- Two caches, each kept equal to its source by a statement trigger in the same statement
-- (migrations/parts/0028_name_roles_triggers.sql) and checked by ops.check_invariants.

-- Per indexed driver: the tokens of its given-name fields and of its last-name field.
CREATE TABLE IF NOT EXISTS canon.driver_name_roles (
  driver_id    text PRIMARY KEY,
  given_names  text[],
  surnames     text[],
  indexed_at   timestamptz NOT NULL
);
COMMENT ON TABLE canon.driver_name_roles IS
  'Cache, one row per canon.driver_index row, written with it by the trigger canon.sync_driver_name_roles: tokens (canon.name_field_tokens) of the driver''s first and middle name (given_names) and of its last name (surnames) from the public.drivers row the index was built from, else the newest (NULL: no such field, e.g. only full_name). Live definition: canon.v_driver_name_roles.';
COMMENT ON COLUMN canon.driver_name_roles.indexed_at IS 'canon.driver_index.indexed_at of the index row it was written with (equal by construction).';

-- Per token: how many indexed drivers type it as a given name, and as a surname.
CREATE TABLE IF NOT EXISTS canon.name_token_stats (
  token       text PRIMARY KEY,
  -- (no CHECK (>= 0): an upsert checks its proposed row, here the delta)
  as_given    bigint NOT NULL,
  as_surname  bigint NOT NULL
);
-- The counters that reached zero, found by each statement without a pass over the table.
CREATE INDEX IF NOT EXISTS name_token_stats_unused_idx ON canon.name_token_stats (token)
  WHERE as_given = 0 AND as_surname = 0;
COMMENT ON TABLE canon.name_token_stats IS
  'Cache: per name token, indexed drivers typing it as a given name (as_given) and as a surname (as_surname); kept equal to canon.v_name_token_stats by the trigger canon.count_name_token_changes on canon.driver_name_roles. Read by canon.name_token_usage.';

-- canon.lead_candidates returns one more column (name_veto): recreated below.
DROP FUNCTION IF EXISTS canon.lead_candidates(integer[]);

-- snapshot of sql/canon/canon.name_field_tokens.sql
-- canon.name_field_tokens: the tokens of one name field (first_name, middle_name,
-- last_name) split as canon.normalize_name splits a name (accents removed, upper case,
-- every run of anything but A-Z0-9 separates), to tell which field a name token was typed
-- in: the name roles of canon.driver_name_roles and of a lead (canon.name_veto_of).
-- Unsorted, with repeats, particles and numbers left in (they never equal a token of
-- canon.name_tokens, so they never decide anything): one regexp split per field, several
-- times cheaper than canon.name_tokens, paid for every driver of a full index build.
CREATE OR REPLACE FUNCTION canon.name_field_tokens(p_field text)
RETURNS text[]
LANGUAGE sql
STABLE
PARALLEL SAFE
AS $$
  -- STABLE as unaccent is, not STRICT and without SET: so it is inlined into the calling
  -- query (a call per field costs twice the expression). The first 200 characters, as
  -- canon.normalize_name. NULL when the field has no token.
  SELECT nullif(pg_catalog.array_remove(pg_catalog.regexp_split_to_array(
           pg_catalog.upper(pg_catalog.left(public.unaccent('public.unaccent'::regdictionary, pg_catalog.left(p_field, 200)), 200)
                            COLLATE "C"),
           '[^A-Z0-9]+'), ''), '{}')
$$;
COMMENT ON FUNCTION canon.name_field_tokens(text) IS
  'Tokens of one name field, split as canon.normalize_name splits (accents removed, upper case, on anything but A-Z0-9); unsorted, repeats, particles and numbers kept; NULL when none. Tells which field a name token was typed in.';

-- snapshot of sql/canon/canon.name_veto.sql
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

-- snapshot of sql/canon/canon.name_token_usage.sql
-- canon.name_token_usage: which of the given name tokens the drivers clearly use as a
-- given name, and which as a surname (SPEC 5: roles are judged from "how common each
-- token is as a given name or a surname among the drivers"), from the counts kept in
-- canon.name_token_stats. Called by canon.lead_candidates for the few candidate pairs
-- canon.name_veto looks at; a handful of primary-key probes per pair.
CREATE OR REPLACE FUNCTION canon.name_token_usage(p_tokens text[])
RETURNS TABLE (given_names text[], surnames text[])
LANGUAGE sql
STABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
  -- Clear: typed in that role by at least min_uses drivers and at least ratio times as
  -- often as in the other role (CRUZ, SANTOS, LEON are both: not clear, the fields decide).
  WITH params (min_uses, ratio) AS (VALUES (3, 3))
  SELECT array_agg(s.token ORDER BY s.token) FILTER (WHERE s.as_given >= p.min_uses AND s.as_given >= p.ratio * s.as_surname),
         array_agg(s.token ORDER BY s.token) FILTER (WHERE s.as_surname >= p.min_uses AND s.as_surname >= p.ratio * s.as_given)
  FROM params p
  LEFT JOIN canon.name_token_stats s ON s.token = ANY (p_tokens)
$$;
COMMENT ON FUNCTION canon.name_token_usage(text[]) IS
  'Of the given tokens, those the drivers clearly use as given names (first/middle name) and as surnames (last name): at least 3 drivers and 3 times as often as the other role, from canon.name_token_stats. NULL arrays when none.';

-- snapshot of sql/canon/canon.name_veto_of.sql
-- canon.name_veto_of: canon.name_veto for two names of records the matcher holds (a lead
-- row, a driver, or a bare name), with the roles both records can tell: the lead's
-- first/middle/last name fields (public.module_ct_cabinet_leads), the driver's
-- (canon.driver_name_roles) and the drivers' usage of each token (canon.name_token_usage).
-- Called by canon.lead_candidates only for pairs whose score alone is a name match; each
-- record is named by a lead id or a driver id (both NULL: a name without fields).
CREATE OR REPLACE FUNCTION canon.name_veto_of(
  p_a text[], p_a_lead_id integer, p_a_driver_id text,
  p_b text[], p_b_lead_id integer, p_b_driver_id text)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  a_given    text[];
  a_surnames text[];
  b_given    text[];
  b_surnames text[];
  u_given    text[];
  u_surnames text[];
BEGIN
  -- With every role unknown the veto is the widest it can be: when even that finds
  -- nothing (a missing middle name, a typo, an initial), no lookup is needed.
  IF canon.name_veto(p_a, NULL, NULL, p_b, NULL, NULL, NULL, NULL) IS NULL THEN
    RETURN NULL;
  END IF;
  IF p_a_lead_id IS NOT NULL THEN
    SELECT canon.name_field_tokens(concat_ws(' ', l.first_name, l.middle_name)), canon.name_field_tokens(l.last_name)
    INTO a_given, a_surnames
    FROM public.module_ct_cabinet_leads l WHERE l.id = p_a_lead_id;
  ELSIF p_a_driver_id IS NOT NULL THEN
    SELECT r.given_names, r.surnames INTO a_given, a_surnames
    FROM canon.driver_name_roles r WHERE r.driver_id = p_a_driver_id;
  END IF;
  IF p_b_lead_id IS NOT NULL THEN
    SELECT canon.name_field_tokens(concat_ws(' ', l.first_name, l.middle_name)), canon.name_field_tokens(l.last_name)
    INTO b_given, b_surnames
    FROM public.module_ct_cabinet_leads l WHERE l.id = p_b_lead_id;
  ELSIF p_b_driver_id IS NOT NULL THEN
    SELECT r.given_names, r.surnames INTO b_given, b_surnames
    FROM canon.driver_name_roles r WHERE r.driver_id = p_b_driver_id;
  END IF;
  SELECT u.given_names, u.surnames INTO u_given, u_surnames FROM canon.name_token_usage(p_a || p_b) u;
  RETURN canon.name_veto(p_a, a_given, a_surnames, p_b, b_given, b_surnames, u_given, u_surnames);
END
$$;
COMMENT ON FUNCTION canon.name_veto_of(text[], integer, text, text[], integer, text) IS
  'canon.name_veto of two token sets with the roles their records tell: a lead row (p_*_lead_id: its name fields), a driver (p_*_driver_id: canon.driver_name_roles) or neither, and the drivers'' usage (canon.name_token_usage). NULL: no veto.';

-- snapshot of sql/canon/canon.sync_driver_name_roles.sql
-- canon.sync_driver_name_roles: statement-level trigger function on canon.driver_index
-- (INSERT, UPDATE, DELETE with transition tables new_rows / old_rows; TRUNCATE). Keeps
-- canon.driver_name_roles one row per indexed driver, written in the same statement as the
-- index row: the tokens (canon.name_field_tokens) of the driver's given-name fields
-- (first and middle name) and of its last-name field, from the public.drivers row the
-- index was built from (its hash is the row's source_hash; the newest row when none has
-- it, e.g. changed since: the next run re-indexes it): the same choice as
-- canon.driver_name_roles_live, also between two rows of one driver_id and one timestamp.
-- Whatever writes the index (the run's incremental or full refresh, a repair, a test),
-- the roles follow it.
CREATE OR REPLACE FUNCTION canon.sync_driver_name_roles()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    TRUNCATE canon.driver_name_roles;
    RETURN NULL;
  END IF;
  IF TG_OP = 'DELETE' THEN
    DELETE FROM canon.driver_name_roles r USING old_rows o WHERE r.driver_id = o.driver_id;
    RETURN NULL;
  END IF;
  IF TG_OP = 'UPDATE' THEN
    -- (a driver_id changed in place: the old id is no longer indexed)
    DELETE FROM canon.driver_name_roles r
    USING old_rows o
    WHERE r.driver_id = o.driver_id
      AND NOT EXISTS (SELECT 1 FROM new_rows n WHERE n.driver_id = o.driver_id);
  END IF;
  -- Set-based: one join of the written rows with their source rows, the planner's choice
  -- of probes (a run's few drivers) or one hash join (a full build).
  INSERT INTO canon.driver_name_roles AS r (driver_id, given_names, surnames, indexed_at)
  SELECT s.driver_id,
         canon.name_field_tokens(concat_ws(' ', s.first_name, s.middle_name)),
         canon.name_field_tokens(s.last_name),
         s.indexed_at
  FROM (
    SELECT DISTINCT ON (n.driver_id) n.driver_id, n.indexed_at, d.first_name, d.middle_name, d.last_name
    FROM new_rows n
    LEFT JOIN public.drivers d ON d.driver_id = n.driver_id
    ORDER BY n.driver_id,
             -- the same hash as canon.refresh_driver_index (driver_index.source_hash)
             md5(concat_ws(E'\x1f', d.park_id, d.phone, d.license_normalized_number, d.license_number,
                           d.car_normalized_number, d.car_number, d.full_name, d.first_name, d.middle_name,
                           d.last_name, d.hire_date::text)) = n.source_hash DESC,
             coalesce(d.updated_at, d.created_at) DESC NULLS LAST
  ) s
  ORDER BY s.driver_id
  ON CONFLICT (driver_id) DO UPDATE
    SET given_names = excluded.given_names, surnames = excluded.surnames, indexed_at = excluded.indexed_at;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION canon.sync_driver_name_roles() IS
  'Statement trigger on canon.driver_index: keeps canon.driver_name_roles (given-name and last-name tokens of each indexed driver''s source row) equal to the index, row for row, in the same statement.';

-- snapshot of sql/canon/canon.count_name_token_changes.sql
-- canon.count_name_token_changes: statement-level trigger function on
-- canon.driver_name_roles (INSERT, UPDATE, DELETE with transition tables new_rows /
-- old_rows; TRUNCATE). Keeps canon.name_token_stats equal to the roles counted per token
-- (canon.v_name_token_stats): each statement adds its new rows' tokens and subtracts its
-- old rows' tokens, grouped per token, so a run pays for the drivers it re-indexed, never
-- for a pass over every driver. Counters in token order: two writers never deadlock.
CREATE OR REPLACE FUNCTION canon.count_name_token_changes()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    DELETE FROM canon.name_token_stats;
    RETURN NULL;
  END IF;
  -- One branch per operation: a transition table the operation has not cannot be named.
  IF TG_OP = 'INSERT' THEN
    INSERT INTO canon.name_token_stats AS c (token, as_given, as_surname)
    SELECT x.token, sum(x.g), sum(x.s)
    FROM (SELECT t.token, 1 AS g, 0 AS s FROM new_rows n CROSS JOIN unnest(n.given_names) t (token)
          UNION ALL
          SELECT t.token, 0, 1 FROM new_rows n CROSS JOIN unnest(n.surnames) t (token)) x
    GROUP BY x.token
    ORDER BY x.token
    ON CONFLICT (token) DO UPDATE
      SET as_given = c.as_given + excluded.as_given, as_surname = c.as_surname + excluded.as_surname;
  ELSIF TG_OP = 'UPDATE' THEN
    INSERT INTO canon.name_token_stats AS c (token, as_given, as_surname)
    SELECT x.token, sum(x.g), sum(x.s)
    FROM (SELECT t.token, 1 AS g, 0 AS s FROM new_rows n CROSS JOIN unnest(n.given_names) t (token)
          UNION ALL
          SELECT t.token, 0, 1 FROM new_rows n CROSS JOIN unnest(n.surnames) t (token)
          UNION ALL
          SELECT t.token, -1, 0 FROM old_rows o CROSS JOIN unnest(o.given_names) t (token)
          UNION ALL
          SELECT t.token, 0, -1 FROM old_rows o CROSS JOIN unnest(o.surnames) t (token)) x
    GROUP BY x.token
    HAVING sum(x.g) <> 0 OR sum(x.s) <> 0
    ORDER BY x.token
    ON CONFLICT (token) DO UPDATE
      SET as_given = c.as_given + excluded.as_given, as_surname = c.as_surname + excluded.as_surname;
    DELETE FROM canon.name_token_stats c WHERE c.as_given = 0 AND c.as_surname = 0;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO canon.name_token_stats AS c (token, as_given, as_surname)
    SELECT x.token, -sum(x.g), -sum(x.s)
    FROM (SELECT t.token, 1 AS g, 0 AS s FROM old_rows o CROSS JOIN unnest(o.given_names) t (token)
          UNION ALL
          SELECT t.token, 0, 1 FROM old_rows o CROSS JOIN unnest(o.surnames) t (token)) x
    GROUP BY x.token
    ORDER BY x.token
    ON CONFLICT (token) DO UPDATE
      SET as_given = c.as_given + excluded.as_given, as_surname = c.as_surname + excluded.as_surname;
    DELETE FROM canon.name_token_stats c WHERE c.as_given = 0 AND c.as_surname = 0;
  END IF;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION canon.count_name_token_changes() IS
  'Statement trigger on canon.driver_name_roles: adds and subtracts the changed rows'' tokens in canon.name_token_stats (drivers typing each token as a given name / as a surname); a token no driver uses any more is removed.';

-- snapshot of sql/canon/canon.v_name_token_stats.sql
-- canon.v_name_token_stats: the live definition of canon.name_token_stats: per name
-- token, how many indexed drivers typed it as a given name (first or middle name) and
-- how many as a surname (last name), counted from canon.driver_name_roles. The table is
-- kept equal to it by a trigger (canon.count_name_token_changes); ops.check_invariants
-- compares the two (NAME_TOKEN_STATS). A full pass over the roles: for checks, not for
-- matching (canon.name_token_usage reads the table).
CREATE OR REPLACE VIEW canon.v_name_token_stats AS
SELECT x.token, sum(x.g)::bigint AS as_given, sum(x.s)::bigint AS as_surname
FROM (
  SELECT t.token, 1 AS g, 0 AS s FROM canon.driver_name_roles r CROSS JOIN unnest(r.given_names) t (token)
  UNION ALL
  SELECT t.token, 0, 1 FROM canon.driver_name_roles r CROSS JOIN unnest(r.surnames) t (token)
) x
GROUP BY x.token;
COMMENT ON VIEW canon.v_name_token_stats IS
  'Live definition of canon.name_token_stats: indexed drivers typing each token as a given name (as_given) and as a surname (as_surname), from canon.driver_name_roles. Full pass: for checks.';

-- snapshot of sql/canon/canon.driver_name_roles_live.sql
-- canon.driver_name_roles_live: the live definition of canon.driver_name_roles, for the
-- given indexed drivers (NULL: all): the tokens of the given-name fields and of the
-- last-name field of the public.drivers row the index was built from (the row whose hash
-- is driver_index.source_hash, as canon.refresh_driver_index computes it; else, changed
-- upstream since the last run, the newest row). source_indexed: that row still exists, so
-- the roles must equal it. A function, not a view over public.drivers: a view would pin
-- the upstream table's columns (upstream could no longer drop or alter one); the view
-- canon.v_driver_name_roles reads it whole. Called by ops.check_invariants on a sample
-- and by ops.repair_name_roles on every driver.
CREATE OR REPLACE FUNCTION canon.driver_name_roles_live(p_driver_ids text[] DEFAULT NULL)
RETURNS TABLE (driver_id text, given_names text[], surnames text[], indexed_at timestamptz, source_indexed boolean)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT i.driver_id,
         canon.name_field_tokens(concat_ws(' ', s.first_name, s.middle_name)),
         canon.name_field_tokens(s.last_name),
         i.indexed_at,
         coalesce(s.is_indexed, false)
  -- Every driver, or the given ones probed by key (an = ANY over the whole index would
  -- compare each row with the whole list).
  FROM (SELECT x.driver_id, x.indexed_at, x.source_hash FROM canon.driver_index x WHERE p_driver_ids IS NULL
        UNION ALL
        SELECT x.driver_id, x.indexed_at, x.source_hash
        FROM (SELECT DISTINCT u.id FROM unnest(p_driver_ids) u (id)) u
        JOIN canon.driver_index x ON x.driver_id = u.id) i
  LEFT JOIN LATERAL (
    SELECT d.first_name, d.middle_name, d.last_name, x.is_indexed
    FROM public.drivers d
    -- The same hash as canon.refresh_driver_index (driver_index.source_hash).
    CROSS JOIN LATERAL (
      SELECT md5(concat_ws(E'\x1f', d.park_id, d.phone, d.license_normalized_number, d.license_number,
                           d.car_normalized_number, d.car_number, d.full_name, d.first_name, d.middle_name,
                           d.last_name, d.hire_date::text)) = i.source_hash AS is_indexed) x
    WHERE d.driver_id = i.driver_id
    ORDER BY x.is_indexed DESC, coalesce(d.updated_at, d.created_at) DESC NULLS LAST
    LIMIT 1
  ) s ON true
$$;
COMMENT ON FUNCTION canon.driver_name_roles_live(text[]) IS
  'Live definition of canon.driver_name_roles for the given indexed drivers (NULL: all): field tokens of the public.drivers row the index holds (same source_hash), else of the newest; source_indexed says that row still exists.';

-- snapshot of sql/canon/canon.v_driver_name_roles.sql
-- canon.v_driver_name_roles: the live definition of canon.driver_name_roles, every
-- indexed driver (canon.driver_name_roles_live(NULL): tokenises every driver's fields, a
-- full pass; the checks call the function with the drivers they sample).
CREATE OR REPLACE VIEW canon.v_driver_name_roles AS
SELECT l.driver_id, l.given_names, l.surnames, l.indexed_at, l.source_indexed
FROM canon.driver_name_roles_live(NULL) l;
COMMENT ON VIEW canon.v_driver_name_roles IS
  'Live definition of canon.driver_name_roles: per indexed driver, the tokens of first+middle name (given_names) and of last_name (surnames) of the public.drivers row the index holds; source_indexed: that row still exists. A full pass.';

-- snapshot of sql/canon/canon.lead_candidates.sql
-- canon.lead_candidates: every driver candidate of the given lead rows, by rule, with
-- its score and name similarity, and whether it is kept as evidence or why it is not.
-- The one definition of the rules of SPEC 6, used by the batch matcher and by
-- ops.explain_lead. Reads canon.lead_keys and canon.driver_index, always by key: a batch
-- (at most a run's limit) is probed into the driver index, never joined by hashing the
-- whole index, which the planner chose at 1M drivers from its estimates, nor with JIT
-- (10,000 leads at 1M: 2.2 s as planned, 0.86 s without JIT, 0.59 s by key). Names are
-- compared as the normalised names both store (canon.token_similarity on their tokens:
-- the score of canon.name_similarity without normalising each name again per pair).
-- A pair whose score alone is a name match but whose names differ by a given name or a
-- surname (SPEC 5, relatives) is vetoed (canon.name_veto, roles from both records' fields
-- and canon.name_token_usage): looked up only for the few pairs scoring in [0.66, 1).
CREATE OR REPLACE FUNCTION canon.lead_candidates(p_lead_ids integer[])
RETURNS TABLE (
  lead_id integer,
  lead_source_pk text,
  rule text,
  rule_group text,
  driver_id text,
  park_id text,
  in_target_park boolean,
  score numeric,
  confidence_level text,
  name_similarity numeric,
  hire_date date,
  hire_in_window boolean,
  kept boolean,
  reject_reason text,
  name_veto jsonb
)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
  WITH params AS (
    SELECT canon.setting('target_park_id') AS target_park,
           canon.setting('shared_phone_min_other_people')::integer AS min_other_people
  ),
  -- Below, no two derived sets of the size of the batch are joined: each step is per lead,
  -- a window over the candidates of a lead, or a lookup in the few shared phones. (This
  -- function is planned without knowing the batch size; such a join became a nested loop
  -- over both: quadratic, 1.5 s for 10,000 leads against 60 ms for 2,000.)
  batch AS (
    SELECT k.* FROM canon.lead_keys k WHERE k.lead_id = ANY (p_lead_ids)
  ),
  -- A phone that other leads use under other names is an office phone, not a person's.
  -- Only phones with enough distinct names to be shared (few) are compared name by name,
  -- each read once however many leads of the batch carry it (MATERIALIZED: not inlined
  -- into the per-lead lookup below, which would read a shared phone's leads per lead).
  phone_names AS MATERIALIZED (
    SELECT p.phone_norm, array_agg(o.name_norm) AS names
    FROM (SELECT DISTINCT b.phone_norm FROM batch b WHERE b.phone_norm IS NOT NULL) p
    CROSS JOIN LATERAL (
      SELECT DISTINCT o.name_norm
      FROM canon.lead_keys o
      WHERE o.phone_norm = p.phone_norm AND o.name_norm IS NOT NULL
      LIMIT 50
    ) o
    GROUP BY p.phone_norm
    HAVING count(*) > (SELECT pr.min_other_people FROM params pr)
  ),
  -- Enough is enough: stop comparing once min_other_people other people are found.
  leads AS (
    SELECT b.*,
           CASE WHEN b.phone_norm IS NOT NULL THEN (
             SELECT count(*)
             FROM (SELECT 1
                   FROM phone_names pn
                   CROSS JOIN unnest(pn.names) n (name_norm)
                   CROSS JOIN LATERAL (
                     SELECT string_to_array(b.name_norm, ' ') AS lt, string_to_array(n.name_norm, ' ') AS ot) t
                   CROSS JOIN LATERAL (SELECT canon.token_similarity(t.lt, t.ot) AS sim) s
                   WHERE pn.phone_norm = b.phone_norm
                     AND (b.name_norm IS NULL
                          OR (n.name_norm <> b.name_norm
                              AND (s.sim < 0.66
                                   -- a relative's name is another person's (SPEC 5)
                                   OR canon.name_veto_of(t.lt, b.lead_id, NULL, t.ot, NULL, NULL) IS NOT NULL)))
                   LIMIT (SELECT pr.min_other_people FROM params pr)) x)
           END AS other_people
    FROM batch b
  ),
  raw AS (
    SELECT l.lead_id, l.lead_source_pk, l.name_norm AS lead_name_norm, l.lead_date, l.other_people,
           'PHONE' AS rule_group, d.driver_id, d.park_id, d.name_norm, d.hire_date
    FROM leads l JOIN canon.driver_index d ON d.phone_norm = l.phone_norm
    UNION ALL
    SELECT l.lead_id, l.lead_source_pk, l.name_norm, l.lead_date, l.other_people,
           'LICENSE', d.driver_id, d.park_id, d.name_norm, d.hire_date
    FROM leads l JOIN canon.driver_index d ON d.license_norm = l.license_norm
    UNION ALL
    SELECT l.lead_id, l.lead_source_pk, l.name_norm, l.lead_date, l.other_people,
           'PLATE', d.driver_id, d.park_id, d.name_norm, d.hire_date
    FROM leads l JOIN canon.driver_index d ON d.plate_norm = l.plate_norm
  ),
  scored AS (
    SELECT r.lead_id, r.lead_source_pk, r.rule_group, r.driver_id, r.park_id, r.name_norm, r.lead_name_norm,
           r.park_id IS NOT DISTINCT FROM p.target_park AS in_target_park,
           CASE WHEN r.lead_name_norm = r.name_norm THEN 1.0000
                ELSE round(coalesce(canon.token_similarity(string_to_array(r.lead_name_norm, ' '), string_to_array(r.name_norm, ' ')), 0), 4)
           END AS name_similarity,
           r.hire_date,
           (r.hire_date IS NULL OR r.hire_date BETWEEN r.lead_date - 90 AND r.lead_date + 30) AS hire_in_window,
           coalesce(r.other_people, 0) >= p.min_other_people AS lead_phone_shared,
           x.present IS NULL AS driver_deleted
    FROM raw r
    CROSS JOIN params p
    -- One probe per candidate, a plain column after: a NOT EXISTS here was planned as a
    -- hashed subplan, one scan of public.drivers per later reference (3 x 30 ms of every
    -- batch at 200k drivers).
    LEFT JOIN LATERAL (SELECT true AS present FROM public.drivers x WHERE x.driver_id = r.driver_id LIMIT 1) x ON true
  ),
  -- A plate's driver whose name scores as a match may still be a relative (SPEC 5): the
  -- veto is looked up for those pairs only (a score of 1 leaves nothing to differ).
  vetted AS (
    SELECT sc.*,
           CASE WHEN sc.rule_group = 'PLATE' AND sc.name_similarity >= 0.66 AND sc.name_similarity < 1 THEN
             canon.name_veto_of(string_to_array(sc.lead_name_norm, ' '), sc.lead_id, NULL,
                                string_to_array(sc.name_norm, ' '), NULL, sc.driver_id)
           END AS veto
    FROM scored sc
  ),
  -- Several drivers on one phone with different names are different people: when a lead's
  -- phone finds 2+ drivers (not deleted), each is compared with the one of the smallest
  -- name (a relative's name is a different person's too).
  phone_grouped AS (
    SELECT sc.*,
           first_value(sc.driver_id) OVER (PARTITION BY sc.lead_id
                                           ORDER BY (sc.rule_group = 'PHONE' AND NOT sc.driver_deleted) DESC,
                                                    sc.name_norm, sc.driver_id) AS phone_ref_driver,
           min(sc.name_norm) FILTER (WHERE sc.rule_group = 'PHONE' AND NOT sc.driver_deleted)
             OVER (PARTITION BY sc.lead_id) AS phone_ref_name,
           count(*) FILTER (WHERE sc.rule_group = 'PHONE' AND NOT sc.driver_deleted)
             OVER (PARTITION BY sc.lead_id) AS phone_drivers
    FROM vetted sc
  ),
  phone_compared AS (
    SELECT g.*,
           g.phone_drivers > 1
             AND bool_or(CASE WHEN g.rule_group = 'PHONE' AND NOT g.driver_deleted AND g.phone_drivers > 1
                                   AND g.name_norm IS DISTINCT FROM g.phone_ref_name
                              THEN (SELECT x.sim < 0.66
                                           OR (x.sim < 1
                                               AND canon.name_veto_of(x.dt, NULL, g.driver_id, x.rt, NULL, g.phone_ref_driver) IS NOT NULL)
                                    FROM (SELECT string_to_array(g.name_norm, ' ') AS dt, string_to_array(g.phone_ref_name, ' ') AS rt) t
                                    CROSS JOIN LATERAL (SELECT coalesce(canon.token_similarity(t.dt, t.rt), 0) AS sim, t.dt, t.rt) x)
                              ELSE false END)
                   OVER (PARTITION BY g.lead_id) AS phone_shared_by_drivers
    FROM phone_grouped g
  ),
  classified AS (
    SELECT sc.*,
           CASE sc.rule_group
             WHEN 'PHONE' THEN 'R1_PHONE_EXACT'
             WHEN 'LICENSE' THEN 'R2_LICENSE_EXACT'
             ELSE CASE WHEN sc.hire_in_window THEN 'R3_PLATE_EXACT_NAME_SIMILAR' ELSE 'R3B_PLATE_NAME_NO_DATE' END
           END AS rule,
           CASE
             WHEN sc.driver_deleted THEN 'DRIVER_DELETED'
             WHEN sc.rule_group = 'PHONE' AND sc.lead_phone_shared THEN 'PHONE_SHARED_BY_LEADS'
             WHEN sc.rule_group = 'PHONE' AND coalesce(sc.phone_shared_by_drivers, false) THEN 'PHONE_SHARED_BY_DRIVERS'
             WHEN sc.rule_group = 'PLATE' AND sc.name_similarity < 0.66 THEN 'NAME_NOT_SIMILAR'
             WHEN sc.rule_group = 'PLATE' AND sc.veto IS NOT NULL THEN 'NAME_VETO'
           END AS reject_reason
    FROM phone_compared sc
  ),
  -- The target park is preferred: other parks count only when no rule finds a target-park driver.
  parked AS (
    SELECT c.*,
           CASE
             WHEN c.reject_reason IS NULL AND NOT c.in_target_park
                  AND bool_or(c.reject_reason IS NULL AND c.in_target_park) OVER (PARTITION BY c.lead_id)
               THEN 'OTHER_PARK_TARGET_PREFERRED'
             ELSE c.reject_reason
           END AS reason
    FROM classified c
  ),
  -- Shift drivers share a plate: the name decides when the best is clearly better (gap >=
  -- 0.15). Ranked among the lead's plate candidates still standing (the partition's
  -- second key); the other rows' ranks are not used.
  plate_ranked AS (
    SELECT p.*,
           (p.rule_group = 'PLATE' AND p.reason IS NULL) AS plate_standing,
           row_number() OVER w AS plate_pos,
           first_value(p.name_similarity) OVER w AS best_similarity,
           nth_value(p.name_similarity, 2) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS second_similarity
    FROM parked p
    WINDOW w AS (PARTITION BY p.lead_id, (p.rule_group = 'PLATE' AND p.reason IS NULL) ORDER BY p.name_similarity DESC, p.driver_id)
  )
  SELECT p.lead_id, p.lead_source_pk, p.rule, p.rule_group, p.driver_id, p.park_id, p.in_target_park,
         CASE p.rule WHEN 'R1_PHONE_EXACT' THEN 95 WHEN 'R2_LICENSE_EXACT' THEN 92
                     WHEN 'R3_PLATE_EXACT_NAME_SIMILAR' THEN 85 ELSE 80 END::numeric AS score,
         CASE WHEN p.rule_group IN ('PHONE', 'LICENSE') THEN 'HIGH' ELSE 'MEDIUM' END AS confidence_level,
         p.name_similarity, p.hire_date, p.hire_in_window,
         final.reason IS NULL AS kept,
         final.reason AS reject_reason,
         CASE WHEN p.veto IS NOT NULL THEN jsonb_build_object('lead', p.veto->'a', 'driver', p.veto->'b') END AS name_veto
  FROM plate_ranked p
  CROSS JOIN LATERAL (
    SELECT CASE
             WHEN p.plate_standing AND p.plate_pos > 1 AND p.best_similarity - p.second_similarity >= 0.15
               THEN 'NAME_LESS_SIMILAR_THAN_BEST'
             ELSE p.reason
           END AS reason
  ) final
$$;
COMMENT ON FUNCTION canon.lead_candidates(integer[]) IS 'All driver candidates of the given lead rows (canon.lead_keys.lead_id), by rule, with score, name similarity, kept or reject_reason, and name_veto ({"lead": {token: role}, "driver": {...}}) when a plate driver''s name is a relative''s (NAME_VETO).';

-- snapshot of sql/canon/canon.lead_decisions.sql
-- canon.lead_decisions: the decision of SPEC 6 for each given lead row, over all
-- candidates of all rules together: MATCH (with the strongest rule, every agreeing rule
-- and the values compared as evidence) or the reason code why not, with its details and
-- up to 5 candidates (what canon.identity_unmatched keeps; NULL for a match, built only
-- for the leads not matched). Used by the batch matcher and by ops.explain_lead. A plate
-- candidate vetoed as a relative's name (NAME_VETO) counts as a plate without a similar
-- name (WEAK_MATCH_ONLY); its name_veto is kept in the candidates and in the evidence.
CREATE OR REPLACE FUNCTION canon.lead_decisions(p_lead_ids integer[])
RETURNS TABLE (
  lead_id integer,
  lead_source_pk text,
  decision text,
  driver_id text,
  match_rule text,
  match_score numeric,
  confidence_level text,
  evidence jsonb,
  details jsonb,
  candidates jsonb
)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
  WITH leads AS (
    SELECT k.* FROM canon.lead_keys k WHERE k.lead_id = ANY (p_lead_ids)
  ),
  cand AS (
    SELECT c.*,
           CASE c.rule WHEN 'R1_PHONE_EXACT' THEN 1 WHEN 'R2_LICENSE_EXACT' THEN 2
                       WHEN 'R3_PLATE_EXACT_NAME_SIMILAR' THEN 3 ELSE 4 END AS rule_rank
    FROM canon.lead_candidates(p_lead_ids) c
  ),
  -- Everything per lead is aggregated in one pass (no correlated scans of cand).
  per_group AS (
    SELECT c.lead_id, c.rule_group, count(DISTINCT c.driver_id) AS drivers
    FROM cand c
    WHERE c.kept
    GROUP BY c.lead_id, c.rule_group
  ),
  per_lead AS (
    SELECT c.lead_id,
           count(DISTINCT c.driver_id) FILTER (WHERE c.kept) AS kept_drivers,
           count(*) FILTER (WHERE NOT c.kept AND c.reject_reason IN ('PHONE_SHARED_BY_LEADS', 'PHONE_SHARED_BY_DRIVERS')) AS shared_phone_hits,
           -- the plate is there, no similar name: not similar, or a relative's (SPEC 5)
           count(*) FILTER (WHERE NOT c.kept AND c.reject_reason IN ('NAME_NOT_SIMILAR', 'NAME_VETO')) AS weak_plate_hits,
           jsonb_agg(DISTINCT c.rule) FILTER (WHERE c.kept) AS kept_rules,
           jsonb_agg(jsonb_build_object('driver_id', c.driver_id, 'rule', c.rule, 'reject_reason', c.reject_reason)
                     || CASE WHEN c.name_veto IS NOT NULL THEN jsonb_build_object('name_veto', c.name_veto) ELSE '{}' END)
             FILTER (WHERE NOT c.kept) AS rejected
    FROM cand c
    GROUP BY c.lead_id
  ),
  summary AS (
    SELECT l.lead_id,
           coalesce(p.kept_drivers, 0) AS kept_drivers,
           coalesce(p.shared_phone_hits, 0) AS shared_phone_hits,
           coalesce(p.weak_plate_hits, 0) AS weak_plate_hits,
           p.kept_rules,
           coalesce(p.rejected, '[]'::jsonb) AS rejected,
           coalesce(g.ambiguous, false) AS some_rule_ambiguous
    FROM leads l
    LEFT JOIN per_lead p ON p.lead_id = l.lead_id
    LEFT JOIN (SELECT pg.lead_id, bool_or(pg.drivers > 1) AS ambiguous FROM per_group pg GROUP BY pg.lead_id) g
      ON g.lead_id = l.lead_id
  ),
  best AS (
    SELECT DISTINCT ON (c.lead_id) c.*
    FROM cand c
    WHERE c.kept
    ORDER BY c.lead_id, c.rule_rank, c.name_similarity DESC, c.driver_id
  ),
  decided AS (
    SELECT l.*, s.kept_drivers, s.shared_phone_hits, s.weak_plate_hits, s.kept_rules, s.rejected,
           b.driver_id AS best_driver,
           b.rule AS best_rule, b.score AS best_score, b.confidence_level AS best_confidence,
           b.name_similarity AS best_similarity, b.hire_date AS best_hire_date, b.park_id AS best_park,
           b.in_target_park AS best_in_target_park,
           CASE
             WHEN s.kept_drivers = 0 THEN
               CASE
                 WHEN l.phone_norm IS NULL AND l.plate_norm IS NULL AND l.license_norm IS NULL THEN 'MISSING_KEYS'
                 WHEN s.weak_plate_hits > 0 THEN 'WEAK_MATCH_ONLY'
                 WHEN s.shared_phone_hits > 0 AND l.plate_norm IS NULL AND l.license_norm IS NULL THEN 'SHARED_KEY'
                 ELSE 'NO_CANDIDATES'
               END
             WHEN s.some_rule_ambiguous THEN 'AMBIGUOUS'
             WHEN s.kept_drivers > 1 THEN 'CONFLICT'
             ELSE 'MATCH'
           END AS decision
    FROM leads l
    JOIN summary s ON s.lead_id = l.lead_id
    LEFT JOIN best b ON b.lead_id = l.lead_id
  ),
  top_candidates AS (
    SELECT c.lead_id,
           jsonb_agg(jsonb_build_object(
             'driver_id', c.driver_id, 'park_id', c.park_id, 'rule', c.rule, 'score', c.score,
             'name_similarity', c.name_similarity, 'hire_date', c.hire_date, 'kept', c.kept,
             'reject_reason', c.reject_reason)
             || CASE WHEN c.name_veto IS NOT NULL THEN jsonb_build_object('name_veto', c.name_veto) ELSE '{}' END
             ORDER BY c.pos) AS candidates
    FROM (
      SELECT c.*, row_number() OVER (PARTITION BY c.lead_id ORDER BY c.kept DESC, c.rule_rank, c.name_similarity DESC, c.driver_id) AS pos
      FROM cand c
      -- only where they are kept: the leads not matched (a match keeps its evidence)
      JOIN decided d ON d.lead_id = c.lead_id AND d.decision <> 'MATCH'
    ) c
    WHERE c.pos <= 5
    GROUP BY c.lead_id
  )
  SELECT d.lead_id, d.lead_source_pk, d.decision,
         CASE WHEN d.decision = 'MATCH' THEN d.best_driver END,
         CASE WHEN d.decision = 'MATCH' THEN d.best_rule END,
         CASE WHEN d.decision = 'MATCH' THEN d.best_score END,
         CASE WHEN d.decision = 'MATCH' THEN d.best_confidence END,
         CASE WHEN d.decision = 'MATCH' THEN jsonb_build_object(
           'rules', d.kept_rules,
           'lead', jsonb_build_object('lead_id', d.lead_id, 'phone_norm', d.phone_norm, 'plate_norm', d.plate_norm,
                                      'name_norm', d.name_norm, 'lead_date', d.lead_date),
           'driver', jsonb_build_object('driver_id', i.driver_id, 'park_id', i.park_id, 'phone_norm', i.phone_norm,
                                        'plate_norm', i.plate_norm, 'license_norm', i.license_norm,
                                        'name_norm', i.name_norm, 'hire_date', i.hire_date),
           'name_similarity', d.best_similarity,
           'hire_window', jsonb_build_array(d.lead_date - 90, d.lead_date + 30),
           'target_park', d.best_in_target_park,
           'rejected', d.rejected)
         END,
         CASE WHEN d.decision <> 'MATCH' THEN jsonb_build_object(
           'phone_norm', d.phone_norm, 'plate_norm', d.plate_norm, 'license_norm', d.license_norm,
           'name_norm', d.name_norm, 'lead_date', d.lead_date,
           'missing', to_jsonb(array_remove(ARRAY[
             CASE WHEN d.phone_norm IS NULL THEN 'phone' END,
             CASE WHEN d.plate_norm IS NULL THEN 'plate' END,
             CASE WHEN d.name_norm IS NULL THEN 'name' END], NULL)),
           'shared_phone', d.shared_phone_hits > 0,
           'kept_drivers', d.kept_drivers)
         END,
         CASE WHEN d.decision <> 'MATCH' THEN coalesce(t.candidates, '[]'::jsonb) END
  FROM decided d
  LEFT JOIN top_candidates t ON t.lead_id = d.lead_id
  LEFT JOIN canon.driver_index i ON i.driver_id = d.best_driver AND d.decision = 'MATCH'
$$;
COMMENT ON FUNCTION canon.lead_decisions(integer[]) IS 'Decision per lead row: MATCH with driver, rule, score and evidence, or AMBIGUOUS / CONFLICT / WEAK_MATCH_ONLY / SHARED_KEY / NO_CANDIDATES / MISSING_KEYS with details and up to 5 candidates (details and candidates NULL for a match).';

-- snapshot of sql/ops/ops.explain_lead.sql
-- ops.explain_lead: "why is this lead (not) matched?" for one lead key: its normalised
-- keys, its current state (link or unmatched row), every candidate with rule, score and
-- why it was kept or rejected, and the decision the matcher would take now.
--   SELECT jsonb_pretty(ops.explain_lead('9f3a...'));
-- It keys the lead's rows first (canon.lead_keys), so it works on leads never run yet;
-- candidates come from the driver index as of its last refresh (shown in the result).
CREATE OR REPLACE FUNCTION ops.explain_lead(p_lead_source_pk text)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_ids integer[];
  v_rep integer;
  v_decision record;
  v_result jsonb;
BEGIN
  SELECT array_agg(l.id ORDER BY l.id) INTO v_ids
  FROM public.module_ct_cabinet_leads l
  WHERE canon.lead_source_pk(l.external_id, l.id) = p_lead_source_pk;
  IF v_ids IS NULL THEN
    RAISE EXCEPTION 'unknown lead %: no row of public.module_ct_cabinet_leads has this lead_source_pk', quote_literal(coalesce(p_lead_source_pk, 'NULL'))
      USING ERRCODE = 'P0002';
  END IF;
  v_rep := v_ids[1];
  PERFORM canon.refresh_lead_keys(v_ids);
  SELECT * INTO v_decision FROM canon.lead_decisions(ARRAY[v_rep]);

  SELECT jsonb_build_object(
    'lead_source_pk', p_lead_source_pk,
    'lead_rows', to_jsonb(v_ids),
    'driver_index_refreshed_at', (SELECT st.last_refresh_at FROM canon.driver_index_state st),
    'keys', (SELECT jsonb_build_object('lead_date', k.lead_date, 'lead_name', k.lead_name, 'phone_norm', k.phone_norm,
                                       'plate_norm', k.plate_norm, 'license_norm', k.license_norm, 'name_norm', k.name_norm)
             FROM canon.lead_keys k WHERE k.lead_id = v_rep),
    'link', (SELECT jsonb_build_object('person_key', k.person_key, 'match_rule', k.match_rule, 'match_score', k.match_score,
                                       'linked_at', k.linked_at, 'run_id', k.run_id,
                                       'driver_id', (SELECT pd.driver_id FROM canon.v_person_driver pd WHERE pd.person_key = k.person_key))
             FROM canon.identity_links k
             WHERE k.source_table = 'module_ct_cabinet_leads' AND k.source_pk = p_lead_source_pk),
    'unmatched', (SELECT jsonb_build_object('reason_code', u.reason_code, 'status', u.status, 'attempts', u.attempts,
                                            'first_attempt_at', u.first_attempt_at, 'last_attempt_at', u.last_attempt_at,
                                            'note', u.note)
                  FROM canon.identity_unmatched u
                  WHERE u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = p_lead_source_pk),
    'decision_now', jsonb_build_object('decision', v_decision.decision, 'driver_id', v_decision.driver_id,
                                       'match_rule', v_decision.match_rule, 'match_score', v_decision.match_score,
                                       'confidence_level', v_decision.confidence_level, 'evidence', v_decision.evidence),
    'candidates', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                      'driver_id', c.driver_id, 'park_id', c.park_id, 'in_target_park', c.in_target_park,
                      'rule', c.rule, 'score', c.score, 'name_similarity', c.name_similarity,
                      'hire_date', c.hire_date, 'hire_in_window', c.hire_in_window,
                      'kept', c.kept, 'reject_reason', c.reject_reason, 'name_veto', c.name_veto)
                    ORDER BY c.kept DESC, c.score DESC, c.name_similarity DESC, c.driver_id), '[]'::jsonb)
                   FROM canon.lead_candidates(ARRAY[v_rep]) c),
    'explanation', CASE v_decision.decision
      WHEN 'MATCH' THEN format('Matches driver %s by %s (score %s).', v_decision.driver_id, v_decision.match_rule, v_decision.match_score)
      WHEN 'MISSING_KEYS' THEN 'No usable phone, plate or licence: nothing to match on; fix the lead data or resolve it by hand (ops.resolve_lead).'
      WHEN 'SHARED_KEY' THEN 'Its only key is a phone shared by several people (an office phone): not evidence; needs a plate or a manual resolution.'
      WHEN 'WEAK_MATCH_ONLY' THEN 'Its plate is known but no driver of that plate has a similar name (>= 0.66), or the similar one differs by a given name or a surname (a relative: name_veto): check the candidates and resolve by hand if one is right.'
      WHEN 'AMBIGUOUS' THEN 'Several drivers fit equally well: never resolved automatically; pick one with ops.resolve_lead.'
      WHEN 'CONFLICT' THEN 'Different rules point to different drivers: check the candidates and resolve by hand.'
      ELSE 'No driver has its phone or plate yet: it is retried every run (new drivers arrive daily).'
    END)
  INTO v_result;
  RETURN v_result;
END
$$;
COMMENT ON FUNCTION ops.explain_lead(text) IS 'Why a lead is (not) matched: normalised keys, state, every candidate with rule, score, kept or reject reason, and the decision now.';

-- snapshot of sql/ops/ops.check_invariants.sql
-- ops.check_invariants: every invariant of the spec with its number of violations (0 =
-- holds) and up to 5 examples. Also `cabinet-leads doctor`, which exits 1 when any
-- invariant is violated, and the last statement of every reliability test. Read-only;
-- safe to run at any time, also while a run is in progress.
--   SELECT * FROM ops.check_invariants() WHERE violations > 0;
CREATE OR REPLACE FUNCTION ops.check_invariants()
RETURNS TABLE (invariant text, violations bigint, examples jsonb, description text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH orphan AS (
    SELECT p.person_key::text AS example
    FROM canon.identity_registry p
    WHERE NOT EXISTS (SELECT 1 FROM canon.identity_links l WHERE l.person_key = p.person_key)
  ),
  linked_open AS (
    SELECT l.source_pk AS example
    FROM canon.identity_links l
    JOIN canon.identity_unmatched u
      ON u.source_table = l.source_table AND u.source_pk = l.source_pk AND u.status = 'OPEN'
  ),
  driver_twice AS (
    SELECT format('%s (%s links)', l.source_pk, count(*)) AS example
    FROM canon.identity_links l
    WHERE l.source_table = 'drivers'
    GROUP BY l.source_pk
    HAVING count(*) > 1
  ),
  -- The same test as canon.mark_abandoned_runs (backend gone, or no longer in that run's
  -- CALL), plus runs RUNNING for over 2 hours.
  stuck AS (
    SELECT format('run %s (backend %s, started %s)', r.id, r.backend_pid, r.started_at) AS example
    FROM canon.ingestion_runs r
    WHERE r.status = 'RUNNING'
      AND (r.started_at < now() - interval '2 hours'
           OR NOT EXISTS (
             SELECT 1
             FROM pg_stat_activity a
             WHERE a.pid = r.backend_pid
               AND (r.backend_start IS NULL OR a.backend_start IS NULL OR a.backend_start = r.backend_start)
               AND (a.state IS NULL OR (a.state = 'active' AND a.query_start <= r.started_at))))
  ),
  limbo_mismatch AS (
    SELECT format('lead id %s: %s limbo rows%s', coalesce(l.id, v.lead_id), coalesce(v.n, 0),
                  CASE WHEN l.id IS NULL THEN ' (not a lead with lead_created_at)' ELSE '' END) AS example
    FROM (SELECT s.id FROM public.module_ct_cabinet_leads s WHERE s.lead_created_at IS NOT NULL) l
    FULL JOIN (SELECT lv.lead_id, count(*) AS n FROM ops.v_cabinet_leads_limbo lv GROUP BY lv.lead_id) v
      ON v.lead_id = l.id
    WHERE l.id IS NULL OR v.lead_id IS NULL OR v.n <> 1
  ),
  settled_guard AS (
    SELECT format('trigger %s %s', w.tgname, CASE WHEN t.tgname IS NULL THEN 'missing' ELSE 'disabled' END) AS example
    FROM (VALUES ('claims_protect_settled'), ('claims_record_settled_insert'), ('claims_record_settled_update'),
                 ('claims_record_settled_delete'), ('claims_record_settled_truncate')) w (tgname)
    LEFT JOIN pg_trigger t
      ON t.tgrelid = 'canon.claims_yango_cabinet_14d'::regclass AND t.tgname = w.tgname
    WHERE t.tgname IS NULL OR t.tgenabled NOT IN ('O', 'A')
  ),
  -- A settled claim that differs from its record, or is gone, or was settled unrecorded:
  -- it was changed while the guard was off (the guard and the record cannot be bypassed
  -- otherwise).
  settled_changed AS (
    SELECT format('%s M%s %s', coalesce(c.lead_source_pk, s.lead_source_pk), coalesce(c.milestone, s.milestone),
                  CASE WHEN c.lead_source_pk IS NULL THEN format('deleted (was %s)', s.status)
                       WHEN s.lead_source_pk IS NULL THEN format('%s but never recorded', c.status)
                       ELSE format('changed (recorded %s %s, now %s %s)', s.status, s.amount_expected, c.status, c.amount_expected)
                  END) AS example
    FROM (SELECT * FROM canon.claims_yango_cabinet_14d x WHERE x.status IN ('paid', 'rejected')) c
    FULL JOIN canon.claims_settled s
      ON s.lead_source_pk = c.lead_source_pk AND s.milestone = c.milestone
    WHERE c.lead_source_pk IS NULL
       OR s.lead_source_pk IS NULL
       OR (c.status, c.amount_expected, c.currency, c.person_key, c.driver_id, c.lead_date, c.generated_at, c.paid_at, c.run_id)
          IS DISTINCT FROM
          (s.status, s.amount_expected, s.currency, s.person_key, s.driver_id, s.lead_date, s.generated_at, s.paid_at, s.run_id)
  ),
  -- The counters of the stored lead state (kept by a trigger, read by the scope figures
  -- and the snapshots) against a count of the rows themselves.
  state_counts AS (
    SELECT format('%s %s identity=%s driver=%s trips=%s rule=%s: counted %s, stored %s',
                  lead_date, limbo_stage, with_identity::text, with_driver::text, with_trips::text, with_rule::text,
                  coalesce(c.leads, 0), coalesce(s.leads, 0)) AS example
    FROM canon.cabinet_lead_state_counts c
    FULL JOIN (SELECT x.lead_date, x.limbo_stage, x.person_key IS NOT NULL AS with_identity,
                      x.driver_id IS NOT NULL AS with_driver, x.trips_in_window > 0 AS with_trips,
                      x.window_days IS NOT NULL AS with_rule, count(*) AS leads
               FROM canon.cabinet_lead_state x
               GROUP BY 1, 2, 3, 4, 5, 6) s
      USING (lead_date, limbo_stage, with_identity, with_driver, with_trips, with_rule)
    WHERE coalesce(c.leads, 0) <> coalesce(s.leads, 0)
  ),
  -- The token counts the relatives veto reads (canon.name_token_usage) against their live
  -- definition: every token of the stored name roles counted again (a pass over the roles).
  name_token_stats_drift AS (
    SELECT format('%s: counted given %s surname %s, stored given %s surname %s', coalesce(v.token, c.token),
                  coalesce(v.as_given, 0), coalesce(v.as_surname, 0), coalesce(c.as_given, 0), coalesce(c.as_surname, 0)) AS example
    FROM canon.name_token_stats c
    FULL JOIN canon.v_name_token_stats v ON v.token = c.token
    WHERE (coalesce(c.as_given, 0), coalesce(c.as_surname, 0)) IS DISTINCT FROM (coalesce(v.as_given, 0), coalesce(v.as_surname, 0))
  ),
  -- The name roles: one row per index row, written with it (in full); their tokens against
  -- the source row the index holds for the 1,000 drivers indexed last and every 64th driver
  -- (bounded: splitting every driver's fields is ~10 s at 1M; docs/operations.md).
  driver_name_roles_drift AS (
    SELECT format('driver %s: %s', coalesce(i.driver_id, r.driver_id),
                  CASE WHEN r.driver_id IS NULL THEN 'indexed without name roles'
                       WHEN i.driver_id IS NULL THEN 'name roles of a driver not indexed'
                       ELSE 'name roles not written with its index row' END) AS example
    FROM canon.driver_index i
    FULL JOIN canon.driver_name_roles r ON r.driver_id = i.driver_id
    WHERE i.driver_id IS NULL OR r.driver_id IS NULL OR r.indexed_at <> i.indexed_at
    UNION ALL
    SELECT format('driver %s: name roles %s / %s, source %s / %s', r.driver_id,
                  coalesce(r.given_names::text, '-'), coalesce(r.surnames::text, '-'),
                  coalesce(v.given_names::text, '-'), coalesce(v.surnames::text, '-'))
    FROM canon.driver_name_roles_live(ARRAY(
           SELECT x.driver_id FROM canon.driver_index x WHERE abs(hashtext(x.driver_id)) % 64 = 0
           UNION
           (SELECT x.driver_id FROM canon.driver_index x ORDER BY x.indexed_at DESC LIMIT 1000))) v
    JOIN canon.driver_name_roles r ON r.driver_id = v.driver_id
    WHERE v.source_indexed
      AND (r.given_names, r.surnames) IS DISTINCT FROM (v.given_names, v.surnames)
  ),
  checks (ord, invariant, description, examples, n) AS (
    SELECT 1, 'ORPHAN_PERSON', 'persons in canon.identity_registry without any identity link',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM orphan ORDER BY example LIMIT 5) x), (SELECT count(*) FROM orphan)
    UNION ALL
    SELECT 2, 'LEAD_LINKED_AND_OPEN', 'leads both linked and OPEN in canon.identity_unmatched',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM linked_open ORDER BY example LIMIT 5) x), (SELECT count(*) FROM linked_open)
    UNION ALL
    SELECT 3, 'DRIVER_LINKED_TWICE', 'drivers with more than one identity link (a driver belongs to at most one person)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM driver_twice ORDER BY example LIMIT 5) x), (SELECT count(*) FROM driver_twice)
    UNION ALL
    SELECT 4, 'RUN_STUCK_RUNNING', 'runs RUNNING whose backend is gone, or for over 2 hours (the next run marks the former FAILED, abandoned)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM stuck ORDER BY example LIMIT 5) x), (SELECT count(*) FROM stuck)
    UNION ALL
    SELECT 5, 'LIMBO_ROW_COUNT', 'ops.v_cabinet_leads_limbo must have exactly one row per lead with lead_created_at',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM limbo_mismatch ORDER BY example LIMIT 5) x), (SELECT count(*) FROM limbo_mismatch)
    UNION ALL
    SELECT 6, 'SETTLED_CLAIM_UNGUARDED', 'the triggers that keep pipeline runs off paid and rejected claims, and record them, must exist and be enabled',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM settled_guard ORDER BY example LIMIT 5) x), (SELECT count(*) FROM settled_guard)
    UNION ALL
    SELECT 7, 'SETTLED_CLAIM_CHANGED', 'paid or rejected claims that differ from canon.claims_settled (changed, deleted or settled while the guard was off)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM settled_changed ORDER BY example LIMIT 5) x), (SELECT count(*) FROM settled_changed)
    UNION ALL
    SELECT 8, 'LEAD_STATE_COUNTS', 'canon.cabinet_lead_state_counts must count the stored lead state rows (by lead date, stage and flags)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM state_counts ORDER BY example LIMIT 5) x), (SELECT count(*) FROM state_counts)
    UNION ALL
    SELECT 50, 'NAME_TOKEN_STATS', 'canon.name_token_stats must count the stored name roles per token (canon.v_name_token_stats)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM name_token_stats_drift ORDER BY example LIMIT 5) x), (SELECT count(*) FROM name_token_stats_drift)
    UNION ALL
    SELECT 51, 'DRIVER_NAME_ROLES', 'canon.driver_name_roles must hold one row per driver index row, written with it, with the name fields of its source row (canon.v_driver_name_roles; content checked on the 1,000 drivers indexed last and every 64th)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM driver_name_roles_drift ORDER BY example LIMIT 5) x), (SELECT count(*) FROM driver_name_roles_drift)
  )
  SELECT c.invariant, c.n, coalesce(c.examples, '[]'::jsonb), c.description FROM checks c ORDER BY c.ord
$$;
COMMENT ON FUNCTION ops.check_invariants() IS
  'Every spec invariant with its violation count (0 = holds) and up to 5 examples: SELECT * FROM ops.check_invariants() WHERE violations > 0; cabinet-leads doctor exits 1 when any is violated.';

-- snapshot of sql/ops/ops.repair_name_roles.sql
-- ops.repair_name_roles: brings the relatives veto's caches back to their live
-- definitions after a NAME_TOKEN_STATS or DRIVER_NAME_ROLES violation of
-- ops.check_invariants (only writes that bypassed their triggers cause one:
-- session_replication_role = replica, a disabled trigger, a hand edit):
--   SELECT ops.repair_name_roles();
-- canon.driver_name_roles rows are compared with their live definition in full and
-- only the differing ones rewritten; canon.name_token_stats is then counted again from
-- them. Holds off index writes (a run waits) while it works: about 10 s at 1M drivers.
CREATE OR REPLACE FUNCTION ops.repair_name_roles()
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_removed bigint;
  v_rewritten bigint;
  v_tokens bigint;
BEGIN
  LOCK TABLE canon.driver_index IN SHARE ROW EXCLUSIVE MODE;
  LOCK TABLE canon.driver_name_roles IN SHARE ROW EXCLUSIVE MODE;
  DELETE FROM canon.driver_name_roles r
  WHERE NOT EXISTS (SELECT 1 FROM canon.driver_index i WHERE i.driver_id = r.driver_id);
  GET DIAGNOSTICS v_removed = ROW_COUNT;
  INSERT INTO canon.driver_name_roles AS r (driver_id, given_names, surnames, indexed_at)
  SELECT v.driver_id, v.given_names, v.surnames, v.indexed_at
  FROM canon.driver_name_roles_live(NULL) v
  LEFT JOIN canon.driver_name_roles o ON o.driver_id = v.driver_id
  WHERE o.driver_id IS NULL
     OR (o.given_names, o.surnames, o.indexed_at) IS DISTINCT FROM (v.given_names, v.surnames, v.indexed_at)
  ORDER BY v.driver_id
  ON CONFLICT (driver_id) DO UPDATE
    SET given_names = excluded.given_names, surnames = excluded.surnames, indexed_at = excluded.indexed_at;
  GET DIAGNOSTICS v_rewritten = ROW_COUNT;
  -- The counters from what is stored now (the triggers above kept them only as right as
  -- they were).
  DELETE FROM canon.name_token_stats;
  INSERT INTO canon.name_token_stats (token, as_given, as_surname)
  SELECT v.token, v.as_given, v.as_surname FROM canon.v_name_token_stats v;
  GET DIAGNOSTICS v_tokens = ROW_COUNT;
  RETURN jsonb_build_object('roles_removed', v_removed, 'roles_rewritten', v_rewritten, 'tokens_counted', v_tokens);
END
$$;
COMMENT ON FUNCTION ops.repair_name_roles() IS
  'Repair of NAME_TOKEN_STATS / DRIVER_NAME_ROLES violations: rewrites the canon.driver_name_roles rows that differ from canon.driver_name_roles_live (full comparison), removes those of drivers not indexed, and counts canon.name_token_stats again. Returns counts.';

-- snapshot of migrations/parts/0028_name_roles_triggers.sql
-- The triggers that keep the name role caches equal to their sources, and their first fill.

DROP TRIGGER IF EXISTS driver_index_name_roles_insert ON canon.driver_index;
CREATE TRIGGER driver_index_name_roles_insert
  AFTER INSERT ON canon.driver_index
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION canon.sync_driver_name_roles();
DROP TRIGGER IF EXISTS driver_index_name_roles_update ON canon.driver_index;
CREATE TRIGGER driver_index_name_roles_update
  AFTER UPDATE ON canon.driver_index
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION canon.sync_driver_name_roles();
DROP TRIGGER IF EXISTS driver_index_name_roles_delete ON canon.driver_index;
CREATE TRIGGER driver_index_name_roles_delete
  AFTER DELETE ON canon.driver_index
  REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION canon.sync_driver_name_roles();
DROP TRIGGER IF EXISTS driver_index_name_roles_truncate ON canon.driver_index;
CREATE TRIGGER driver_index_name_roles_truncate
  AFTER TRUNCATE ON canon.driver_index
  FOR EACH STATEMENT EXECUTE FUNCTION canon.sync_driver_name_roles();

DROP TRIGGER IF EXISTS driver_name_roles_count_insert ON canon.driver_name_roles;
CREATE TRIGGER driver_name_roles_count_insert
  AFTER INSERT ON canon.driver_name_roles
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION canon.count_name_token_changes();
DROP TRIGGER IF EXISTS driver_name_roles_count_update ON canon.driver_name_roles;
CREATE TRIGGER driver_name_roles_count_update
  AFTER UPDATE ON canon.driver_name_roles
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION canon.count_name_token_changes();
DROP TRIGGER IF EXISTS driver_name_roles_count_delete ON canon.driver_name_roles;
CREATE TRIGGER driver_name_roles_count_delete
  AFTER DELETE ON canon.driver_name_roles
  REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION canon.count_name_token_changes();
DROP TRIGGER IF EXISTS driver_name_roles_count_truncate ON canon.driver_name_roles;
CREATE TRIGGER driver_name_roles_count_truncate
  AFTER TRUNCATE ON canon.driver_name_roles
  FOR EACH STATEMENT EXECUTE FUNCTION canon.count_name_token_changes();

-- First fill from what is indexed (one pass over the index; the triggers count the stats).
INSERT INTO canon.driver_name_roles (driver_id, given_names, surnames, indexed_at)
SELECT v.driver_id, v.given_names, v.surnames, v.indexed_at
FROM canon.v_driver_name_roles v
ON CONFLICT (driver_id) DO NOTHING;
