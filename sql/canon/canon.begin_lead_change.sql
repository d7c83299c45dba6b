-- canon.begin_lead_change: the end of the operator tools' prologue (ops.unlink_lead,
-- ops.resolve_lead, ops.ignore_lead), once their arguments are checked: takes the job lock
-- (canon.take_job_lock: one identity change at a time, never inside a pipeline run), then
-- reads the lead's rows as committed after it: how many rows have the key, and the first
-- one's (lowest id) values. An unknown lead (no row) is refused with P0002 unless
-- p_allow_unknown (a link is removable after its lead row disappeared upstream): then
-- lead_rows is 0 and the rest NULL.
CREATE OR REPLACE FUNCTION canon.begin_lead_change(
  p_lead_source_pk text,
  p_allow_unknown boolean DEFAULT false,
  OUT lead_rows integer,
  OUT lead_id integer,
  OUT lead_created_at timestamp,
  OUT lead_name text,
  OUT park_phone text,
  OUT plate text)
RETURNS record
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM canon.take_job_lock();

  SELECT count(*), min(l.id),
         (array_agg(l.lead_created_at ORDER BY l.id))[1],
         (array_agg(concat_ws(' ', l.first_name, l.middle_name, l.last_name) ORDER BY l.id))[1],
         (array_agg(l.park_phone ORDER BY l.id))[1],
         (array_agg(l.asset_plate_number ORDER BY l.id))[1]
  INTO lead_rows, lead_id, lead_created_at, lead_name, park_phone, plate
  FROM public.module_ct_cabinet_leads l
  WHERE canon.lead_source_pk(l.external_id, l.id) = p_lead_source_pk;
  IF lead_rows = 0 AND p_allow_unknown IS NOT TRUE THEN
    RAISE EXCEPTION 'unknown lead %: no row of public.module_ct_cabinet_leads has this lead_source_pk', quote_literal(p_lead_source_pk)
      USING ERRCODE = 'P0002';
  END IF;
END
$$;
COMMENT ON FUNCTION canon.begin_lead_change(text, boolean) IS
  'Operator tools'' prologue after the argument checks: takes the job lock, then counts the lead''s rows and returns the first one''s values; refuses an unknown lead (P0002) unless p_allow_unknown.';
