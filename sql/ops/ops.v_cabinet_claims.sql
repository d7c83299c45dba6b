-- ops.v_cabinet_claims: every claim of canon.claims_yango_cabinet_14d (any status), one
-- row per (lead_source_pk, milestone), with the lead it pays for, as finance reads it
-- (cabinet-leads export claims writes it to CSV or xlsx). The lead columns come from the
-- earliest lead row keyed with the claim's key (canon_internal.lead_keys, kept by every run) that
-- still carries it (canon.lead_source_pk of the row as it is now): a row re-keyed upstream
-- since is never shown for the claim; a key no row carries any more shows no lead columns.
-- lead_name is built as in ops.v_cabinet_leads_limbo (trimmed, single spaces).
--   SELECT status, count(*), sum(amount_expected) FROM ops.v_cabinet_claims
--   WHERE lead_date >= DATE '2026-11-01' GROUP BY status;
CREATE OR REPLACE VIEW ops.v_cabinet_claims AS
SELECT c.lead_source_pk,
       c.lead_date,
       date_trunc('week', c.lead_date::timestamp)::date AS week_start,
       c.milestone,
       c.amount_expected,
       c.currency,
       c.status,
       c.person_key,
       c.driver_id,
       l.lead_id,
       l.lead_name,
       l.park_phone,
       l.asset_plate_number,
       c.generated_at,
       c.paid_at,
       c.run_id
FROM canon.claims_yango_cabinet_14d c
LEFT JOIN LATERAL (
  SELECT r.id AS lead_id,
         nullif(btrim(regexp_replace(concat_ws(' ', r.first_name, r.middle_name, r.last_name), '\s+', ' ', 'g')), '') AS lead_name,
         r.park_phone::text AS park_phone,
         r.asset_plate_number::text AS asset_plate_number
  FROM canon_internal.lead_keys k
  JOIN public.module_ct_cabinet_leads r ON r.id = k.lead_id
  WHERE k.lead_source_pk = c.lead_source_pk
    AND canon.lead_source_pk(r.external_id, r.id) = c.lead_source_pk
  ORDER BY k.lead_id
  LIMIT 1
) l ON true;
COMMENT ON VIEW ops.v_cabinet_claims IS
  'Every claim (lead key x milestone, any status) with amount, currency, status, person, driver, and the lead row it pays for (name, phone, plate; the earliest row that carries the key). What cabinet-leads export claims writes.';
