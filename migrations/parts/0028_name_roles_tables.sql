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
