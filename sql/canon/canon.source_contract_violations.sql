-- canon.source_contract_violations: every missing table, missing column or column of
-- an incompatible type among the upstream columns listed in canon.source_contract.
CREATE OR REPLACE FUNCTION canon.source_contract_violations()
RETURNS TABLE (table_name text, column_name text, problem text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH expected AS (
    SELECT c.table_name, c.column_name, c.type_family
    FROM canon.source_contract c
  ),
  actual AS (
    SELECT col.table_name::text AS table_name,
           col.column_name::text AS column_name,
           col.data_type::text AS data_type
    FROM information_schema.columns col
    WHERE col.table_schema = 'public'
      AND col.table_name IN (SELECT e.table_name FROM expected e)
  ),
  present_tables AS (
    SELECT DISTINCT e.table_name
    FROM expected e
    WHERE to_regclass(format('public.%I', e.table_name)) IS NOT NULL
  )
  SELECT t.table_name, NULL::text, 'table public.' || t.table_name || ' is missing'
  FROM (SELECT DISTINCT e.table_name FROM expected e) t
  WHERE t.table_name NOT IN (SELECT p.table_name FROM present_tables p)
  UNION ALL
  SELECT e.table_name, e.column_name,
         CASE
           WHEN a.column_name IS NULL THEN
             format('column public.%s.%s is missing', e.table_name, e.column_name)
           ELSE
             format('column public.%s.%s has type %s, expected %s', e.table_name, e.column_name, a.data_type, e.type_family)
         END
  FROM expected e
  JOIN present_tables p ON p.table_name = e.table_name
  LEFT JOIN actual a ON a.table_name = e.table_name AND a.column_name = e.column_name
  WHERE a.column_name IS NULL
     OR NOT (
       (e.type_family = 'text' AND a.data_type IN ('character varying', 'text', 'character'))
       OR (e.type_family = 'integer' AND a.data_type IN ('smallint', 'integer', 'bigint'))
       OR (e.type_family = 'timestamp' AND a.data_type IN ('timestamp without time zone'))
       OR (e.type_family = 'date' AND a.data_type IN ('date'))
       OR (e.type_family = 'boolean' AND a.data_type IN ('boolean'))
       OR (e.type_family = 'numeric' AND a.data_type IN ('smallint', 'integer', 'bigint', 'numeric', 'real', 'double precision'))
     )
  ORDER BY 1, 2
$$;
COMMENT ON FUNCTION canon.source_contract_violations() IS 'Rows describing every violation of the upstream source contract; empty when the contract holds.';
