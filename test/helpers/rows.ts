// Builders for the upstream source rows in tests: a lead (public.module_ct_cabinet_leads),
// a driver (public.drivers), trip rows (public.summary_daily), with defaults for what a test
// does not state. One builder per table, its input named after the table's columns
// (external_id, park_phone, asset_plate_number, lead_created_at) rather than camelCase
// aliases: a call reads as the row it inserts, in the words of the SQL the test asserts
// with, and a lead's park_phone is never mistaken for a driver's phone. Inputs are values,
// never SQL. A lead returns { id, key }, the key being what links, claims and views use.
// Importing this module makes pg return date columns as 'YYYY-MM-DD' strings.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { TestDb } from './db.js';

pg.types.setTypeParser(pg.types.builtins.DATE, (v) => v);

type Db = Pick<TestDb, 'query'>;

export const TARGET_PARK = '08e20910d81d42658d4334d3f6d10ac0';

/** A short unique suffix for keys of one scenario. */
export function uid(prefix: string): string {
  return `${prefix}-${randomBytes(5).toString('hex')}`;
}

/** The business "today" (canon.business_today()), as YYYY-MM-DD. */
export async function businessToday(db: Db): Promise<string> {
  const [r] = await db.query<{ d: string }>(`SELECT canon.business_today()::text AS d`);
  return r!.d;
}

/** date + n days, on YYYY-MM-DD strings (calendar arithmetic, no time zone involved). */
export function addDays(date: string, n: number): string {
  const d = new Date(`${date}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + n);
  return d.toISOString().slice(0, 10);
}

/** YYYY-MM-DD as summary_daily's other format, DD-MM-YYYY. */
export function dmy(date: string): string {
  const [y, m, d] = date.split('-');
  return `${d}-${m}-${y}`;
}

export interface LeadRow {
  /** default: a unique key (uid('L')); null or blank makes the key the integer id */
  external_id?: string | null;
  /**
   * default: two days before the business today at 10:00; a YYYY-MM-DD date means 10:30
   * that day; any other string is a timestamp ('2026-03-08 23:59:59', 'infinity'); null: no date
   */
  lead_created_at?: string | null;
  /** default 'Juan' */
  first_name?: string | null;
  middle_name?: string | null;
  /** default 'Perez' */
  last_name?: string | null;
  park_phone?: string | null;
  asset_plate_number?: string | null;
}

export interface Lead {
  id: number;
  /** canon.lead_source_pk(external_id, id): the key links, claims and the views use */
  key: string;
}

export async function insertLead(db: Db, lead: LeadRow = {}): Promise<Lead> {
  const at = lead.lead_created_at;
  const [r] = await db.query<Lead>(
    `INSERT INTO public.module_ct_cabinet_leads
       (external_id, lead_created_at, first_name, middle_name, last_name, park_phone, asset_plate_number)
     VALUES ($1, coalesce($2::timestamp, CASE WHEN $3 THEN (canon.business_today() - 2)::timestamp + time '10:00' END),
             $4, $5, $6, $7, $8)
     RETURNING id, canon.lead_source_pk(external_id, id) AS key`,
    [
      lead.external_id === undefined ? uid('L') : lead.external_id,
      at === undefined || at === null ? null : /^\d{4}-\d{2}-\d{2}$/.test(at) ? `${at} 10:30:00` : at,
      at === undefined,
      lead.first_name === undefined ? 'Juan' : lead.first_name,
      lead.middle_name ?? null,
      lead.last_name === undefined ? 'Perez' : lead.last_name,
      lead.park_phone ?? null,
      lead.asset_plate_number ?? null,
    ],
  );
  return r!;
}

export interface DriverRow {
  driver_id: string;
  /** default TARGET_PARK */
  park_id?: string;
  first_name?: string | null;
  middle_name?: string | null;
  last_name?: string | null;
  full_name?: string | null;
  phone?: string | null;
  car_number?: string | null;
  license_number?: string | null;
  /** YYYY-MM-DD; default: the day before the business today; null: no hire date */
  hire_date?: string | null;
}

export async function insertDriver(db: Db, d: DriverRow): Promise<void> {
  await db.query(
    `INSERT INTO public.drivers (driver_id, park_id, first_name, middle_name, last_name, full_name, phone, car_number, license_number, hire_date)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, coalesce($10::date, CASE WHEN $11 THEN canon.business_today() - 1 END))`,
    [
      d.driver_id, d.park_id ?? TARGET_PARK, d.first_name ?? null, d.middle_name ?? null, d.last_name ?? null, d.full_name ?? null,
      d.phone ?? null, d.car_number ?? null, d.license_number ?? null, d.hire_date ?? null, d.hire_date === undefined,
    ],
  );
}

/**
 * 2,000 drivers with common names (20 given names, 30 surnames: each typed by 2 to 10 % of
 * the drivers, as in a real base) and plates no lead uses (BG0001...), hired 400 days ago:
 * the shares that make QUISPE common and let the probabilistic tier tell a rare name (it
 * needs 2,000 drivers).
 */
export async function insertCommonNameDrivers(db: Db): Promise<void> {
  await db.query(`
    WITH names AS (
      SELECT ARRAY['Juan', 'José', 'Luis', 'Carlos', 'Rosa', 'María', 'Jorge', 'Pedro', 'Miguel', 'César', 'Víctor', 'Raúl',
                   'Óscar', 'Julio', 'Manuel', 'Ana', 'Lucía', 'Carmen', 'Elena', 'Julia'] AS given,
             ARRAY['Quispe', 'Mamani', 'Flores', 'Huamán', 'Rojas', 'García', 'Ramos', 'Torres', 'Díaz', 'López',
                   'Mendoza', 'Castillo', 'Espinoza', 'Gutiérrez', 'Pérez', 'Cruz', 'Gonzales', 'Romero', 'Salazar', 'Peña',
                   'Vargas', 'Medina', 'Silva', 'Herrera', 'Aguilar', 'Paredes', 'Tapia', 'Soto', 'Campos', 'Reyes'] AS surnames)
    INSERT INTO public.drivers (driver_id, park_id, first_name, middle_name, last_name, car_number, hire_date)
    SELECT 'bg-' || g, $1,
           n.given[1 + (g * 7) % 20],
           CASE WHEN g % 2 = 0 THEN n.given[1 + (g * 13 + 5) % 20] END,
           n.surnames[1 + (g * 11) % 30] || ' ' || n.surnames[1 + (g * 17 + 3) % 30],
           'BG' || lpad(g::text, 4, '0'),
           canon.business_today() - 400
    FROM generate_series(1, 2000) g CROSS JOIN names n`, [TARGET_PARK]);
}

export interface TripRow {
  /** date_file exactly as stored upstream (either format, or junk) */
  dateFile: string | null;
  trips: number;
}

/** Trip rows of one driver in summary_daily (an hour of work each). */
export async function addTrips(db: Db, driverId: string | null, rows: TripRow[]): Promise<void> {
  if (rows.length === 0) return;
  // The pipeline notices new trip rows through the table's cumulative statistics
  // (canon.summary_daily_fingerprint); a busy backend publishes them up to seconds after
  // its commit, so the test's insert publishes them before it returns.
  await db.query(
    `WITH ins AS (
       INSERT INTO public.summary_daily (driver_id, date_file, count_orders_completed, sum_work_time_seconds)
       SELECT $1, r.date_file, r.trips, 3600
       FROM unnest($2::text[], $3::integer[]) AS r (date_file, trips)
       RETURNING 1)
     SELECT count(*), pg_stat_force_next_flush() FROM ins`,
    [driverId, rows.map((r) => r.dateFile), rows.map((r) => r.trips)],
  );
}

/** One trip row per day offset from the lead date, alternating the two date formats. */
export function tripsOnDays(leadDate: string, offsets: number[], tripsPerDay = 1): TripRow[] {
  return offsets.map((o, i) => {
    const day = addDays(leadDate, o);
    return { dateFile: i % 2 === 0 ? day : dmy(day), trips: tripsPerDay };
  });
}
