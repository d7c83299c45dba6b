-- The retry step (canon.mark_retries_due, step 4b) in a steady-run situation: the drivers
-- of public.drivers not indexed yet (a run's new drivers) are indexed and checked against
-- the OPEN unmatched leads, in a transaction rolled back, 5 rounds; prints each round's
-- step time and what it marked, then the plans of the last round's statements over 3 ms
-- (auto_explain, ANALYZE and BUFFERS). Needs a database after a backfill with new drivers
-- waiting, e.g. the 200k leads / 1M drivers of
--   KEEP_BENCH_DB=1 npm run bench -- --leads 200000 --drivers 1000000 --trip-days 14 --scenario steady
--   DATABASE_URL=<the kept database> npx tsx src/cli/main.ts demo --seed 44 --leads 2000 --drivers 2000 --trip-days 14
--   psql <the kept database> -f bench/sql/mark-retries-due.sql
-- (the rounds roll back: each starts from the same drivers; the GIN pending lists merged by
-- a round stay merged, so the first round is the one a run pays). docs/performance.md has the figures.
\set QUIET on
\pset footer off
CREATE TEMP TABLE round_times (round integer, ms numeric, marked jsonb);
CREATE FUNCTION pg_temp.round(p_round integer) RETURNS void LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz; v_ms numeric; v_marked jsonb;
BEGIN
  BEGIN
    PERFORM canon.refresh_driver_index(NULL);
    t0 := clock_timestamp();
    v_marked := canon.mark_retries_due(NULL);
    v_ms := round((extract(epoch FROM clock_timestamp() - t0) * 1000)::numeric, 1);
    RAISE EXCEPTION 'roll back' USING ERRCODE = 'P0001';
  EXCEPTION WHEN SQLSTATE 'P0001' THEN
    NULL; -- the round's writes are undone; its time and counts are kept in the variables
  END;
  INSERT INTO pg_temp.round_times VALUES (p_round, v_ms, v_marked - 'driver_index_changed_at');
END
$$;
SELECT pg_temp.round(r) FROM generate_series(1, 4) r;
LOAD 'auto_explain';
SET auto_explain.log_min_duration = '3ms';
SET auto_explain.log_analyze = on;
SET auto_explain.log_buffers = on;
SET auto_explain.log_nested_statements = on;
SET auto_explain.log_level = 'warning';
SELECT pg_temp.round(5);
RESET auto_explain.log_min_duration;
SELECT round, ms, marked FROM pg_temp.round_times ORDER BY round;
