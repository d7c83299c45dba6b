// canon.name_field_tokens: the tokens of one name field, split as canon.normalize_name
// splits a name, so that "was this name token typed in first_name or in last_name?" is a
// plain membership test for the relatives veto.
import test from 'ava';
import fc from 'fast-check';
import { createTestDb, type TestDb } from '../helpers/db.js';

let db: TestDb;
test.before(async () => {
  db = await createTestDb('name_field_tokens');
});
test.after.always(() => db.drop());

test('splits a field into upper-case unaccented tokens, in order, particles and repeats kept', async (t) => {
  const rows = await db.query<{ v: string[] | null }>(
    `SELECT canon.name_field_tokens(x) AS v FROM unnest($1::text[]) WITH ORDINALITY u(x, i) ORDER BY i`,
    // (not 'º': whether unaccent makes it an O depends on the server's version)
    [["María  de la  Cruz", 'Peña-Núñez', "O'Brien", 'Juan Juan', 'Ñandú 2.']],
  );
  t.deepEqual(rows.map((r) => r.v), [['MARIA', 'DE', 'LA', 'CRUZ'], ['PENA', 'NUNEZ'], ['O', 'BRIEN'], ['JUAN', 'JUAN'], ['NANDU', '2']]);
});

test('is NULL for NULL, blank, emoji and other scripts; never raises on 10 kB', async (t) => {
  const rows = await db.query<{ v: string[] | null }>(
    `SELECT canon.name_field_tokens(x) AS v FROM unnest($1::text[]) WITH ORDINALITY u(x, i) ORDER BY i`,
    [[null, '', '   ', '😀😀', '王小明', '--', 'x'.repeat(10_000)]],
  );
  t.deepEqual(rows.slice(0, 6).map((r) => r.v), [null, null, null, null, null, null]);
  t.is(rows[6]!.v![0]!.length, 200, 'only the first 200 characters count, as for canon.normalize_name');
});

test('holds every token canon.name_tokens finds in the same field (property)', async (t) => {
  const field = fc.oneof(
    fc.array(fc.constantFrom('Juan', 'José', 'de la', 'Peña-Núñez', "O'Brien", 'Y', '😀', 'Иван', '2'), { maxLength: 5 }).map((x) => x.join(' ')),
    fc.string({ unit: 'grapheme', maxLength: 40 }),
  );
  await fc.assert(
    fc.asyncProperty(fc.array(field, { minLength: 1, maxLength: 200 }), async (fields) => {
      const rows = await db.query<{ ok: boolean }>(
        `SELECT coalesce(canon.name_tokens(x) <@ canon.name_field_tokens(x), canon.name_tokens(x) IS NULL) AS ok
         FROM unnest($1::text[]) AS u(x)`,
        [fields],
      );
      return rows.every((r) => r.ok);
    }),
    { numRuns: 30 },
  );
  t.pass();
});
