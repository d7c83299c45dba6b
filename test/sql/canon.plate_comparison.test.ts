// How the probabilistic tier compares plates (canon.plate_comparison) and finds near ones
// (canon.plate_edit_keys, the deletion keys indexed on the driver index): a confusion of
// look-alike characters is its own, stronger level; any one edit shares a key.
import test from 'ava';
import fc from 'fast-check';
import { createTestDb, type TestDb } from '../helpers/db.js';

let db: TestDb;
test.before(async () => {
  db = await createTestDb('plate_comparison');
});
test.after.always(() => db.drop());

async function compare(pairs: [string | null, string | null][]): Promise<[string | null, string | null][]> {
  const rows = await db.query<{ level: string | null; note: string | null }>(
    `SELECT (canon.plate_comparison(a, b)).* FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(a, b, i) ORDER BY i`,
    [pairs.map((p) => p[0]), pairs.map((p) => p[1])],
  );
  return rows.map((r) => [r.level, r.note]);
}

test('the visual confusions O/0, I/1, B/8, S/5, Z/2, G/6 are CONFUSION, naming the characters', async (t) => {
  t.deepEqual(await compare([['ABC1O5', 'ABC105'], ['AIC123', 'A1C123'], ['A8C123', 'ABC123'], ['ABS123', 'AB5123'], ['AZC123', 'A2C123'], ['AG6123', 'A66123']]),
    [['CONFUSION', 'O/0'], ['CONFUSION', 'I/1'], ['CONFUSION', '8/B'], ['CONFUSION', 'S/5'], ['CONFUSION', 'Z/2'], ['CONFUSION', 'G/6']]);
});

test('another character, a swap, a missing or an extra one is ONE_EDIT; equal is EXACT; more is DIFFERENT', async (t) => {
  t.deepEqual(await compare([['ABC124', 'ABC123'], ['ABC213', 'ABC123'], ['AB123', 'ABC123'], ['ABC1234', 'ABC123'], ['ABC123', 'ABC123'],
    ['ABD124', 'ABC123'], ['XYZ123', 'ABC123'], ['ABC', 'ABC123'], [null, 'ABC123']]),
  [['ONE_EDIT', '4/3'], ['ONE_EDIT', 'swapped 21/12'], ['ONE_EDIT', 'missing C'], ['ONE_EDIT', 'extra 4'], ['EXACT', null],
    ['DIFFERENT', null], ['DIFFERENT', null], ['DIFFERENT', null], [null, null]]);
});

test('the deletion keys of a plate are the plate and each form with one character dropped', async (t) => {
  const [r] = await db.query<{ k: string[] }>(`SELECT canon.plate_edit_keys('ABC123') AS k`);
  t.deepEqual([...r!.k].sort(), ['AB123', 'ABC12', 'ABC123', 'ABC13', 'ABC23', 'AC123', 'BC123']);
});

test('property: two plates one edit apart (as plate_comparison says) always share a deletion key', async (t) => {
  const plate = fc.array(fc.constantFrom('A', 'B', 'O', '0', '1', 'I', '8', 'S', '5'), { minLength: 2, maxLength: 8 }).map((a) => a.join(''));
  await fc.assert(
    fc.asyncProperty(fc.array(fc.tuple(plate, fc.nat(7), fc.constantFrom('sub', 'del', 'ins', 'swap'), fc.constantFrom('A', '0', 'Z')), { minLength: 1, maxLength: 50 }),
      async (cases) => {
        const pairs = cases.map(([p, i, op, ch]) => {
          const k = i % p.length;
          const q = op === 'sub' ? p.slice(0, k) + ch + p.slice(k + 1)
            : op === 'del' ? p.slice(0, k) + p.slice(k + 1)
              : op === 'ins' ? p.slice(0, k) + ch + p.slice(k)
                : k + 1 < p.length ? p.slice(0, k) + p[k + 1] + p[k] + p.slice(k + 2) : p;
          return [p, q] as [string, string];
        });
        const rows = await db.query<{ level: string; shares: boolean; shares_hash: boolean }>(
          `SELECT (canon.plate_comparison(a, b)).level, canon.plate_edit_keys(a) && canon.plate_edit_keys(b) AS shares,
                  canon.plate_edit_hashes(a) && canon.plate_edit_hashes(b) AS shares_hash
           FROM unnest($1::text[], $2::text[]) AS u(a, b)`, [pairs.map((p) => p[0]), pairs.map((p) => p[1])]);
        return rows.every((r) => (r.level === 'DIFFERENT' || r.shares) && (!r.shares || r.shares_hash));
      }),
    { numRuns: 30 },
  );
  t.pass();
});

test('the indexed forms are the keys hashed: canon.plate_edit_hashes and canon.name_phonetic_hashes, key for key', async (t) => {
  const rows = await db.query<{ what: string; same: boolean }>(
    `SELECT 'plate ' || p AS what,
            canon.plate_edit_hashes(p) = ARRAY(SELECT hashtextextended(k, 0) FROM unnest(canon.plate_edit_keys(p)) WITH ORDINALITY AS u(k, i) ORDER BY i) AS same
     FROM unnest(ARRAY['ABC123', 'A', 'AB', 'ÑOÑO99', '']) p
     UNION ALL
     SELECT 'name ' || n, canon.name_phonetic_hashes(n)::text = ARRAY(SELECT DISTINCT hashtextextended(k, 0) FROM unnest(canon.name_phonetic_keys(n)) k ORDER BY 1)::text
     FROM unnest(ARRAY['JUAN CARLOS QUISPE MAMANI', 'LI WU', 'VICTOR BASQUEZ', '']) n`);
  t.is(rows.length, 9);
  for (const r of rows) t.true(r.same, r.what);
});
