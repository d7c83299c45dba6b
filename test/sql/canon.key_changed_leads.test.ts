// canon.key_changed_leads (step 5a): every lead row written since the last read keyed into
// canon_internal.lead_keys, with what depends on a key (never-evaluated list, state marks,
// retry due), deleted rows found by the row count, oversized keys listed unkeyed.
import test from 'ava';
import { type TestDb, withDb } from '../helpers/db.js';
import { insertLead } from '../helpers/rows.js';
import { insertUnmatched, step } from '../helpers/steps.js';

interface Stats {
  lead_rows: number;
  lead_rows_undated: number;
  lead_rows_read_again: number;
  lead_rows_written: number;
  lead_rows_gone_or_unkeyed_found: number;
  leads_with_oversized_key: number;
  read_since_xmin: string | null;
}

const keyLeads = (db: TestDb) => step<Stats>(db.pool, 'canon.key_changed_leads(NULL)');

async function ids(db: TestDb, table: string): Promise<number[]> {
  return (await db.query<{ lead_id: number }>(`SELECT lead_id FROM ${table} ORDER BY lead_id`)).map((r) => r.lead_id);
}

test('the first read keys every lead row, normalised, and lists each as never evaluated and its state as pending', (t) =>
  withDb('key_leads', async (db) => {
    const dated = await insertLead(db, { external_id: 'L1', lead_created_at: '2026-03-08', park_phone: '+51 977 456 321', asset_plate_number: 'abc-123' });
    const undated = await insertLead(db, { external_id: 'L2', lead_created_at: null });
    t.deepEqual(await keyLeads(db), {
      lead_rows: 2, lead_rows_undated: 1, lead_rows_read_again: 2, lead_rows_written: 2,
      lead_rows_gone_or_unkeyed_found: 0, leads_with_oversized_key: 0, read_since_xmin: null,
    });
    const keys = await db.query(`SELECT lead_id, lead_source_pk, lead_date::text, phone_norm, plate_norm FROM canon_internal.lead_keys ORDER BY lead_id`);
    t.deepEqual(keys, [
      { lead_id: dated.id, lead_source_pk: 'L1', lead_date: '2026-03-08', phone_norm: '977456321', plate_norm: 'ABC123' },
      { lead_id: undated.id, lead_source_pk: 'L2', lead_date: null, phone_norm: null, plate_norm: null },
    ]);
    t.deepEqual(await ids(db, 'canon_internal.lead_keys_pending'), [dated.id, undated.id]);
    t.deepEqual(await ids(db, 'canon_internal.cabinet_lead_state_pending'), [dated.id, undated.id]);
    const [scan] = await db.query(`SELECT rows_read::int, rows_dated::int, seen_xmin IS NOT NULL AS seen FROM canon_internal.source_scan_state WHERE source_table = 'module_ct_cabinet_leads'`);
    t.deepEqual(scan, { rows_read: 2, rows_dated: 1, seen: true });
  }));

test('a second read with nothing written reads no row again and writes nothing', (t) =>
  withDb('key_leads', async (db) => {
    await insertLead(db, { external_id: 'L1' });
    await keyLeads(db);
    await db.query(`DELETE FROM canon_internal.cabinet_lead_state_pending`);
    const again = await keyLeads(db);
    t.like(again, { lead_rows: 1, lead_rows_read_again: 0, lead_rows_written: 0, lead_rows_gone_or_unkeyed_found: 0 });
    t.truthy(again.read_since_xmin);
    t.deepEqual(await ids(db, 'canon_internal.cabinet_lead_state_pending'), []);
  }));

test('a lead row changed in place is keyed again, and the OPEN unmatched lead of its key becomes due', (t) =>
  withDb('key_leads', async (db) => {
    const lead = await insertLead(db, { external_id: 'L1', park_phone: '911111111' });
    await insertLead(db, { external_id: 'L2', park_phone: '922222222' });
    await keyLeads(db);
    await insertUnmatched(db, 'L1');
    await insertUnmatched(db, 'L2');
    await db.query(`UPDATE public.module_ct_cabinet_leads SET park_phone = '977456321' WHERE id = $1`, [lead.id]);
    t.like(await keyLeads(db), { lead_rows: 2, lead_rows_read_again: 1, lead_rows_written: 1 });
    t.deepEqual(await db.query(`SELECT phone_norm FROM canon_internal.lead_keys WHERE lead_id = $1`, [lead.id]), [{ phone_norm: '977456321' }]);
    t.deepEqual(await db.query(`SELECT source_pk FROM canon.identity_unmatched WHERE retry_due`), [{ source_pk: 'L1' }]);
  }));

test('a deleted lead row is found by the row count and loses its key; its state is marked to be removed', (t) =>
  withDb('key_leads', async (db) => {
    const kept = await insertLead(db, { external_id: 'L1' });
    const gone = await insertLead(db, { external_id: 'L2' });
    await keyLeads(db);
    await db.query(`DELETE FROM canon_internal.cabinet_lead_state_pending`);
    await db.query(`DELETE FROM public.module_ct_cabinet_leads WHERE id = $1`, [gone.id]);
    t.like(await keyLeads(db), { lead_rows: 1, lead_rows_read_again: 0, lead_rows_gone_or_unkeyed_found: 1, lead_rows_written: 1 });
    t.deepEqual(await ids(db, 'canon_internal.lead_keys'), [kept.id]);
    t.deepEqual(await ids(db, 'canon_internal.lead_keys_pending'), [kept.id]);
    t.deepEqual(await ids(db, 'canon_internal.cabinet_lead_state_pending'), [gone.id]);
  }));

test('a lead row whose key is over 200 characters is listed unkeyed instead of keyed', (t) =>
  withDb('key_leads', async (db) => {
    const big = await insertLead(db, { external_id: 'x'.repeat(201) });
    t.like(await keyLeads(db), { lead_rows: 1, lead_rows_read_again: 1, lead_rows_written: 0, leads_with_oversized_key: 1 });
    t.deepEqual(await ids(db, 'canon_internal.lead_keys'), []);
    t.deepEqual(await db.query(`SELECT lead_id, reason FROM canon_internal.lead_rows_unkeyed`), [{ lead_id: big.id, reason: 'OVERSIZED_KEY' }]);
    t.like(await keyLeads(db), { lead_rows_read_again: 0, lead_rows_gone_or_unkeyed_found: 0, leads_with_oversized_key: 1 });
  }));
