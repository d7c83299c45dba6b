-- canon.lead_state_watermark: every lead row with id <= this has been evaluated into
-- canon.cabinet_lead_state; newer rows are shown live by canon.v_cabinet_lead_status_current.
-- STABLE so that the planner can use it as an index bound on the leads' primary key.
CREATE OR REPLACE FUNCTION canon.lead_state_watermark()
RETURNS integer
LANGUAGE sql
STABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT coalesce((SELECT m.lead_id_watermark FROM canon.cabinet_lead_state_meta m), 0)
$$;
COMMENT ON FUNCTION canon.lead_state_watermark() IS
  'Highest lead id covered by canon.cabinet_lead_state (rows above it are evaluated live by the views).';
