// Generated people whose true driver is known, for the estimates of the probabilistic tier's
// parameters (canon.estimate_fs_m, ops.estimate_fs_version). Person i is driver `T<i>` and
// lead `EMP<i>` (lead_source_pk). Half have a surname nobody else has (a rare name block);
// the lead leaves out a middle name or the second surname, mistypes the second surname
// (two letters swapped) or spells it by ear (Z/S, V/B, QU/K), and types the plate right,
// with a confusion (0/O, 1/I, 5/S, 8/B), one digit off, or another car's. Decoys, the
// non-matches: for 60 % of the rare-surname people a namesake `D<i>` registered with only
// the given name and that surname, on another car, hired any time in three years, in
// another park 40 % of the time (blocked by the rare name, not vetoed: his tokens are a
// subset of the lead's). Background: drivers with common names and plates no lead uses; with
// 4,000 drivers or more in all, a surname two drivers type (the person and the decoy) is still
// rare (rare_token_max_share 0.0005), with fewer the decoys are not blocked. md5-driven: the
// same rows every time.
import type pg from 'pg';
import type { TestDb } from './db.js';

const GIVEN = ['Juan', 'José', 'Luis', 'Carlos', 'Rosa', 'María', 'Jorge', 'Pedro', 'Miguel', 'César', 'Víctor', 'Raúl',
  'Óscar', 'Julio', 'Manuel', 'Ana', 'Lucía', 'Carmen', 'Elena', 'Julia'];
const SURNAMES = ['Quispe', 'Mamani', 'Flores', 'Huamán', 'Rojas', 'García', 'Ramos', 'Torres', 'Díaz', 'López',
  'Mendoza', 'Castillo', 'Espinoza', 'Gutiérrez', 'Pérez', 'Cruz', 'Gonzales', 'Romero', 'Salazar', 'Peña',
  'Vargas', 'Medina', 'Silva', 'Herrera', 'Aguilar', 'Paredes', 'Tapia', 'Soto', 'Campos', 'Reyes'];
const SYLLABLES = ['hua', 'cca', 'chu', 'tin', 'yu', 'cho', 'sul', 'pa', 'que', 'tai', 'ma', 'coa', 'llu', 'tu', 'ata', 'pu',
  'mi', 'sa', 'co', 'ri'];

/** The lead key of person i, and its true driver's id. */
export const fsLeadKey = (i: number): string => `EMP${i}`;
export const fsTrueDriver = (i: number): string => `T${i}`;
/** SQL: the true driver of a lead key of these people (NULL for any other lead). */
export const FS_TRUE_DRIVER_SQL = (key: string): string => `CASE WHEN ${key} LIKE 'EMP%' THEN 'T' || substr(${key}, 4) END`;

export async function insertFsPeople(db: TestDb, people = 700, background = 3500): Promise<void> {
  // one connection: the people are a temporary table
  const c = await db.pool.connect();
  try {
    await insert(c, people, background);
  } finally {
    c.release();
  }
}

async function insert(c: pg.PoolClient, people: number, background: number): Promise<void> {
  await c.query(
    `INSERT INTO public.drivers (driver_id, park_id, first_name, middle_name, last_name, car_number, hire_date)
     SELECT 'bg-' || g, '08e20910d81d42658d4334d3f6d10ac0',
            ($1::text[])[1 + (g * 7) % 20], CASE WHEN g % 2 = 0 THEN ($1::text[])[1 + (g * 13 + 5) % 20] END,
            ($2::text[])[1 + (g * 11) % 30] || ' ' || ($2::text[])[1 + (g * 17 + 3) % 30],
            'BG' || lpad(g::text, 4, '0'), canon.business_today() - 400
     FROM generate_series(1, $3::integer) g`,
    [GIVEN, SURNAMES, background],
  );
  await c.query(`DROP TABLE IF EXISTS pg_temp.fs_person`);
  await c.query(
    `CREATE TEMP TABLE fs_person AS
     WITH r AS (
       SELECT i, ARRAY(SELECT ('x' || substr(md5('em:' || i || ':' || k), 1, 8))::bit(32)::bigint / 4294967296.0
                       FROM generate_series(1, 16) k) AS x
       FROM generate_series(1, $4::integer) i
     )
     SELECT r.i, r.x,
            ($1::text[])[1 + floor(r.x[1] * 20)::int] AS given1,
            CASE WHEN r.x[2] < 0.5 THEN ($1::text[])[1 + floor(r.x[3] * 20)::int] END AS given2,
            r.x[4] < 0.5 AS rare,
            CASE WHEN r.x[4] < 0.5 THEN initcap(($3::text[])[1 + r.i % 20] || ($3::text[])[1 + (r.i / 20) % 20] || ($3::text[])[1 + (r.i / 400) % 20] || 'nt')
                 ELSE ($2::text[])[1 + floor(r.x[5] * 30)::int] END AS sur1,
            ($2::text[])[1 + floor(r.x[6] * 30)::int] AS sur2,
            -- three letters, a digit that has a look-alike letter, two digits
            upper(translate(substr(md5('pl:' || r.i), 1, 3), '0123456789', 'KMNPRTVWXY'))
              || (ARRAY['0', '1', '5', '8'])[1 + floor(r.x[7] * 4)::int] || lpad(floor(r.x[8] * 100)::int::text, 2, '0') AS plate
     FROM r`,
    [GIVEN, SURNAMES, SYLLABLES, people],
  );
  // the true drivers: hired 0 to 30 days after the lead (80 %), 31 to 90 (12 %), later (8 %)
  await c.query(
    `INSERT INTO public.drivers (driver_id, park_id, first_name, middle_name, last_name, car_number, hire_date)
     SELECT 'T' || p.i, CASE WHEN p.x[9] < 0.95 THEN '08e20910d81d42658d4334d3f6d10ac0' ELSE 'other-park' END,
            p.given1, p.given2, p.sur1 || ' ' || p.sur2, p.plate,
            canon.business_today() - 2 + CASE WHEN p.x[10] < 0.8 THEN floor(p.x[11] * 31)::int
                                              WHEN p.x[10] < 0.92 THEN 31 + floor(p.x[11] * 60)::int
                                              ELSE 91 + floor(p.x[11] * 270)::int END
     FROM fs_person p`,
  );
  await c.query(
    `INSERT INTO public.drivers (driver_id, park_id, first_name, last_name, car_number, hire_date)
     SELECT 'D' || p.i, CASE WHEN p.x[12] < 0.6 THEN '08e20910d81d42658d4334d3f6d10ac0' ELSE 'other-park' END,
            p.given1, p.sur1, 'DEC' || lpad(p.i::text, 3, '0'), canon.business_today() - 1002 + floor(p.x[13] * 1060)::int
     FROM fs_person p WHERE p.rare AND p.x[14] < 0.6`,
  );
  await c.query(
    `INSERT INTO public.module_ct_cabinet_leads (external_id, lead_created_at, first_name, middle_name, last_name, asset_plate_number)
     SELECT 'EMP' || p.i, (canon.business_today() - 2)::timestamp + time '10:00',
            p.given1, CASE WHEN p.x[15] < 0.7 THEN p.given2 END,
            p.sur1 || CASE WHEN p.x[15] >= 0.15 THEN ' ' || CASE
                   WHEN p.x[5] < 0.12 AND length(p.sur2) >= 5 THEN overlay(p.sur2 PLACING substr(p.sur2, 4, 1) || substr(p.sur2, 3, 1) FROM 3 FOR 2)
                   WHEN p.x[5] < 0.25 THEN regexp_replace(regexp_replace(regexp_replace(p.sur2, 'z', 's', 'g'), 'v|V', 'B', 'g'), 'Qu', 'K', 'g')
                   ELSE p.sur2 END ELSE '' END,
            CASE WHEN p.x[16] < 0.45 THEN p.plate
                 WHEN p.x[16] < 0.57 THEN overlay(p.plate PLACING translate(substr(p.plate, 4, 1), '0158', 'OISB') FROM 4 FOR 1)
                 WHEN p.x[16] < 0.75 THEN overlay(p.plate PLACING ((substr(p.plate, 6, 1)::int + 3) % 10)::text FROM 6 FOR 1)
                 ELSE 'NEW' || lpad(p.i::text, 3, '0') END
     FROM fs_person p`,
  );
  await c.query(`DROP TABLE pg_temp.fs_person`);
}
