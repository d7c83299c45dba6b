-- Up Migration
-- Source tables of the data contract (SPEC 3). They are owned upstream: this
-- migration only creates them when absent (demo and test databases) and never
-- alters an existing one. canon.check_source_contract() verifies them at runtime.

-- Indexes are created with the table, never added to an existing upstream table.

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

DO $$
BEGIN
  IF to_regclass('public.drivers') IS NULL THEN
    CREATE TABLE public.drivers (
      id                        bigserial,
      driver_id                 varchar NOT NULL,
      park_id                   varchar,
      first_name                varchar,
      middle_name               varchar,
      last_name                 varchar,
      full_name                 varchar,
      phone                     varchar,
      license_number            varchar,
      license_normalized_number varchar,
      car_number                varchar,
      car_normalized_number     varchar,
      car_brand                 varchar,
      car_model                 varchar,
      hire_date                 date,
      fire_date                 date,
      work_status               varchar,
      created_at                timestamp without time zone DEFAULT now(),
      updated_at                timestamp without time zone DEFAULT now()
    );
    CREATE INDEX drivers_driver_id_idx ON public.drivers (driver_id);
    CREATE INDEX drivers_updated_at_idx ON public.drivers (updated_at);
  END IF;
END
$$;

DO $$
BEGIN
  IF to_regclass('public.summary_daily') IS NULL THEN
    CREATE TABLE public.summary_daily (
      driver_id              varchar,
      date_file              varchar,
      count_orders_completed integer,
      sum_work_time_seconds  numeric,
      created_at             timestamp without time zone DEFAULT now()
    );
    CREATE INDEX summary_daily_driver_id_idx ON public.summary_daily (driver_id);
  END IF;
END
$$;

-- Down Migration
-- Source tables belong upstream: rolling back never drops them.
SELECT 1;
