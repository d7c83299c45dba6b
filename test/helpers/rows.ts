// Builders for source rows in tests: a lead or a driver with sensible defaults, so a
// test states only the fields its behaviour depends on.
import type { TestDb } from './db.js';

export const TARGET_PARK = '08e20910d81d42658d4334d3f6d10ac0';

export interface LeadRow {
  external_id?: string | null;
  lead_created_at?: string | null; // SQL expression, default: two days ago
  first_name?: string | null;
  middle_name?: string | null;
  last_name?: string | null;
  park_phone?: string | null;
  asset_plate_number?: string | null;
}

export interface DriverRow {
  driver_id: string;
  park_id?: string;
  first_name?: string | null;
  middle_name?: string | null;
  last_name?: string | null;
  full_name?: string | null;
  phone?: string | null;
  car_number?: string | null;
  license_number?: string | null;
  hire_date?: string | null; // SQL expression, default: yesterday
}

export async function insertLead(db: TestDb, lead: LeadRow): Promise<number> {
  const rows = await db.query<{ id: number }>(
    `INSERT INTO public.module_ct_cabinet_leads
       (external_id, lead_created_at, first_name, middle_name, last_name, park_phone, asset_plate_number)
     VALUES ($1, ${lead.lead_created_at === undefined ? `(canon.business_today() - 2)::timestamp + time '10:00'` : lead.lead_created_at === null ? 'NULL' : lead.lead_created_at},
             $2, $3, $4, $5, $6)
     RETURNING id`,
    [lead.external_id ?? null, lead.first_name ?? null, lead.middle_name ?? null, lead.last_name ?? null, lead.park_phone ?? null, lead.asset_plate_number ?? null],
  );
  return rows[0]!.id;
}

export async function insertDriver(db: TestDb, d: DriverRow): Promise<void> {
  await db.query(
    `INSERT INTO public.drivers (driver_id, park_id, first_name, middle_name, last_name, full_name, phone, car_number, license_number, hire_date)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, ${d.hire_date === undefined ? 'canon.business_today() - 1' : d.hire_date === null ? 'NULL' : d.hire_date})`,
    [d.driver_id, d.park_id ?? TARGET_PARK, d.first_name ?? null, d.middle_name ?? null, d.last_name ?? null, d.full_name ?? null, d.phone ?? null, d.car_number ?? null, d.license_number ?? null],
  );
}

export interface RunResult {
  id: number;
  status: string;
  stats: Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  error_message: string | null;
}

export async function runPipeline(db: TestDb, args = 'p_days_back => 30, p_limit => 2000'): Promise<RunResult> {
  const c = await db.pool.connect();
  try {
    const res = await c.query<{ run: RunResult }>(`CALL ops.reconcile_cabinet_leads_pipeline(${args})`);
    return res.rows[0]!.run;
  } finally {
    c.release();
  }
}

export async function linkOf(db: TestDb, leadKey: string): Promise<{ match_rule: string; driver_id: string | null; person_key: string } | undefined> {
  const rows = await db.query<{ match_rule: string; driver_id: string | null; person_key: string }>(
    `SELECT l.match_rule, l.person_key::text,
            (SELECT d.source_pk FROM canon.identity_links d
             WHERE d.source_table = 'drivers' AND d.person_key = l.person_key ORDER BY d.linked_at DESC, d.source_pk LIMIT 1) AS driver_id
     FROM canon.identity_links l
     WHERE l.source_table = 'module_ct_cabinet_leads' AND l.source_pk = $1`,
    [leadKey],
  );
  return rows[0];
}

export async function unmatchedOf(db: TestDb, leadKey: string): Promise<{ reason_code: string; status: string; attempts: number; candidates: { driver_id: string; reject_reason: string | null }[] } | undefined> {
  const rows = await db.query<{ reason_code: string; status: string; attempts: number; candidates: { driver_id: string; reject_reason: string | null }[] }>(
    `SELECT reason_code, status, attempts, candidates FROM canon.identity_unmatched
     WHERE source_table = 'module_ct_cabinet_leads' AND source_pk = $1`,
    [leadKey],
  );
  return rows[0];
}
