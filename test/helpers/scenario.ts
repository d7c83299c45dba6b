// Hand-built scenarios for the trips, claims and limbo tests: a person linked to leads and
// drivers (in one transaction, as the invariant triggers require), a lead already linked with
// its trips, claims generated as step 7 does, and what the limbo view and the claims table
// hold for a lead. The source rows themselves come from rows.ts (its builders make unique
// keys, so tests sharing one database do not see each other's leads).
// Importing this module (through rows.ts) makes pg return date columns as 'YYYY-MM-DD' strings.
import type { TestDb } from './db.js';
import { addTrips, insertLead, uid, type Lead, type LeadRow, type TripRow } from './rows.js';

type Db = Pick<TestDb, 'query' | 'connect'>;

export interface DriverLink {
  driverId: string;
  /** timestamptz literal; default now() */
  linkedAt?: string;
}

/**
 * A person linked to the given lead keys and drivers, created in one transaction
 * (registry row, lead links, driver links). Returns the person_key.
 */
export async function linkPerson(db: Db, leadKeys: string[], drivers: DriverLink[] = []): Promise<string> {
  const c = await db.connect();
  try {
    await c.query('BEGIN');
    const { rows } = await c.query<{ person_key: string }>(
      `INSERT INTO canon.identity_registry (confidence_level) VALUES ('HIGH') RETURNING person_key`,
    );
    const personKey = rows[0]!.person_key;
    for (const key of leadKeys) {
      await c.query(
        `INSERT INTO canon.identity_links (source_table, source_pk, person_key, match_rule, match_score, confidence_level)
         VALUES ('module_ct_cabinet_leads', $1, $2, 'R1_PHONE_EXACT', 95, 'HIGH')`,
        [key, personKey],
      );
    }
    for (const d of drivers) {
      await c.query(
        `INSERT INTO canon.identity_links (source_table, source_pk, person_key, match_rule, match_score, confidence_level, linked_at)
         VALUES ('drivers', $1, $2, 'R1_PHONE_EXACT', 95, 'HIGH', coalesce($3::timestamptz, now()))`,
        [d.driverId, personKey, d.linkedAt ?? null],
      );
    }
    await c.query('COMMIT');
    return personKey;
  } catch (err) {
    await c.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    await c.end();
  }
}

/** Adds a driver link to an existing person. */
export async function addDriverLink(db: Db, personKey: string, driver: DriverLink): Promise<void> {
  await db.query(
    `INSERT INTO canon.identity_links (source_table, source_pk, person_key, match_rule, match_score, confidence_level, linked_at)
     VALUES ('drivers', $1, $2, 'R1_PHONE_EXACT', 95, 'HIGH', coalesce($3::timestamptz, now()))`,
    [driver.driverId, personKey, driver.linkedAt ?? null],
  );
}

export interface LinkedLead extends Lead {
  personKey: string;
  driverId: string;
  leadDate: string;
}

/** A lead dated `leadDate`, linked to a person with one driver, with `trips` trips on day 0. */
export async function linkedLead(
  db: Db,
  leadDate: string,
  opts: { trips?: TripRow[]; lead?: LeadRow; driverId?: string } = {},
): Promise<LinkedLead> {
  const lead = await insertLead(db, { ...opts.lead, lead_created_at: leadDate });
  const driverId = opts.driverId ?? uid('D');
  const personKey = await linkPerson(db, [lead.key], [{ driverId }]);
  await addTrips(db, driverId, opts.trips ?? []);
  return { ...lead, personKey, driverId, leadDate };
}

/** Runs step 7 like the pipeline does (run_id NULL), returning its stats. */
export async function generateClaims(db: Db, scopeFrom: string): Promise<ClaimStats> {
  const [r] = await db.query<{ s: ClaimStats }>(`SELECT canon.generate_cabinet_claims(NULL, $1::date) AS s`, [scopeFrom]);
  return r!.s;
}

export interface ClaimStats {
  leads_in_scope: number;
  leads_with_driver: number;
  trip_rows_read: number;
  trip_rows_unparseable_scope_drivers: number;
  claims_generated: number;
  claims_generated_amount: number;
  claims_generated_by_milestone: Record<'M1' | 'M5' | 'M25', { count: number; amount: number }>;
  claims_skipped_paid_or_rejected: number;
  claims_already_present: number;
  [k: string]: unknown;
}

export interface LimboRow {
  lead_id: number;
  lead_source_pk: string;
  lead_date: string;
  week_start: string;
  park_phone: string | null;
  asset_plate_number: string | null;
  lead_name: string | null;
  person_key: string | null;
  driver_id: string | null;
  trips_14d: string;
  window_end_14d: string | null;
  window_status: 'OPEN' | 'CLOSED' | null;
  reached_m1_14d: boolean;
  reached_m5_14d: boolean;
  reached_m25_14d: boolean;
  expected_amount_14d: string;
  has_claim_m1: boolean;
  has_claim_m5: boolean;
  has_claim_m25: boolean;
  limbo_stage: string;
  limbo_reason_detail: string;
  reason_code: string | null;
}

export async function limboRows(db: Db, leadKey: string): Promise<LimboRow[]> {
  return db.query<LimboRow>(`SELECT * FROM ops.v_cabinet_leads_limbo WHERE lead_source_pk = $1 ORDER BY lead_id`, [leadKey]);
}

export async function limboRow(db: Db, leadKey: string): Promise<LimboRow> {
  const rows = await limboRows(db, leadKey);
  if (rows.length !== 1) throw new Error(`expected one limbo row for lead ${leadKey}, got ${rows.length}`);
  return rows[0]!;
}

export async function claimsOf(db: Db, leadKey: string): Promise<{ milestone: number; status: string; amount_expected: string; lead_date: string; driver_id: string | null }[]> {
  return db.query(
    `SELECT milestone, status, amount_expected, lead_date, driver_id
     FROM canon.claims_yango_cabinet_14d WHERE lead_source_pk = $1 ORDER BY milestone`,
    [leadKey],
  );
}

/**
 * The limbo view's counts per lead week, pivoted like ops.limbo_snapshot_weeks and
 * ops.limbo_week_counts (the reference the stored and live week counts are checked against).
 */
export const LIMBO_VIEW_WEEKS_SQL = `
  SELECT week_start::text AS week_start, count(*)::int AS leads,
         (count(*) FILTER (WHERE person_key IS NOT NULL))::int AS leads_with_identity,
         (count(*) FILTER (WHERE driver_id IS NOT NULL))::int AS leads_with_driver,
         (count(*) FILTER (WHERE limbo_stage = 'NO_IDENTITY'))::int AS limbo_no_identity,
         (count(*) FILTER (WHERE limbo_stage = 'NO_DRIVER'))::int AS limbo_no_driver,
         (count(*) FILTER (WHERE limbo_stage = 'NO_TRIPS_14D'))::int AS limbo_no_trips_14d,
         (count(*) FILTER (WHERE limbo_stage = 'TRIPS_NO_CLAIM'))::int AS limbo_trips_no_claim,
         (count(*) FILTER (WHERE limbo_stage = 'OK'))::int AS limbo_ok
  FROM ops.v_cabinet_leads_limbo GROUP BY week_start`;

/** The stored snapshot counts per lead week of a run, in the columns of LIMBO_VIEW_WEEKS_SQL. */
export const SNAPSHOT_WEEKS_SQL = `
  SELECT week_start::text AS week_start, leads, leads_with_identity, leads_with_driver, limbo_no_identity,
         limbo_no_driver, limbo_no_trips_14d, limbo_trips_no_claim, limbo_ok
  FROM ops.limbo_snapshot_weeks WHERE run_id = $1`;

/** Rows where the stored lead state and its live definition (canon.v_cabinet_lead_status) differ, both ways. */
export async function stateDrift(db: Db): Promise<number> {
  const cols = `lead_id, lead_source_pk, lead_date, person_key, driver_id, window_days, window_end, trips_in_window,
    trip_rows_in_window, currency, m1_trips_threshold, m1_amount, reached_m1, m5_trips_threshold, m5_amount, reached_m5,
    m25_trips_threshold, m25_amount, reached_m25, expected_amount, has_claim_m1, has_claim_m5, has_claim_m25, limbo_stage, key_rows`;
  const [r] = await db.query<{ n: number }>(`
    SELECT ((SELECT count(*) FROM (SELECT ${cols} FROM canon_internal.cabinet_lead_state EXCEPT SELECT ${cols} FROM canon.v_cabinet_lead_status) a)
          + (SELECT count(*) FROM (SELECT ${cols} FROM canon.v_cabinet_lead_status EXCEPT SELECT ${cols} FROM canon_internal.cabinet_lead_state) b))::int AS n`);
  return r!.n;
}
