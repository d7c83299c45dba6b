// canon.key_chunks: an array's keys in sorted chunks of a given size (a GIN index probed a
// chunk at a time), inlined into the statement that calls it.
import test from 'ava';
import { createTestDb, type TestDb } from '../helpers/db.js';

let db: TestDb;
test.before(async () => {
  db = await createTestDb('key_chunks');
});
test.after.always(() => db.drop());

test('splits the keys, sorted, into chunks of at most the size; none for an empty array', async (t) => {
  const rows = await db.query<{ keys: string[] }>(
    `SELECT keys FROM canon.key_chunks(ARRAY['E', 'A', 'D', 'B', 'C'], 2) AS c (keys) ORDER BY keys[1]`);
  t.deepEqual(rows.map((r) => r.keys), [['A', 'B'], ['C', 'D'], ['E']]);
  t.deepEqual(await db.query(`SELECT * FROM canon.key_chunks('{}', 64)`), []);
});

test('is inlined into the statement calling it', async (t) => {
  const plan = (await db.query<{ 'QUERY PLAN': string }>(
    `EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM canon.key_chunks(ARRAY['A', 'B'], 1)`)).map((r) => r['QUERY PLAN']).join('\n');
  t.notRegex(plan, /Function (Scan on|Call:) canon\.key_chunks/);
  t.regex(plan, /WindowAgg/);
});
