-- Upstream source table (SPEC 3): the cabinet leads. Owned upstream: created here only when
-- absent (demo and test databases), never altered; canon.check_source_contract verifies the
-- columns the product reads at the start of every run. Read by canon.key_changed_leads by
-- commit order (docs/change-detection.md); written by import-leads.
DO $$
BEGIN
  IF to_regclass('public.module_ct_cabinet_leads') IS NULL THEN
    CREATE TABLE public.module_ct_cabinet_leads (
      id                 serial PRIMARY KEY,
      external_id        varchar,
      activation_city    varchar,
      active_1           boolean,
      active_5           boolean,
      active_10          boolean,
      active_15          boolean,
      active_25          boolean,
      active_50          boolean,
      active_100         boolean,
      asset_color        varchar,
      asset_model        varchar,
      asset_plate_number varchar,
      first_name         varchar,
      last_active_date   date,
      last_name          varchar,
      lead_created_at    timestamp without time zone,
      middle_name        varchar,
      park_name          varchar,
      park_phone         varchar,
      status             varchar,
      tariff             varchar,
      target_city        varchar,
      created_at         timestamp without time zone DEFAULT now()
    );
    CREATE INDEX module_ct_cabinet_leads_lead_created_at_idx ON public.module_ct_cabinet_leads (lead_created_at);
    CREATE INDEX module_ct_cabinet_leads_external_id_idx ON public.module_ct_cabinet_leads (external_id);
  END IF;
END
$$;
