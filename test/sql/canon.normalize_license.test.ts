import test from 'ava';
import fc from 'fast-check';
import { createTestDb, type TestDb } from '../helpers/db.js';

let db: TestDb;
test.before(async () => {
  db = await createTestDb('normalize_license');
});
test.after.always(() => db.drop());

/** canon.normalize_license of each input, in order, in one query. */
async function licenses(inputs: (string | null)[]): Promise<(string | null)[]> {
  const rows = await db.query<{ v: string | null }>(
    `SELECT canon.normalize_license(x) AS v FROM unnest($1::text[]) WITH ORDINALITY AS u(x, i) ORDER BY i`,
    [inputs],
  );
  return rows.map((r) => r.v);
}

// PostgreSQL text cannot hold NUL: that is the client's limit, not the function's.
const noNul = (s: string) => s.replaceAll('\u0000', '');
const licenseLike = fc
  .array(fc.constantFrom('q', 'Q', 'b', 'ñ', '1', '4', '0', '9', '-', ' ', '.', '/', '🚗', 'Ж', '証'), { maxLength: 26 })
  .map((parts) => parts.join(''));
const anyText = fc.oneof(licenseLike, fc.string({ unit: 'binary', maxLength: 30 }).map(noNul), fc.string({ unit: 'grapheme', maxLength: 20 }));
const batch = fc.array(fc.option(anyText, { nil: null }), { minLength: 1, maxLength: 200 });

test('upper-cases before filtering, so lowercase letters are kept', async (t) => {
  t.deepEqual(await licenses(['q45678901', 'abc-123 x', 'b-12345678']), ['Q45678901', 'ABC123X', 'B12345678']);
});

test('drops spaces, hyphens and other punctuation', async (t) => {
  t.deepEqual(await licenses(['Q-4567 8901', ' q.4567/8901 ', 'A1B 234']), ['Q45678901', 'Q45678901', 'A1B234']);
});

test('drops accented letters, other scripts and emoji rather than guessing', async (t) => {
  t.deepEqual(await licenses(['Q45678901 🚗', 'Ж Q45678901', '証 Q-45678901', 'ñQ45678901']), [
    'Q45678901',
    'Q45678901',
    'Q45678901',
    'Q45678901',
  ]);
});

test('returns NULL for NULL, empty, blank and punctuation-only input', async (t) => {
  t.deepEqual(await licenses([null, '', '   ', '\n', '-/-', '🚗']), [null, null, null, null, null, null]);
});

test('returns NULL for placeholders without a digit', async (t) => {
  t.deepEqual(await licenses(['NO TIENE', 'en tramite', 'PENDIENTE', 'N/A']), [null, null, null, null]);
});

test('returns NULL for one character repeated', async (t) => {
  t.deepEqual(await licenses(['00000000', '1-1-1-1-1', 'QQQQQQQQ']), [null, null, null]);
});

test('returns NULL for fewer than 5 or more than 20 characters, 10 kB strings included', async (t) => {
  t.deepEqual(await licenses(['Q123', '123456789012345678901', 'Q45678901 '.repeat(1024)]), [null, null, null]);
  t.deepEqual(await licenses(['Q1234', '12345678901234567890']), ['Q1234', '12345678901234567890']);
});

test('treats SQL-looking text as plain text', async (t) => {
  t.deepEqual(await licenses(["Q45678901'; DROP TABLE x; --", "q-4567'--", "'; DELETE FROM drivers; --"]), [
    'Q45678901DROPTABLEX',
    'Q4567',
    null,
  ]);
});

test('is idempotent and never raises (property)', async (t) => {
  await fc.assert(
    fc.asyncProperty(batch, async (xs) => {
      const rows = await db.query<{ x: string | null }>(
        `SELECT x FROM unnest($1::text[]) AS x
         WHERE canon.normalize_license(canon.normalize_license(x)) IS DISTINCT FROM canon.normalize_license(x)`,
        [xs],
      );
      return rows.length === 0;
    }),
    { numRuns: 40 },
  );
  t.pass();
});

test('returns NULL or 5 to 20 of A-Z0-9 with a digit (property)', async (t) => {
  await fc.assert(
    fc.asyncProperty(batch, async (xs) => {
      const out = await licenses(xs);
      return out.every((v) => v === null || (/^[A-Z0-9]{5,20}$/.test(v) && /[0-9]/.test(v) && !/^(.)\1*$/.test(v)));
    }),
    { numRuns: 40 },
  );
  t.pass();
});
