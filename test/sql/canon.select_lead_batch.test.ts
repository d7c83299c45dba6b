// canon.select_lead_batch (step 5b): the run's batch in pg_temp.cabinet_batch: never-evaluated
// lead keys of the scope first, then OPEN leads due for a retry (least recently attempted
// first), NO_DRIVER leads with p_only_limbo, at most p_limit; pending keys found evaluated
// leave canon_internal.lead_keys_pending.
import test from 'ava';
import { type TestDb, withDb } from '../helpers/db.js';
import { addDays, businessToday, insertLead } from '../helpers/rows.js';
import { linkPerson } from '../helpers/scenario.js';
import { inTransaction, insertUnmatched, step } from '../helpers/steps.js';

interface Stats {
  leads_selected: number;
  batch: { no_identity: number; no_driver: number; never_evaluated: number; retried: number; duplicate_key_rows: number };
  pending_cleared: number;
  retries_skipped_no_index_change: number;
}

interface BatchRow {
  lead_id: number;
  lead_source_pk: string;
  rows_with_key: number;
  batch_kind: string;
}

/** One selection (scope: the last 30 days), and its batch in order. */
async function selectBatch(db: TestDb, limit: number, onlyLimbo = false): Promise<{ stats: Stats; batch: BatchRow[] }> {
  return inTransaction(db, async (c) => {
    const stats = await step<Stats>(c, 'canon.select_lead_batch(canon.business_today() - 30, $1, $2)', [limit, onlyLimbo]);
    const batch = (await c.query<BatchRow>(
      `SELECT lead_id, lead_source_pk, rows_with_key::int, batch_kind FROM pg_temp.cabinet_batch
       ORDER BY evaluated_before, last_attempt_at NULLS FIRST, lead_id`)).rows;
    return { stats, batch };
  });
}

const keyLeads = (db: TestDb) => db.query(`SELECT canon.key_changed_leads(NULL)`);

async function pendingKeys(db: TestDb): Promise<string[]> {
  const rows = await db.query<{ k: string }>(
    `SELECT k.lead_source_pk AS k FROM canon_internal.lead_keys_pending q JOIN canon_internal.lead_keys k USING (lead_id) ORDER BY q.lead_id`);
  return rows.map((r) => r.k);
}

test('never-evaluated keys of the scope, lowest lead first, at most p_limit; a lead before the scope is not selected; nothing is consumed', (t) =>
  withDb('lead_batch', async (db) => {
    const today = await businessToday(db);
    for (const k of ['A', 'B', 'C']) await insertLead(db, { external_id: k });
    await insertLead(db, { external_id: 'OLD', lead_created_at: addDays(today, -40) });
    await keyLeads(db);
    const two = await selectBatch(db, 2);
    t.deepEqual(two.stats, {
      leads_selected: 2,
      batch: { no_identity: 2, no_driver: 0, never_evaluated: 2, retried: 0, duplicate_key_rows: 0 },
      pending_cleared: 0, retries_skipped_no_index_change: 0,
    });
    t.deepEqual(two.batch.map((b) => [b.lead_source_pk, b.batch_kind]), [['A', 'NO_IDENTITY'], ['B', 'NO_IDENTITY']]);
    t.deepEqual((await selectBatch(db, 2)).batch.map((b) => b.lead_source_pk), ['A', 'B'], 'the same batch again');
    t.deepEqual((await selectBatch(db, 10)).batch.map((b) => b.lead_source_pk), ['A', 'B', 'C']);
    t.like((await selectBatch(db, 0)).stats, { leads_selected: 0 });
    t.deepEqual(await pendingKeys(db), ['A', 'B', 'C', 'OLD']);
  }));

test('a key with two lead rows is one batch row, its first row standing for both', (t) =>
  withDb('lead_batch', async (db) => {
    const first = await insertLead(db, { external_id: 'DUP' });
    await insertLead(db, { external_id: 'DUP' });
    await keyLeads(db);
    const { stats, batch } = await selectBatch(db, 10);
    t.like(stats, { leads_selected: 1, batch: { duplicate_key_rows: 1 } });
    t.deepEqual(batch.map((b) => [b.lead_id, b.rows_with_key]), [[first.id, 2]]);
  }));

test('a pending key found linked, OPEN or IGNORED leaves the list and is not selected; an OPEN lead not due is counted as skipped', (t) =>
  withDb('lead_batch', async (db) => {
    const linked = await insertLead(db, { external_id: 'LINKED' });
    for (const k of ['OPEN', 'IGNORED', 'NEW']) await insertLead(db, { external_id: k });
    await keyLeads(db);
    await linkPerson(db, [linked.key]);
    await insertUnmatched(db, 'OPEN');
    await insertUnmatched(db, 'IGNORED', { status: 'IGNORED' });
    const { stats, batch } = await selectBatch(db, 10);
    t.like(stats, { leads_selected: 1, pending_cleared: 3, retries_skipped_no_index_change: 1 });
    t.deepEqual(batch.map((b) => b.lead_source_pk), ['NEW']);
    t.deepEqual(await pendingKeys(db), ['NEW']);
  }));

test('OPEN leads due for a retry come after the never-evaluated ones, least recently attempted first, within the limit', (t) =>
  withDb('lead_batch', async (db) => {
    const today = await businessToday(db);
    for (const k of ['NEW', 'DUE-1D', 'DUE-2D', 'NOT-DUE']) await insertLead(db, { external_id: k });
    await insertLead(db, { external_id: 'DUE-OLD', lead_created_at: addDays(today, -40) });
    await keyLeads(db);
    await insertUnmatched(db, 'DUE-1D', { retry_due: true, last_attempt_at: `${today} 08:00` });
    await insertUnmatched(db, 'DUE-2D', { retry_due: true, last_attempt_at: `${addDays(today, -1)} 08:00` });
    await insertUnmatched(db, 'NOT-DUE');
    await insertUnmatched(db, 'DUE-OLD', { retry_due: true });
    const two = await selectBatch(db, 2);
    t.like(two.stats, { leads_selected: 2, batch: { never_evaluated: 1, retried: 1 }, retries_skipped_no_index_change: 1 });
    t.deepEqual(two.batch.map((b) => b.lead_source_pk), ['NEW', 'DUE-2D']);
    const all = await selectBatch(db, 10);
    t.like(all.stats, { leads_selected: 3, batch: { no_identity: 3, never_evaluated: 1, retried: 2 } });
    t.deepEqual(all.batch.map((b) => b.lead_source_pk), ['NEW', 'DUE-2D', 'DUE-1D']);
  }));

test('with p_only_limbo a linked lead whose person has no driver is in the batch as NO_DRIVER; one with a driver is not', (t) =>
  withDb('lead_batch', async (db) => {
    const noDriver = await insertLead(db, { external_id: 'NO-DRIVER' });
    const withDriver = await insertLead(db, { external_id: 'WITH-DRIVER' });
    await keyLeads(db);
    await linkPerson(db, [noDriver.key]);
    await linkPerson(db, [withDriver.key], [{ driverId: 'd1' }]);
    t.like((await selectBatch(db, 10)).stats, { leads_selected: 0, batch: { no_driver: 0 } });
    const limbo = await selectBatch(db, 10, true);
    t.like(limbo.stats, { leads_selected: 1, batch: { no_identity: 0, no_driver: 1, never_evaluated: 1 } });
    t.deepEqual(limbo.batch.map((b) => [b.lead_source_pk, b.batch_kind]), [['NO-DRIVER', 'NO_DRIVER']]);
  }));
