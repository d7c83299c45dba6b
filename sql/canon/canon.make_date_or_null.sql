-- canon.make_date_or_null: the date of year/month/day, or NULL when that day does not
-- exist (month 13, 31 April, 29 February of a common year, year 0). Never raises.
-- Called by canon.parse_date_file, so it is inlined into the summary_daily index.
CREATE OR REPLACE FUNCTION canon.make_date_or_null(p_year integer, p_month integer, p_day integer)
RETURNS date
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
  SELECT CASE
    WHEN p_year < 1 OR p_month < 1 OR p_month > 12 OR p_day < 1 THEN NULL
    WHEN p_day <= 28 THEN make_date(p_year, p_month, p_day)
    WHEN p_day <= CASE
                    WHEN p_month IN (4, 6, 9, 11) THEN 30
                    WHEN p_month <> 2 THEN 31
                    WHEN p_year % 4 = 0 AND (p_year % 100 <> 0 OR p_year % 400 = 0) THEN 29
                    ELSE 28
                  END
      THEN make_date(p_year, p_month, p_day)
  END
$$;
COMMENT ON FUNCTION canon.make_date_or_null(integer, integer, integer) IS
  'make_date(y, m, d), or NULL when that calendar day does not exist. Never raises.';
