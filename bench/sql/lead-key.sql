-- The lead key's cost per row: canon.lead_source_pk (blanks of canon.blank_characters()
-- at the ends) against the older definition (btrim of spaces), over 1M
-- generated ids, 7 times each, interleaved; and the bare read as the floor. On a migrated
-- database (writes nothing: temporary table and function):
--   psql "$DATABASE_URL" -f bench/sql/lead-key.sql | grep Execution   # floor, old, new; 7 rounds
-- docs/performance.md#the-lead-key has the figures.
\set QUIET on
-- 95 % md5 hex ids, 1 % NULL, 1 % '', 1 % space-padded, 1 % TAB at the end, 1 % NBSP in front
CREATE TEMP TABLE ids AS
SELECT i AS id,
       CASE i % 100 WHEN 0 THEN NULL WHEN 1 THEN '' WHEN 2 THEN '  ' || md5(i::text) || ' '
                    WHEN 3 THEN md5(i::text) || E'\t' WHEN 4 THEN E'\u00a0' || md5(i::text)
                    ELSE md5(i::text) END AS external_id
FROM generate_series(1, 1000000) i;
VACUUM ANALYZE pg_temp.ids;
CREATE FUNCTION pg_temp.lead_source_pk_before_0029(p_external_id text, p_id integer)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT COALESCE(NULLIF(btrim(p_external_id), ''), p_id::text) $$;
SET max_parallel_workers_per_gather = 0;
SET jit = off;
\set QUIET off
EXPLAIN (ANALYZE, TIMING OFF) SELECT sum(length(external_id)) FROM pg_temp.ids;
EXPLAIN (ANALYZE, TIMING OFF) SELECT sum(length(pg_temp.lead_source_pk_before_0029(external_id, id))) FROM pg_temp.ids;
EXPLAIN (ANALYZE, TIMING OFF) SELECT sum(length(canon.lead_source_pk(external_id, id))) FROM pg_temp.ids;
EXPLAIN (ANALYZE, TIMING OFF) SELECT sum(length(external_id)) FROM pg_temp.ids;
EXPLAIN (ANALYZE, TIMING OFF) SELECT sum(length(pg_temp.lead_source_pk_before_0029(external_id, id))) FROM pg_temp.ids;
EXPLAIN (ANALYZE, TIMING OFF) SELECT sum(length(canon.lead_source_pk(external_id, id))) FROM pg_temp.ids;
EXPLAIN (ANALYZE, TIMING OFF) SELECT sum(length(external_id)) FROM pg_temp.ids;
EXPLAIN (ANALYZE, TIMING OFF) SELECT sum(length(pg_temp.lead_source_pk_before_0029(external_id, id))) FROM pg_temp.ids;
EXPLAIN (ANALYZE, TIMING OFF) SELECT sum(length(canon.lead_source_pk(external_id, id))) FROM pg_temp.ids;
EXPLAIN (ANALYZE, TIMING OFF) SELECT sum(length(external_id)) FROM pg_temp.ids;
EXPLAIN (ANALYZE, TIMING OFF) SELECT sum(length(pg_temp.lead_source_pk_before_0029(external_id, id))) FROM pg_temp.ids;
EXPLAIN (ANALYZE, TIMING OFF) SELECT sum(length(canon.lead_source_pk(external_id, id))) FROM pg_temp.ids;
EXPLAIN (ANALYZE, TIMING OFF) SELECT sum(length(external_id)) FROM pg_temp.ids;
EXPLAIN (ANALYZE, TIMING OFF) SELECT sum(length(pg_temp.lead_source_pk_before_0029(external_id, id))) FROM pg_temp.ids;
EXPLAIN (ANALYZE, TIMING OFF) SELECT sum(length(canon.lead_source_pk(external_id, id))) FROM pg_temp.ids;
EXPLAIN (ANALYZE, TIMING OFF) SELECT sum(length(external_id)) FROM pg_temp.ids;
EXPLAIN (ANALYZE, TIMING OFF) SELECT sum(length(pg_temp.lead_source_pk_before_0029(external_id, id))) FROM pg_temp.ids;
EXPLAIN (ANALYZE, TIMING OFF) SELECT sum(length(canon.lead_source_pk(external_id, id))) FROM pg_temp.ids;
EXPLAIN (ANALYZE, TIMING OFF) SELECT sum(length(external_id)) FROM pg_temp.ids;
EXPLAIN (ANALYZE, TIMING OFF) SELECT sum(length(pg_temp.lead_source_pk_before_0029(external_id, id))) FROM pg_temp.ids;
EXPLAIN (ANALYZE, TIMING OFF) SELECT sum(length(canon.lead_source_pk(external_id, id))) FROM pg_temp.ids;
