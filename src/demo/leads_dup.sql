-- Demo generator, step "leads_dup": a HOSTILE_DUP_EXTERNAL_ID lead is the cabinet
-- exporting the previous lead again: same external_id and content, another id. Copying
-- after the insert keeps leads.sql a single pass over the plan.
UPDATE public.module_ct_cabinet_leads AS d
SET (external_id, activation_city, active_1, active_5, active_10, active_15, active_25, active_50, active_100,
     asset_color, asset_model, asset_plate_number, first_name, last_active_date, last_name, lead_created_at,
     middle_name, park_name, park_phone, status, tariff, target_city, created_at)
  = (s.external_id, s.activation_city, s.active_1, s.active_5, s.active_10, s.active_15, s.active_25, s.active_50, s.active_100,
     s.asset_color, s.asset_model, s.asset_plate_number, s.first_name, s.last_active_date, s.last_name, s.lead_created_at,
     s.middle_name, s.park_name, s.park_phone, s.status, s.tariff, s.target_city, s.created_at)
FROM demo_plan pl
JOIN public.module_ct_cabinet_leads s ON s.id = pl.lead_id - 1
WHERE pl.scenario = 'HOSTILE_DUP_EXTERNAL_ID'
  AND d.id = pl.lead_id;
