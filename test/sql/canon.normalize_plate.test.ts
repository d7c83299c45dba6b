import test from 'ava';
import fc from 'fast-check';
import { createTestDb, type TestDb } from '../helpers/db.js';

let db: TestDb;
test.before(async () => {
  db = await createTestDb('normalize_plate');
});
test.after.always(() => db.drop());

/** canon.normalize_plate of each input, in order, in one query. */
async function plates(inputs: (string | null)[]): Promise<(string | null)[]> {
  const rows = await db.query<{ v: string | null }>(
    `SELECT canon.normalize_plate(x) AS v FROM unnest($1::text[]) WITH ORDINALITY AS u(x, i) ORDER BY i`,
    [inputs],
  );
  return rows.map((r) => r.v);
}

// PostgreSQL text cannot hold NUL: that is the client's limit, not the function's.
const noNul = (s: string) => s.replaceAll('\u0000', '');
const plateLike = fc
  .array(fc.constantFrom('a', 'B', 'c', 'X', 'ñ', 'ß', 'İ', '1', '2', '0', '-', ' ', '.', '·', '🚕', 'А', '京'), { maxLength: 16 })
  .map((parts) => parts.join(''));
const anyText = fc.oneof(plateLike, fc.string({ unit: 'binary', maxLength: 30 }).map(noNul), fc.string({ unit: 'grapheme', maxLength: 20 }));
const batch = fc.array(fc.option(anyText, { nil: null }), { minLength: 1, maxLength: 200 });

test('upper-cases before filtering, so lowercase plates keep their letters', async (t) => {
  t.deepEqual(await plates(['abc-123 x', 'abc-123', 'aBc123']), ['ABC123X', 'ABC123', 'ABC123']);
});

test('drops spaces, hyphens and other punctuation', async (t) => {
  t.deepEqual(await plates(['A1B 234', ' a.b-c_1/2 3 ', 'ABC–123']), ['A1B234', 'ABC123', 'ABC123']);
});

test('drops accented letters, other scripts and emoji rather than guessing', async (t) => {
  t.deepEqual(await plates(['ABC-123 🚕', '京A·12345', 'ÑAB-123', 'АВС-1234']), ['ABC123', 'A12345', 'AB123', '1234']);
});

test('returns NULL for NULL, empty, blank and punctuation-only input', async (t) => {
  t.deepEqual(await plates([null, '', '   ', '\t', '---', '🚕🚕', '京']), [null, null, null, null, null, null, null]);
});

test('returns NULL for placeholders without a digit', async (t) => {
  t.deepEqual(await plates(['SIN PLACA', 'no tiene', 'PENDIENTE', 'N/A']), [null, null, null, null]);
});

test('returns NULL for one character repeated', async (t) => {
  t.deepEqual(await plates(['000-000', '1111', 'xxx-xxx']), [null, null, null]);
});

test('returns NULL for fewer than 4 or more than 12 characters, 10 kB strings included', async (t) => {
  t.deepEqual(await plates(['A1', 'AB1', 'ABC1234567890', 'ABC-123'.repeat(1500)]), [null, null, null, null]);
  t.deepEqual(await plates(['AB12', 'ABC123456789']), ['AB12', 'ABC123456789']);
});

test('treats SQL-looking text as plain text', async (t) => {
  t.deepEqual(await plates(["ab1'; DROP TABLE x; --", "abc-123' OR '1'='1"]), [null, 'ABC123OR11']);
  t.deepEqual(await plates(["ab-12'--"]), ['AB12']);
});

test('is idempotent and never raises (property)', async (t) => {
  await fc.assert(
    fc.asyncProperty(batch, async (xs) => {
      const rows = await db.query<{ x: string | null }>(
        `SELECT x FROM unnest($1::text[]) AS x
         WHERE canon.normalize_plate(canon.normalize_plate(x)) IS DISTINCT FROM canon.normalize_plate(x)`,
        [xs],
      );
      return rows.length === 0;
    }),
    { numRuns: 40 },
  );
  t.pass();
});

test('returns NULL or 4 to 12 of A-Z0-9 with a digit (property)', async (t) => {
  await fc.assert(
    fc.asyncProperty(batch, async (xs) => {
      const out = await plates(xs);
      return out.every((v) => v === null || (/^[A-Z0-9]{4,12}$/.test(v) && /[0-9]/.test(v) && !/^(.)\1*$/.test(v)));
    }),
    { numRuns: 40 },
  );
  t.pass();
});
