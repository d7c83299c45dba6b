-- Demo generator, step "params": one row with everything the set-based steps share
-- (options, id offsets, today, target park, hash constants, scenario bounds), so each
-- statement reads it with a cross join instead of taking a dozen bind parameters.
-- Kept narrow on purpose: wide rows get compressed and every per-row read would pay
-- for decompressing them (name lists are constant functions in schema.sql instead).
-- $1 seed, $2 batch, $3 leads, $4 drivers, $5 trip days.
CREATE TEMP TABLE demo_params ON COMMIT DROP AS
WITH bounds AS (
  -- Lower bound of each scenario's slice of [0, 1), for width_bucket().
  SELECT ord, scenario, (sum(share) OVER (ORDER BY ord) - share)::float8 AS lo
  FROM demo.scenario
  WHERE share > 0
), scen AS (
  SELECT array_agg(scenario ORDER BY ord) AS names, array_agg(lo ORDER BY ord) AS lows FROM bounds
)
SELECT
  $1::integer AS seed,
  $2::integer AS batch,
  -- Prefix of every hash input: a second call (batch 2) never repeats batch 1's values.
  $1::integer || ':' || $2::integer AS pfx,
  -- Seed of the 64-bit hashes of trip cells, also distinct per (seed, batch).
  ($1::integer::bigint << 20) + $2::integer AS hash_seed,
  $3::integer AS n_leads,
  $4::integer AS n_drivers,
  $5::integer AS trip_days,
  (SELECT coalesce(max(id), 0) FROM public.module_ct_cabinet_leads)::integer AS lead_base,
  (SELECT coalesce(max(id), 0) FROM public.drivers)::bigint AS driver_base,
  -- Filled once the plan is known (demo.ts): drivers of lead persons, and the share of
  -- background drivers in the target park that brings the whole table to ~60%.
  0::integer AS lead_drivers,
  0::float8 AS bg_target_share,
  canon.business_today() AS today,
  -- Business-local time of this call: rows appended to a non-empty driver table are
  -- stamped with it (see drivers.sql).
  date_trunc('second', now() AT TIME ZONE canon.setting('business_timezone')) AS now_local,
  canon.setting('target_park_id') AS target_park,
  -- Four other parks that share the driver master (fixed ids: not part of the seed).
  ARRAY(SELECT md5('demo-park:' || n) FROM generate_series(1, 4) n) AS other_parks,
  -- Multipliers coprime with 10^8 and with 26^3*1000, near golden-ratio fractions of the
  -- modulus so consecutive ids land far apart; the seed picks one and the offset.
  (ARRAY[61803399, 38196601, 72360679, 55278641])[1 + $1::integer % 4]::bigint AS phone_mult,
  ($1::integer::bigint * 7777 + 12345) % 100000000 AS phone_shift,
  (ARRAY[10862567, 6713437, 12718113, 9715773])[1 + $1::integer % 4]::bigint AS plate_mult,
  ($1::integer::bigint * 3571 + 777) % 17576000 AS plate_shift,
  (ARRAY[38196601, 72360679, 55278641, 61803399])[1 + $1::integer % 4]::bigint AS license_mult,
  ($1::integer::bigint * 9973 + 4242) % 100000000 AS license_shift,
  s.names AS scen_names,
  s.lows AS scen_lows
FROM scen s;
