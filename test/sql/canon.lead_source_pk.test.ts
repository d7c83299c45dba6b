import test from 'ava';
import { createTestDb, type TestDb } from '../helpers/db.js';

let db: TestDb;
test.before(async () => {
  db = await createTestDb('lead_source_pk');
});
test.after.always(() => db.drop());

test('uses the trimmed external_id when present', async (t) => {
  const [r] = await db.query<{ k: string }>(`SELECT canon.lead_source_pk('  abc123 ', 7) AS k`);
  t.is(r?.k, 'abc123');
});

test('falls back to the integer id for NULL, empty and blank external ids', async (t) => {
  const rows = await db.query<{ k: string }>(
    `SELECT canon.lead_source_pk(x, 42) AS k FROM unnest(ARRAY[NULL, '', '   ']::text[]) x`,
  );
  t.deepEqual(rows.map((r) => r.k), ['42', '42', '42']);
});
