-- canon.lead_date_of: the lead date of a lead_created_at (SPEC 3: lead_created_at::date),
-- NULL when there is none: NULL, or 'infinity' / '-infinity', which no 14-day window can
-- start from (such rows are undated: in no limbo row, counted and listed in
-- ops.v_lead_rows_bad). The one definition used by the lead keys, the chain and the views.
CREATE OR REPLACE FUNCTION canon.lead_date_of(p_lead_created_at timestamp without time zone)
RETURNS date
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
  SELECT CASE WHEN isfinite(p_lead_created_at) THEN p_lead_created_at::date END
$$;
COMMENT ON FUNCTION canon.lead_date_of(timestamp without time zone) IS
  'lead_created_at::date, or NULL when lead_created_at is NULL or infinite (an undated lead row).';
