import { readFileSync } from 'node:fs';
import test from 'ava';
import fc from 'fast-check';
import type pg from 'pg';
import { generateDemoData } from '../../src/demo.js';
import { createLogger } from '../../src/logger.js';
import { createTestDb, type TestDb } from '../helpers/db.js';

let db: TestDb;
test.before(async () => {
  db = await createTestDb('normalize_name');
});
test.after.always(() => db.drop());

/** canon.normalize_name of each input, in order, in one query. */
async function names(inputs: (string | null)[]): Promise<(string | null)[]> {
  const rows = await db.query<{ v: string | null }>(
    `SELECT canon.normalize_name(x) AS v FROM unnest($1::text[]) WITH ORDINALITY AS u(x, i) ORDER BY i`,
    [inputs],
  );
  return rows.map((r) => r.v);
}

const PARTICLES = new Set(['DE', 'DEL', 'LA', 'LOS', 'LAS', 'EL', 'Y', 'E']);
// PostgreSQL text cannot hold NUL: that is the client's limit, not the function's.
const noNul = (s: string) => s.replaceAll('\u0000', '');
const namePart = fc.constantFrom(
  'María', 'JOSÉ', 'luis', 'Peña', 'NÚÑEZ', 'de', 'la', 'DEL', 'los', 'y', 'E', 'Ñañez', 'O\'Brien', 'Jean-Luc',
  'Müller', 'ß', 'Æsa', 'Иван', '王', '😀', '👨‍👩‍👧', 'x', '2', '10º', "'; DROP TABLE drivers; --", 'e\u0301', 'İ', 'ı',
);
const separator = fc.constantFrom(' ', '  ', '-', ', ', '.', '\t', '\n', '/', '_', '');
const nameLike = fc
  .array(fc.tuple(namePart, separator), { maxLength: 10 })
  .map((parts) => parts.map(([p, s]) => p + s).join(''));
const anyText = fc.oneof(
  nameLike,
  fc.string({ unit: 'binary', maxLength: 40 }).map(noNul),
  fc.string({ unit: 'grapheme', maxLength: 30 }),
  fc.string({ unit: 'grapheme-ascii', maxLength: 30 }),
);
const batch = fc.array(fc.option(anyText, { nil: null }), { minLength: 1, maxLength: 200 });

test('removes accents and turns hyphens into spaces: PEÑA-NÚÑEZ gives NUNEZ PENA', async (t) => {
  t.deepEqual(await names(['PEÑA-NÚÑEZ', 'peña-núñez', 'Ñañez Güemes']), ['NUNEZ PENA', 'NUNEZ PENA', 'GUEMES NANEZ']);
});

test('drops particles and collapses spaces: María  de la  Cruz gives CRUZ MARIA', async (t) => {
  t.deepEqual(await names(['María  de la  Cruz', ' MARIA DE LA CRUZ ', 'maría\tde\nla cruz']), ['CRUZ MARIA', 'CRUZ MARIA', 'CRUZ MARIA']);
});

test('drops every particle: DE DEL LA LOS LAS EL Y E', async (t) => {
  t.deepEqual(await names(['Juan de los Santos y del Río e Hijos, las el la']), ['HIJOS JUAN RIO SANTOS']);
  t.deepEqual(await names(['de la', 'Y', 'e']), [null, null, null]);
});

test('returns the same token set whatever the order, case and punctuation', async (t) => {
  const out = await names(['Pérez Gómez, Juan Carlos', 'juan carlos PEREZ gomez', 'GOMEZ-PEREZ JUAN.CARLOS']);
  t.deepEqual(out, ['CARLOS GOMEZ JUAN PEREZ', 'CARLOS GOMEZ JUAN PEREZ', 'CARLOS GOMEZ JUAN PEREZ']);
});

test('de-duplicates repeated tokens', async (t) => {
  t.deepEqual(await names(['Juan Juan PEREZ perez Pérez']), ['JUAN PEREZ']);
});

test('treats apostrophes, dots and commas as separators', async (t) => {
  t.deepEqual(await names(["O'Brien-Smith, J.", 'D’Angelo']), ['BRIEN J O SMITH', 'ANGELO D']);
});

test('handles decomposed accents and letters that unaccent expands', async (t) => {
  t.deepEqual(await names(['Jose\u0301 Nun\u0303ez', 'Straße', 'Æsa Œuvre']), ['JOSE NUNEZ', 'STRASSE', 'AESA OEUVRE']);
});

test('removes emoji, Cyrillic and Chinese characters', async (t) => {
  t.deepEqual(await names(['José 😀 Luis', 'Иван Petrov', '王小明 Wang', '王小明', 'Иван Иванов', '😀👍', 'Ana 👨‍👩‍👧']), [
    'JOSE LUIS',
    'PETROV',
    'WANG',
    null,
    null,
    null,
    'ANA',
  ]);
});

test('drops tokens without a letter', async (t) => {
  t.deepEqual(await names(['Juan 2 Pérez 123', '12345', '977 456 321', 'Luis XIV 3ro']), ['JUAN PEREZ', null, null, '3RO LUIS XIV']);
});

test('works on names built from parts that are missing', async (t) => {
  const rows = await db.query<{ v: string | null }>(
    `SELECT canon.normalize_name(concat_ws(' ', f, m, l)) AS v
     FROM (VALUES (1, 'Juan', NULL, 'Pérez'), (2, NULL, NULL, 'PEREZ'), (3, '', '  ', 'juan'), (4, NULL, NULL, NULL)) AS v(i, f, m, l)
     ORDER BY i`,
  );
  t.deepEqual(rows.map((r) => r.v), ['JUAN PEREZ', 'PEREZ', 'JUAN', null]);
});

test('returns NULL for NULL, empty, blank and punctuation-only input', async (t) => {
  t.deepEqual(await names([null, '', '   ', '\t\n', '-.-', "'"]), [null, null, null, null, null, null]);
});

test('treats SQL-looking text as plain text', async (t) => {
  t.deepEqual(await names(["Robert'); DROP TABLE drivers;--", "' OR 1=1 --"]), ['DRIVERS DROP ROBERT TABLE', 'OR']);
});

test('reads only the first 200 characters, so 10 kB strings cost what a name costs', async (t) => {
  const long = 'Ana Peña  '.repeat(1000); // 10 characters a repeat: no token is cut at 200
  const unbroken = 'x'.repeat(10_000);
  t.deepEqual(await names([long, `Ana ${unbroken}`, `${'ß'.repeat(150)} Ana`]), ['ANA PENA', `ANA ${'X'.repeat(196)}`, 'S'.repeat(200)]);
  const started = Date.now();
  const [row] = await db.query<{ n: string }>(
    `SELECT count(canon.normalize_name(repeat(md5(i::text) || ' Peña ', 250)))::text AS n FROM generate_series(1, 2000) AS i`,
  );
  const ms = Date.now() - started;
  t.is(row?.n, '2000');
  t.true(ms < 5000, `2000 names of 10 kB took ${ms} ms`);
});

test('returns sorted, distinct, particle-free A-Z0-9 tokens with a letter (property)', async (t) => {
  await fc.assert(
    fc.asyncProperty(batch, async (xs) => {
      const out = await names(xs);
      return out.every((v) => {
        if (v === null) return true;
        const tokens = v.split(' ');
        const sorted = [...new Set(tokens)].sort();
        return (
          v.length <= 200 &&
          tokens.every((tok) => /^[A-Z0-9]*[A-Z][A-Z0-9]*$/.test(tok) && !PARTICLES.has(tok)) &&
          sorted.join(' ') === v
        );
      });
    }),
    { numRuns: 40 },
  );
  t.pass();
});

test('is idempotent and never raises (property)', async (t) => {
  await fc.assert(
    fc.asyncProperty(batch, async (xs) => {
      const rows = await db.query<{ x: string | null }>(
        `SELECT x FROM unnest($1::text[]) AS x
         WHERE canon.normalize_name(canon.normalize_name(x)) IS DISTINCT FROM canon.normalize_name(x)`,
        [xs],
      );
      return rows.length === 0;
    }),
    { numRuns: 40 },
  );
  t.pass();
});

test('is idempotent on names longer than 200 characters (property)', async (t) => {
  const longName = fc.array(fc.tuple(namePart, separator), { minLength: 30, maxLength: 80 }).map((parts) => parts.map(([p, s]) => p + s).join(''));
  await fc.assert(
    fc.asyncProperty(fc.array(longName, { minLength: 1, maxLength: 50 }), async (xs) => {
      const rows = await db.query<{ x: string }>(
        `SELECT x FROM unnest($1::text[]) AS x
         WHERE canon.normalize_name(canon.normalize_name(x)) IS DISTINCT FROM canon.normalize_name(x)`,
        [xs],
      );
      return rows.length === 0;
    }),
    { numRuns: 30 },
  );
  t.pass();
});

// The SQL definition the PL/pgSQL one replaced (an aggregate over regexp_split_to_table):
// the reference the current function must agree with, value for value.
const PREVIOUS_DEFINITION = `
  CREATE FUNCTION pg_temp.normalize_name_previous(p_name text) RETURNS text
  LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT pg_catalog.string_agg(DISTINCT token, ' ' ORDER BY token)
    FROM pg_catalog.regexp_split_to_table(
           pg_catalog.upper(
             pg_catalog.left(public.unaccent('public.unaccent'::regdictionary, pg_catalog.left(p_name, 200)), 200)
             COLLATE "C"),
           '[^A-Z0-9]+') AS token
    WHERE token ~ '[A-Z]'
      AND token NOT IN ('DE', 'DEL', 'LA', 'LOS', 'LAS', 'EL', 'Y', 'E')
  $$`;

/** Values whose normal form differs from the previous definition's (none expected). */
async function differing(c: pg.Client, fromSql: string, params: unknown[] = []): Promise<{ values: number; differ: (string | null)[] }> {
  const { rows: [r] } = await c.query<{ values: number; differ: (string | null)[] }>(
    `SELECT count(*)::int AS values,
            coalesce(array_agg(v) FILTER (WHERE canon.normalize_name(v) IS DISTINCT FROM pg_temp.normalize_name_previous(v)), '{}') AS differ
     FROM (${fromSql}) s (v)`,
    params,
  );
  return r!;
}

test('gives what the previous SQL definition gave on generated drivers and leads, the public name data and random text', async (t) => {
  t.timeout(180_000);
  const c = await db.connect();
  await c.query(PREVIOUS_DEFINITION);
  // the demo generator's drivers and leads (accents, particles, hostile values)
  await generateDemoData(c, { seed: 11, leads: 2000, drivers: 5000, tripDays: 30, reset: false }, createLogger({ logLevel: 'silent', logFormat: 'json' }));
  const generated = await differing(c, `
    SELECT unnest(ARRAY[full_name, first_name, middle_name, last_name, concat_ws(' ', first_name, middle_name, last_name), car_number]) FROM public.drivers
    UNION ALL
    SELECT unnest(ARRAY[first_name, middle_name, last_name, concat_ws(' ', first_name, middle_name, last_name), asset_plate_number]) FROM public.module_ct_cabinet_leads`);
  t.true(generated.values > 30_000);
  t.deepEqual(generated.differ, []);
  // third-party names with ground truth (../shared/eval/data): every field of every row,
  // many languages and scripts (Splink's historical figures), typos and swaps (FEBRL)
  const fields = ['splink/historical_figures_with_errors_50k.csv', 'splink/fake_1000.csv', 'febrl/febrl_dataset3.csv', 'febrl/febrl_dataset4b.csv']
    .flatMap((file) => readFileSync(new URL(`../../../shared/eval/data/${file}`, import.meta.url), 'utf8').split(/\r?\n/).slice(1))
    .flatMap((line) => [line, ...line.split(',')]);
  const published = await differing(c, 'SELECT unnest($1::text[])', [fields]);
  t.true(published.values > 500_000);
  t.deepEqual(published.differ, []);
  // random code points: ASCII, Latin-1 and Latin Extended (unaccent's rules), anything below U+D800
  const random = await differing(c, `
    SELECT string_agg(chr(CASE WHEN r < 0.5 THEN 32 + (hashint4(g) & 127) % 95
                               WHEN r < 0.85 THEN 160 + (hashint4(g * 7) & 1023) % 400
                               ELSE 1 + (hashint4(g * 13) & 65535) % 55000 END), '' ORDER BY g)
    FROM (SELECT g, (hashint4(g * 31) & 1023) / 1024.0 AS r FROM generate_series(1, 400000) g) x
    GROUP BY g % 20000`);
  t.is(random.values, 20_000);
  t.deepEqual(random.differ, []);
  await c.end();
});

test('gives what the previous SQL definition gave on arbitrary strings (property)', async (t) => {
  const c = await db.connect();
  await c.query(PREVIOUS_DEFINITION);
  await fc.assert(
    fc.asyncProperty(batch, async (xs) => {
      const { rows } = await c.query(
        `SELECT x FROM unnest($1::text[]) AS x WHERE canon.normalize_name(x) IS DISTINCT FROM pg_temp.normalize_name_previous(x)`,
        [xs],
      );
      return rows.length === 0;
    }),
    { numRuns: 60 },
  );
  await c.end();
  t.pass();
});
