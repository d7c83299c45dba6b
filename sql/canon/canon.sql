-- The schema canon (SPEC 4): canonical identities and their links, the runs, the claims,
-- the settings and rules people edit, and the functions of the pipeline. Its tables are the
-- product's contract; the caches and bookkeeping behind them are in canon_internal. The
-- extensions the matcher uses are installed with it (in the database's default schema).
CREATE SCHEMA canon;
COMMENT ON SCHEMA canon IS 'Cabinet leads reconciliation: canonical identities, links, runs and claims.';

CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS fuzzystrmatch;
CREATE EXTENSION IF NOT EXISTS unaccent;
