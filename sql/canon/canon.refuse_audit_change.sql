-- canon.refuse_audit_change: trigger function that keeps canon.identity_audit
-- append-only. Fired before any UPDATE, DELETE or TRUNCATE of the audit table.
CREATE OR REPLACE FUNCTION canon.refuse_audit_change()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  RAISE EXCEPTION 'canon.identity_audit is append-only: % refused', TG_OP
    USING ERRCODE = 'CL020',
          HINT = 'Audit rows are never changed or removed; record a correction as a new operation (ops.resolve_lead, ops.unlink_lead, ops.ignore_lead).';
END
$$;
COMMENT ON FUNCTION canon.refuse_audit_change() IS 'Trigger: canon.identity_audit is append-only; UPDATE, DELETE and TRUNCATE raise CL020.';
