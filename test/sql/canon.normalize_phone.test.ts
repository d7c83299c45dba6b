import test from 'ava';
import fc from 'fast-check';
import { createTestDb, type TestDb } from '../helpers/db.js';

let db: TestDb;
test.before(async () => {
  db = await createTestDb('normalize_phone');
});
test.after.always(() => db.drop());

/** canon.normalize_phone of each input, in order, in one query. */
async function phones(inputs: (string | null)[]): Promise<(string | null)[]> {
  const rows = await db.query<{ v: string | null }>(
    `SELECT canon.normalize_phone(x) AS v FROM unnest($1::text[]) WITH ORDINALITY AS u(x, i) ORDER BY i`,
    [inputs],
  );
  return rows.map((r) => r.v);
}

// PostgreSQL text cannot hold NUL: that is the client's limit, not the function's.
const noNul = (s: string) => s.replaceAll('\u0000', '');
const phoneLike = fc
  .array(fc.constantFrom('0', '1', '5', '9', '7', '00', '51', '+51', ' ', '-', '(', ')', '.', '+', 'x', '９', '٣'), { maxLength: 24 })
  .map((parts) => parts.join(''));
const anyText = fc.oneof(
  phoneLike,
  fc.string({ unit: 'binary', maxLength: 40 }).map(noNul),
  fc.string({ unit: 'grapheme', maxLength: 30 }),
  fc.stringMatching(/^[0-9]{1,20}$/),
);
const batch = fc.array(fc.option(anyText, { nil: null }), { minLength: 1, maxLength: 200 });

test('strips the 51 country code from 11-digit numbers', async (t) => {
  t.deepEqual(await phones(['51977456321', '+51 977 456 321', '+51-977-456-321']), ['977456321', '977456321', '977456321']);
});

test('keeps digits only: spaces, dashes, dots and brackets go', async (t) => {
  t.deepEqual(await phones(['977-456-321', '977 456 321', '977.456.321', '(01) 456-7890']), [
    '977456321',
    '977456321',
    '977456321',
    '14567890',
  ]);
});

test('strips leading zeros, the 00 international prefix included', async (t) => {
  t.deepEqual(await phones(['0051977456321', '00 51 977 456 321', '0034 612 345 678', '014567890']), [
    '977456321',
    '977456321',
    '34612345678',
    '14567890',
  ]);
});

test('strips a trunk zero written after the country code', async (t) => {
  t.deepEqual(await phones(['+51 (01) 456-7890', '0051014567890']), ['14567890', '14567890']);
});

test('keeps a leading 51 when the number does not have 11 digits', async (t) => {
  t.deepEqual(await phones(['519774563', '5114567890', '519774563210']), ['519774563', '5114567890', '519774563210']);
});

test('returns NULL for fewer than 7 digits', async (t) => {
  t.deepEqual(await phones(['123456', '+51 1234', '000001234', '51000001234']), [null, null, null, null]);
});

test('returns NULL for all-same-digit numbers', async (t) => {
  t.deepEqual(await phones(['999999999', '999-999-999', '51999999999', '1111111', '000-000-0000']), [null, null, null, null, null]);
});

test('returns NULL for more than 15 digits, 10 kB strings included', async (t) => {
  t.deepEqual(await phones(['1234567890123456', '977456321'.repeat(2), '9774563210'.repeat(1024)]), [null, null, null]);
  t.deepEqual(await phones(['123456789012345']), ['123456789012345']);
});

test('returns NULL for NULL, empty, blank and digit-free text', async (t) => {
  t.deepEqual(await phones([null, '', '   ', '\t\n', 'sin telefono', '📞', 'тел', '电话', "'; DROP TABLE drivers; --"]), [
    null, null, null, null, null, null, null, null, null,
  ]);
});

test('finds the number among emoji, other scripts and SQL-looking text', async (t) => {
  t.deepEqual(
    await phones(['📞 977 456 321 📱', 'тел. 977456321', '电话 977-456-321', "977456321'; DROP TABLE drivers; --", 'cel: 977456321 (whatsapp)']),
    ['977456321', '977456321', '977456321', '977456321', '977456321'],
  );
});

test('counts ASCII digits only (full-width and Arabic-Indic digits are not digits here)', async (t) => {
  t.deepEqual(await phones(['９７７４５６３２１', '٩٧٧٤٥٦٣٢١']), [null, null]);
});

test('is idempotent and never raises (property)', async (t) => {
  await fc.assert(
    fc.asyncProperty(batch, async (xs) => {
      const rows = await db.query<{ x: string | null }>(
        `SELECT x FROM unnest($1::text[]) AS x
         WHERE canon.normalize_phone(canon.normalize_phone(x)) IS DISTINCT FROM canon.normalize_phone(x)`,
        [xs],
      );
      return rows.length === 0;
    }),
    { numRuns: 40 },
  );
  t.pass();
});

test('returns NULL or 7 to 15 ASCII digits without a leading zero (property)', async (t) => {
  await fc.assert(
    fc.asyncProperty(batch, async (xs) => {
      const out = await phones(xs);
      return out.every((v) => v === null || (/^[1-9][0-9]{6,14}$/.test(v) && !/^(.)\1*$/.test(v)));
    }),
    { numRuns: 40 },
  );
  t.pass();
});
