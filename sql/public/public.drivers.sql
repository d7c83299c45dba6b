-- Upstream source table (SPEC 3): the park's drivers. Owned upstream: created here only when
-- absent (demo and test databases), never altered; canon.check_source_contract verifies the
-- columns the product reads. Read by canon.refresh_driver_index by commit order.
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
