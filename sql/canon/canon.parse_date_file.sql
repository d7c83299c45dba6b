-- canon.parse_date_file: the day of a public.summary_daily row. date_file holds
-- DD-MM-YYYY or YYYY-MM-DD (both occur upstream); anything else, including days that do
-- not exist (31-02-2026, 2026-13-01), gives NULL and is listed in ops.v_trip_rows_unparseable.
-- IMMUTABLE and inlinable plain SQL (no plpgsql, no exception block): it backs the index
-- public.summary_daily_driver_trip_date_idx. Changing its body requires a REINDEX of it.
CREATE OR REPLACE FUNCTION canon.parse_date_file(p_date_file text)
RETURNS date
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
  SELECT CASE
    WHEN btrim(p_date_file, E' \t\r\n') ~ '^[0-9]{2}-[0-9]{2}-[0-9]{4}$'
      THEN canon.make_date_or_null(substr(btrim(p_date_file, E' \t\r\n'), 7, 4)::integer,
                                   substr(btrim(p_date_file, E' \t\r\n'), 4, 2)::integer,
                                   substr(btrim(p_date_file, E' \t\r\n'), 1, 2)::integer)
    WHEN btrim(p_date_file, E' \t\r\n') ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$'
      THEN canon.make_date_or_null(substr(btrim(p_date_file, E' \t\r\n'), 1, 4)::integer,
                                   substr(btrim(p_date_file, E' \t\r\n'), 6, 2)::integer,
                                   substr(btrim(p_date_file, E' \t\r\n'), 9, 2)::integer)
  END
$$;
COMMENT ON FUNCTION canon.parse_date_file(text) IS
  'Day of a summary_daily.date_file in DD-MM-YYYY or YYYY-MM-DD (blanks, tabs and line breaks trimmed); NULL for anything else, including impossible days. Never raises. Backs summary_daily_driver_trip_date_idx: REINDEX it after any change.';
