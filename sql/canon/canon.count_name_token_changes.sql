-- canon.count_name_token_changes: statement-level trigger function on
-- canon_internal.driver_name_roles (INSERT, UPDATE, DELETE with transition tables new_rows /
-- old_rows; TRUNCATE). Keeps canon_internal.name_token_stats equal to the roles counted per token
-- (canon.v_name_token_stats): each statement adds its new rows' tokens and subtracts its
-- old rows' tokens, grouped per token, so a run pays for the drivers it re-indexed, never
-- for a pass over every driver. Counters in token order (bytewise, COLLATE "C": the
-- cheapest sort, the same for every writer): two writers never deadlock.
CREATE OR REPLACE FUNCTION canon.count_name_token_changes()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- a full index build sorts 3 to 4 tokens a driver: in memory, not on disk (4 MB default)
SET work_mem = '64MB'
AS $$
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    DELETE FROM canon_internal.name_token_stats;
    RETURN NULL;
  END IF;
  -- One branch per operation: a transition table the operation has not cannot be named.
  IF TG_OP = 'INSERT' THEN
    INSERT INTO canon_internal.name_token_stats AS c (token, as_given, as_surname)
    SELECT x.token, sum(x.g), sum(x.s)
    FROM (SELECT t.token COLLATE "C" AS token, 1 AS g, 0 AS s FROM new_rows n CROSS JOIN unnest(n.given_names) t (token)
          UNION ALL
          SELECT t.token, 0, 1 FROM new_rows n CROSS JOIN unnest(n.surnames) t (token)) x
    GROUP BY x.token
    ORDER BY x.token
    ON CONFLICT (token) DO UPDATE
      SET as_given = c.as_given + excluded.as_given, as_surname = c.as_surname + excluded.as_surname;
  ELSIF TG_OP = 'UPDATE' THEN
    INSERT INTO canon_internal.name_token_stats AS c (token, as_given, as_surname)
    SELECT x.token, sum(x.g), sum(x.s)
    FROM (SELECT t.token COLLATE "C" AS token, 1 AS g, 0 AS s FROM new_rows n CROSS JOIN unnest(n.given_names) t (token)
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
    DELETE FROM canon_internal.name_token_stats c WHERE c.as_given = 0 AND c.as_surname = 0;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO canon_internal.name_token_stats AS c (token, as_given, as_surname)
    SELECT x.token, -sum(x.g), -sum(x.s)
    FROM (SELECT t.token COLLATE "C" AS token, 1 AS g, 0 AS s FROM old_rows o CROSS JOIN unnest(o.given_names) t (token)
          UNION ALL
          SELECT t.token, 0, 1 FROM old_rows o CROSS JOIN unnest(o.surnames) t (token)) x
    GROUP BY x.token
    ORDER BY x.token
    ON CONFLICT (token) DO UPDATE
      SET as_given = c.as_given + excluded.as_given, as_surname = c.as_surname + excluded.as_surname;
    DELETE FROM canon_internal.name_token_stats c WHERE c.as_given = 0 AND c.as_surname = 0;
  END IF;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION canon.count_name_token_changes() IS
  'Statement trigger on canon_internal.driver_name_roles: adds and subtracts the changed rows'' tokens in canon_internal.name_token_stats (drivers typing each token as a given name / as a surname); a token no driver uses any more is removed.';
