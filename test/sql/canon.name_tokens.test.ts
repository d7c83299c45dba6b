import test from 'ava';
import { createTestDb, type TestDb } from '../helpers/db.js';

let db: TestDb;
test.before(async () => {
  db = await createTestDb('name_tokens');
});
test.after.always(() => db.drop());

test('returns the tokens of normalize_name as a sorted array', async (t) => {
  const [r] = await db.query<{ v: string[] }>(`SELECT canon.name_tokens('María  de la  Cruz PEÑA-NÚÑEZ') AS v`);
  t.deepEqual(r?.v, ['CRUZ', 'MARIA', 'NUNEZ', 'PENA']);
});

test('returns NULL when the name has no token', async (t) => {
  const rows = await db.query<{ v: string[] | null }>(
    `SELECT canon.name_tokens(x) AS v FROM unnest(ARRAY[NULL, '', '   ', 'de la', '王小明', '😀']::text[]) AS x`,
  );
  t.deepEqual(rows.map((r) => r.v), [null, null, null, null, null, null]);
});

test('is inlined into the calling query (no function call overhead of its own)', async (t) => {
  const rows = await db.query<{ 'QUERY PLAN': string }>(`EXPLAIN (VERBOSE) SELECT canon.name_tokens(c.relname::text) FROM pg_catalog.pg_class AS c`);
  t.regex(rows.map((r) => r['QUERY PLAN']).join('\n'), /string_to_array\(canon\.normalize_name/);
});
