-- canon.business_today: "today" in the business time zone (setting business_timezone,
-- default America/Lima), never the server's. Every window, scope and alert uses it.
CREATE OR REPLACE FUNCTION canon.business_today()
RETURNS date
LANGUAGE sql
STABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT (now() AT TIME ZONE canon.setting('business_timezone'))::date
$$;
COMMENT ON FUNCTION canon.business_today() IS 'Current date in the business time zone (canon.settings.business_timezone).';
