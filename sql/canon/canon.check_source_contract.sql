-- canon.check_source_contract: raises one error naming every contract violation
-- (SQLSTATE CL002), or returns the number of checked columns. Step 3 of every run.
CREATE OR REPLACE FUNCTION canon.check_source_contract()
RETURNS integer
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_problems text;
BEGIN
  SELECT string_agg(v.problem, '; ' ORDER BY v.table_name, v.column_name NULLS FIRST)
  INTO v_problems
  FROM canon.source_contract_violations() v;
  IF v_problems IS NOT NULL THEN
    RAISE EXCEPTION 'source contract violated: %', v_problems
      USING ERRCODE = 'CL002',
            HINT = 'The upstream tables must have the columns listed in canon.source_contract.';
  END IF;
  RETURN (SELECT count(*)::integer FROM canon.source_contract);
END
$$;
COMMENT ON FUNCTION canon.check_source_contract() IS 'Raises one error (SQLSTATE CL002) naming every missing table or column or incompatible type.';
