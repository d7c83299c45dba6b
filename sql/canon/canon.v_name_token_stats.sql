-- canon.v_name_token_stats: the live definition of canon_internal.name_token_stats: per name
-- token, how many indexed drivers typed it as a given name (first or middle name) and
-- how many as a surname (last name), counted from canon_internal.driver_name_roles. The table is
-- kept equal to it by a trigger (canon.count_name_token_changes); ops.check_invariants
-- compares the two (NAME_TOKEN_STATS). A full pass over the roles: for checks, not for
-- matching (canon.name_token_usage reads the table).
CREATE OR REPLACE VIEW canon.v_name_token_stats AS
SELECT x.token, sum(x.g)::bigint AS as_given, sum(x.s)::bigint AS as_surname
FROM (
  SELECT t.token, 1 AS g, 0 AS s FROM canon_internal.driver_name_roles r CROSS JOIN unnest(r.given_names) t (token)
  UNION ALL
  SELECT t.token, 0, 1 FROM canon_internal.driver_name_roles r CROSS JOIN unnest(r.surnames) t (token)
) x
GROUP BY x.token;
COMMENT ON VIEW canon.v_name_token_stats IS
  'Live definition of canon_internal.name_token_stats: indexed drivers typing each token as a given name (as_given) and as a surname (as_surname), from canon_internal.driver_name_roles. Full pass: for checks.';
