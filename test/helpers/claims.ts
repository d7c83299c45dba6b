// Claims for the money tests: claims written as a run would (generated), finance settling
// one in a transaction of its own, and what the claims table and the record of settled
// claims (canon_internal.claims_settled) hold for a lead afterwards.
import type pg from 'pg';
import type { TestDb } from './db.js';
import { insertLead } from './rows.js';
import { linkPerson } from './scenario.js';

type Db = Pick<TestDb, 'query'>;

export interface ClaimInput {
  milestone: 1 | 5 | 25;
  status?: 'expected' | 'generated' | 'paid' | 'rejected' | 'expired';
}

const AMOUNT: Record<number, number> = { 1: 25, 5: 35, 25: 100 };

/** Claims of one lead for a person and driver (lead date two days ago), generated unless said otherwise. */
export async function insertClaims(db: Db, leadKey: string, personKey: string | null, driverId: string | null, claims: ClaimInput[]): Promise<void> {
  for (const c of claims) {
    const status = c.status ?? 'generated';
    await db.query(
      `INSERT INTO canon.claims_yango_cabinet_14d
         (lead_source_pk, milestone, person_key, driver_id, lead_date, amount_expected, status, generated_at, paid_at)
       VALUES ($1, $2, $3, $4, canon.business_today() - 2, $5, $6, now(), CASE WHEN $6 = 'paid' THEN now() END)`,
      [leadKey, c.milestone, personKey, driverId, AMOUNT[c.milestone], status],
    );
  }
}

export interface ClaimRow {
  milestone: number;
  status: string;
  amount_expected: string;
  person_key: string | null;
  driver_id: string | null;
  paid_at: Date | null;
}

export async function claimsOf(db: Db, leadKey: string): Promise<ClaimRow[]> {
  return db.query<ClaimRow>(
    `SELECT milestone, status, amount_expected::text, person_key::text, driver_id, paid_at
     FROM canon.claims_yango_cabinet_14d WHERE lead_source_pk = $1 ORDER BY milestone`,
    [leadKey],
  );
}

export interface SettledRecord {
  milestone: number;
  status: string;
  paid_at: Date | null;
  unsettled_at: Date | null;
  unsettled_to: string | null;
  unsettled_note: string | null;
}

/** The lead's rows of canon_internal.claims_settled (the record of its paid and rejected claims). */
export async function settledRecordsOf(db: Db, leadKey: string): Promise<SettledRecord[]> {
  return db.query<SettledRecord>(
    `SELECT milestone, status, paid_at, to_jsonb(s)->>'unsettled_at' AS unsettled_at,
            to_jsonb(s)->>'unsettled_to' AS unsettled_to, to_jsonb(s)->>'unsettled_note' AS unsettled_note
     FROM canon_internal.claims_settled s WHERE lead_source_pk = $1 ORDER BY milestone`,
    [leadKey],
  );
}

/**
 * Finance settles one claim in a transaction it keeps open (BEGIN; UPDATE ...): the row
 * stays locked until the test commits or rolls back on c. Returns the claim as settled.
 */
export async function financeSettles(c: pg.Client, leadKey: string, milestone: number, status: 'paid' | 'rejected'): Promise<ClaimRow> {
  await c.query('BEGIN');
  const { rows } = await c.query<ClaimRow>(
    `UPDATE canon.claims_yango_cabinet_14d
     SET status = $3, paid_at = CASE WHEN $3 = 'paid' THEN now() END, updated_at = now()
     WHERE lead_source_pk = $1 AND milestone = $2
     RETURNING milestone, status, amount_expected::text, person_key::text, driver_id, paid_at`,
    [leadKey, milestone, status],
  );
  if (rows.length !== 1) throw new Error(`no claim ${leadKey} M${milestone} to settle`);
  return rows[0]!;
}

/** The invariants ops.check_invariants() finds violated, with their examples. */
export async function brokenInvariants(db: Db): Promise<{ invariant: string; examples: string[] }[]> {
  return db.query(`SELECT invariant, examples FROM ops.check_invariants() WHERE violations > 0`);
}

/**
 * A lead whose link was deleted by hand in psql (not with ops.unlink_lead), so that its
 * claims for the old person and driver (d-old-<key>) were left behind; the old person
 * stays, carried by its driver link. Returns the old person_key.
 */
export async function leadWithClaimsLeftBehind(db: TestDb, key: string, claims: ClaimInput[]): Promise<string> {
  await insertLead(db, { external_id: key, first_name: null, last_name: null });
  const person = await linkPerson(db, [key], [{ driverId: `d-old-${key}` }]);
  await insertClaims(db, key, person, `d-old-${key}`, claims);
  await db.query(`DELETE FROM canon.identity_links WHERE source_table = 'module_ct_cabinet_leads' AND source_pk = $1`, [key]);
  return person;
}
