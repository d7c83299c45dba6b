-- Internal counter: per name token, the indexed drivers using it as a given name and as a surname,
-- kept by the trigger canon.count_name_token_changes on canon_internal.driver_name_roles; read by
-- canon.name_token_usage. Checked by ops.check_invariants.
CREATE TABLE canon_internal.name_token_stats (
  token      text PRIMARY KEY,
  as_given   bigint NOT NULL,
  as_surname bigint NOT NULL
);

CREATE INDEX name_token_stats_unused_idx ON canon_internal.name_token_stats (token)
  WHERE (as_given = 0) AND (as_surname = 0);

COMMENT ON TABLE canon_internal.name_token_stats IS
  'Cache: per name token, indexed drivers typing it as a given name (as_given) and as a surname (as_surname); kept equal to canon.v_name_token_stats by the trigger canon.count_name_token_changes on canon_internal.driver_name_roles. Read by canon.name_token_usage.';
