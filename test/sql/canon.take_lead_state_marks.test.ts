// canon.take_lead_state_marks (step 7a and 7e, ops.refresh_cabinet_lead_state): the lead rows
// the marks visible now name (rows of canon_internal.cabinet_lead_state_pending, every row of
// a key of canon_internal.cabinet_lead_state_dirty), each mark read once per transaction, into
// pg_temp.lead_state_marks; the marks themselves stay until canon.clear_lead_state_marks.
import test from 'ava';
import { type TestDb, withDb } from '../helpers/db.js';
import { insertLead } from '../helpers/rows.js';
import { inTransaction, step } from '../helpers/steps.js';

const take = (c: Parameters<typeof step>[0]) => step<number[]>(c, 'canon.take_lead_state_marks()');

/** Lead rows keyed (step 5a) with no mark left. */
async function keyedWithoutMarks(db: TestDb, keys: string[]): Promise<number[]> {
  const ids: number[] = [];
  for (const k of keys) ids.push((await insertLead(db, { external_id: k })).id);
  await db.query(`SELECT canon.key_changed_leads(NULL)`);
  await db.query(`DELETE FROM canon_internal.cabinet_lead_state_pending`);
  await db.query(`DELETE FROM canon_internal.cabinet_lead_state_dirty`);
  return ids;
}

const markRow = (c: Parameters<typeof step>[0], id: number) =>
  c.query(`INSERT INTO canon_internal.cabinet_lead_state_pending (lead_id) VALUES ($1)
           ON CONFLICT (lead_id) DO UPDATE SET mark_seq = excluded.mark_seq`, [id]);
const markKey = (c: Parameters<typeof step>[0], key: string) =>
  c.query(`INSERT INTO canon_internal.cabinet_lead_state_dirty (lead_source_pk) VALUES ($1)
           ON CONFLICT (lead_source_pk) DO UPDATE SET mark_seq = excluded.mark_seq`, [key]);

test('no marks: no lead rows', (t) =>
  withDb('take_marks', async (db) => {
    await keyedWithoutMarks(db, ['K']);
    t.deepEqual(await inTransaction(db, (c) => take(c)), []);
  }));

test('a marked row and every row of a marked key, once each; a key with no rows names none', (t) =>
  withDb('take_marks', async (db) => {
    const [k1, k2, other] = await keyedWithoutMarks(db, ['K', 'K', 'OTHER']);
    await markRow(db.pool, other!);
    await markRow(db.pool, k1!);
    await markKey(db.pool, 'K');
    await markKey(db.pool, 'NO-ROWS');
    const ids = await inTransaction(db, (c) => take(c));
    t.deepEqual([...ids].sort((a, b) => a - b), [k1!, k2!, other!].sort((a, b) => a - b));
    const [n] = await db.query<{ pending: number; dirty: number }>(
      `SELECT (SELECT count(*) FROM canon_internal.cabinet_lead_state_pending)::int AS pending,
              (SELECT count(*) FROM canon_internal.cabinet_lead_state_dirty)::int AS dirty`);
    t.deepEqual(n, { pending: 2, dirty: 2 }, 'taking a mark does not remove it');
  }));

test('called again in the transaction it returns only the marks made since: a row marked again is taken again', (t) =>
  withDb('take_marks', async (db) => {
    const [a, b] = await keyedWithoutMarks(db, ['A', 'B']);
    await inTransaction(db, async (c) => {
      await markRow(c, a!);
      t.deepEqual(await take(c), [a!]);
      t.deepEqual(await take(c), []);
      await markRow(c, a!);
      await markKey(c, 'B');
      const again = await take(c);
      t.deepEqual([...again].sort((x, y) => x - y), [a!, b!].sort((x, y) => x - y));
      const marks = (await c.query<{ lead_id: number | null; lead_source_pk: string | null }>(
        `SELECT lead_id, lead_source_pk FROM pg_temp.lead_state_marks ORDER BY lead_source_pk NULLS FIRST, mark_seq`)).rows;
      t.deepEqual(marks, [{ lead_id: a!, lead_source_pk: null }, { lead_id: a!, lead_source_pk: null }, { lead_id: null, lead_source_pk: 'B' }]);
    });
  }));
