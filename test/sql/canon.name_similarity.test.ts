import { readFileSync } from 'node:fs';
import test from 'ava';
import fc from 'fast-check';
import { createTestDb, type TestDb } from '../helpers/db.js';

let db: TestDb;
test.before(async () => {
  db = await createTestDb('name_similarity');
});
test.after.always(() => db.drop());

/** canon.name_similarity of each pair, in order, in one query, as numbers. */
async function similarities(pairs: [string | null, string | null][]): Promise<number[]> {
  const rows = await db.query<{ s: string }>(
    `SELECT canon.name_similarity(a, b) AS s
     FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(a, b, i) ORDER BY i`,
    [pairs.map((p) => p[0]), pairs.map((p) => p[1])],
  );
  return rows.map((r) => Number(r.s));
}
async function similarity(a: string | null, b: string | null): Promise<number> {
  const [s] = await similarities([[a, b]]);
  return s ?? Number.NaN;
}

// PostgreSQL text cannot hold NUL: that is the client's limit, not the function's.
const noNul = (s: string) => s.replaceAll('\u0000', '');
const given = ['Juan', 'José', 'María', 'Rosa', 'Luis', 'Carlos', 'Ana', 'Jesús', 'Milagros', 'Fernando', 'Fernanda'];
const surnames = ['Pérez', 'Gómez', 'Quispe', 'Mamani', 'Huamán', 'Núñez', 'Peña', 'Rodríguez', 'Flores', 'de la Cruz', 'Chávez'];
const token = fc.constantFrom(...given, ...surnames, 'de', 'Y', '😀', 'Иван', '王', '2', "'; DROP TABLE x; --");
const nameLike = fc.array(token, { maxLength: 6 }).map((ts) => ts.join(' '));
const anyName = fc.oneof(
  nameLike,
  fc.string({ unit: 'binary', maxLength: 30 }).map(noNul),
  fc.string({ unit: 'grapheme', maxLength: 30 }),
  fc.string({ unit: 'grapheme-ascii', maxLength: 30 }),
);
const pairBatch = fc.array(fc.tuple(fc.option(anyName, { nil: null }), fc.option(anyName, { nil: null })), {
  minLength: 1,
  maxLength: 200,
});

/** The SPEC 5 token score with exact token equality only: the floor name_similarity must reach. */
function specTokenScore(a: string[], b: string[]): number {
  if (a.length === 0 || b.length === 0) return 0;
  const shared = a.filter((x) => b.includes(x)).length;
  return (shared / (a.length + b.length - shared) + shared / Math.max(a.length, b.length)) / 2;
}

test('is 1 for the same name in another order, case or accents', async (t) => {
  const out = await similarities([
    ['Juan Carlos Pérez Gómez', 'GOMEZ PEREZ JUAN CARLOS'],
    ['María  de la  Cruz', 'CRUZ, MARIA'],
    ['PEÑA-NÚÑEZ Rosa', 'rosa pena nunez'],
  ]);
  t.deepEqual(out, [1, 1, 1]);
});

test('accepts raw and normalised names alike', async (t) => {
  const rows = await db.query<{ raw: string; norm: string; mixed: string }>(
    `SELECT canon.name_similarity(a, b) AS raw,
            canon.name_similarity(canon.normalize_name(a), canon.normalize_name(b)) AS norm,
            canon.name_similarity(a, canon.normalize_name(b)) AS mixed
     FROM (VALUES ('Juan Pérez', 'PEREZ GOMEZ JUAN CARLOS')) AS v(a, b)`,
  );
  t.deepEqual(rows, [{ raw: '0.7500', norm: '0.7500', mixed: '0.7500' }]);
});

test('counts tokens of 5+ letters one edit apart as shared', async (t) => {
  t.deepEqual(
    await similarities([
      ['Juan Gonzalez', 'JUAN GONZALES'],
      ['Milagros Quispe', 'MILAGRO QUISPE'],
      ['Rosa Huaman', 'ROSA HUAMANI'],
    ]),
    [1, 1, 1],
  );
});

test('counts two adjacent letters swapped in tokens of 5+ letters as one typo', async (t) => {
  t.deepEqual(await similarities([['Vincent Benedict', 'VINCNET BENEDICT'], ['Carlos Mamani', 'CARLOS MAMNAI']]), [1, 1]);
});

test('does not forgive typos in tokens under 5 letters', async (t) => {
  t.deepEqual(
    await similarities([
      ['José Pérez', 'JOSUE PEREZ'],
      ['Luis Pérez', 'LUIZ PEREZ'],
      ['Ana Pérez', 'ANNA PEREZ'],
    ]),
    [0.4167, 0.4167, 0.4167],
  );
});

test('does not count two edits as one typo', async (t) => {
  t.deepEqual(await similarities([['Juan Gonzalez', 'JUAN GONSALES'], ['Juan Rodriguez', 'JUAN RODRIGEUS']]), [0.4167, 0.4167]);
});

test('scores a first name and surname found in a four-part name above the 0.66 threshold', async (t) => {
  t.deepEqual(await similarities([['Juan Pérez', 'PEREZ GOMEZ JUAN CARLOS'], ['Juan Carlos Pérez', 'PEREZ GOMEZ JUAN CARLOS']]), [0.75, 0.875]);
});

test('scores relatives sharing one of two tokens below the threshold', async (t) => {
  t.deepEqual(await similarities([['Juan Pérez', 'JUAN GOMEZ'], ['María Quispe', 'ROSA QUISPE']]), [0.4167, 0.4167]);
  t.true((await similarity('Juan Pérez Gómez', 'ROSA PEREZ GOMEZ')) < 0.66);
});

test('scores a single shared token below the threshold', async (t) => {
  t.deepEqual(await similarities([['Juan', 'JUAN PEREZ'], ['Pérez', 'JUAN PEREZ GOMEZ']]), [0.5, 0.3333]);
});

test('is 0 for different names', async (t) => {
  t.deepEqual(await similarities([['Juan Pérez', 'ROSA QUISPE']]), [0]);
});

test('is 0 when either name is NULL, empty or has no token', async (t) => {
  t.deepEqual(
    await similarities([
      [null, 'Juan Pérez'],
      ['Juan Pérez', null],
      [null, null],
      ['', ''],
      ['   ', 'Juan'],
      ['😀😀', '😀😀'],
      ['王小明', '王小明'],
      ['Иван Иванов', 'Иван Иванов'],
      ['de la', 'Juan de la Cruz'],
    ]),
    [0, 0, 0, 0, 0, 0, 0, 0, 0],
  );
});

test('ignores emoji, other scripts and numbers around a name', async (t) => {
  t.deepEqual(await similarities([['Juan Pérez 😀', 'Иван JUAN PEREZ 王 2']]), [1]);
});

test('treats SQL-looking text as plain text', async (t) => {
  t.deepEqual(await similarities([["Juan'); DROP TABLE drivers;--", 'juan drop table drivers']]), [1]);
});

test("never raises on tokens longer than levenshtein's 255 characters, nor on 10 kB strings", async (t) => {
  const out = await similarities([
    ['a'.repeat(300), `${'a'.repeat(299)}b`],
    ['Juan '.repeat(2000), 'Juan'],
    [`${'x'.repeat(10_000)} Juan`, `${'x'.repeat(9_999)}y Juan`],
    ['Ana Peña '.repeat(1200), 'Ana Peña '.repeat(1100)],
  ]);
  t.true(out.every((s) => s >= 0 && s <= 1), JSON.stringify(out));
});

test('handles 10 kB names and many tokens quickly', async (t) => {
  const started = Date.now();
  const [row] = await db.query<{ n: string }>(
    `SELECT count(canon.name_similarity(repeat(md5(i::text) || ' Peña ', 250), repeat(md5((i + 1)::text) || ' a1 b2 c3 ', 250)))::text AS n
     FROM generate_series(1, 2000) AS i`,
  );
  const ms = Date.now() - started;
  t.is(row?.n, '2000');
  t.true(ms < 10_000, `2000 pairs of 10 kB names took ${ms} ms`);
});

test('is symmetric, within 0..1 and never raises (property)', async (t) => {
  await fc.assert(
    fc.asyncProperty(pairBatch, async (pairs) => {
      const rows = await db.query<{ ab: string; ba: string }>(
        `SELECT canon.name_similarity(a, b) AS ab, canon.name_similarity(b, a) AS ba
         FROM unnest($1::text[], $2::text[]) AS u(a, b)`,
        [pairs.map((p) => p[0]), pairs.map((p) => p[1])],
      );
      return rows.every((r) => r.ab === r.ba && Number(r.ab) >= 0 && Number(r.ab) <= 1);
    }),
    { numRuns: 40 },
  );
  t.pass();
});

test('is 1 for a name and its reordered, re-cased, re-accented variant (property)', async (t) => {
  const stripAccents = (s: string) => s.normalize('NFD').replace(/\p{M}/gu, '');
  const variantPair = fc
    .array(fc.constantFrom(...given, ...surnames), { minLength: 1, maxLength: 5 })
    .chain((ts) =>
      fc.tuple(fc.constant(ts.join(' ')), fc.shuffledSubarray(ts, { minLength: ts.length, maxLength: ts.length }), fc.constantFrom('upper', 'lower', 'plain'), fc.constantFrom(' ', ' - ', ', ', '  ')),
    )
    .map(([a, shuffled, kase, sep]) => {
      const b = stripAccents(shuffled.join(sep));
      return [a, kase === 'upper' ? b.toUpperCase() : kase === 'lower' ? b.toLowerCase() : b] as const;
    });
  await fc.assert(
    fc.asyncProperty(fc.array(variantPair, { minLength: 1, maxLength: 200 }), async (pairs) => {
      const out = await similarities(pairs.map(([a, b]) => [a, b]));
      return out.every((s) => s === 1);
    }),
    { numRuns: 30 },
  );
  t.pass();
});

test('is never below the SPEC 5 token score (property)', async (t) => {
  const tokenSets = fc.tuple(
    fc.uniqueArray(fc.constantFrom('JUAN', 'JOSE', 'MARIA', 'ROSA', 'PEREZ', 'GOMEZ', 'QUISPE', 'MAMANI', 'FLORES', 'GONZALEZ', 'GONZALES'), { minLength: 1, maxLength: 5 }),
    fc.uniqueArray(fc.constantFrom('JUAN', 'JOSE', 'MARIA', 'ROSA', 'PEREZ', 'GOMEZ', 'QUISPE', 'MAMANI', 'FLORES', 'GONZALEZ', 'GONZALES'), { minLength: 1, maxLength: 5 }),
  );
  await fc.assert(
    fc.asyncProperty(fc.array(tokenSets, { minLength: 1, maxLength: 200 }), async (pairs) => {
      const out = await similarities(pairs.map(([a, b]) => [a.join(' '), b.join(' ')]));
      return out.every((s, i) => {
        const [a, b] = pairs[i] ?? [[], []];
        return s >= Math.round(specTokenScore(a, b) * 10_000) / 10_000;
      });
    }),
    { numRuns: 30 },
  );
  t.pass();
});

// Quality on third-party data with ground truth (../../../shared/eval/data, see its README):
// FEBRL 4 (synthetic, typos and swaps; 4a originals x 4b duplicates) and Splink's fake_1000
// with its clerical pair labels. A name is built as SPEC 5 says: the parts joined by spaces.
function readCsv(relative: string): string[][] {
  const text = readFileSync(new URL(`../../../shared/eval/data/${relative}`, import.meta.url), 'utf8');
  return text
    .split(/\r?\n/)
    .slice(1)
    .filter((line) => line.trim() !== '')
    .map((line) => line.split(',').map((f) => f.trim()));
}

interface Rate {
  pairs: number;
  at_or_above: number;
  vetoed: number;
}

test('at 0.66 recalls most true pairs and rejects almost all non-pairs of the FEBRL 4 and Splink eval data', async (t) => {
  const c = await db.connect();
  await c.query(`CREATE TEMP TABLE eval_record (dataset text, rec_id text, entity text, first_name text, last_name text)`);
  const load = async (dataset: string, rows: [string, string, string, string][]) => {
    await c.query(
      `INSERT INTO eval_record
       SELECT $1, r, e, NULLIF(f, ''), NULLIF(l, '') FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) AS u(r, e, f, l)`,
      [dataset, rows.map((r) => r[0]), rows.map((r) => r[1]), rows.map((r) => r[2]), rows.map((r) => r[3])],
    );
  };
  // FEBRL: rec_id, given_name, surname, ...; the entity is N of rec-N-org / rec-N-dup-k
  const febrl = (file: string) =>
    readCsv(file).map((f) => [f[0] ?? '', (f[0] ?? '').replace(/^rec-(\d+)-.*$/, '$1'), f[1] ?? '', f[2] ?? ''] as [string, string, string, string]);
  await load('febrl4a', febrl('febrl/febrl_dataset4a.csv'));
  await load('febrl4b', febrl('febrl/febrl_dataset4b.csv'));
  // fake_1000: unique_id, first_name, surname, dob, city, email, cluster
  await load('fake', readCsv('splink/fake_1000.csv').map((f) => [f[0] ?? '', f[6] ?? '', f[1] ?? '', f[2] ?? ''] as [string, string, string, string]));
  await c.query(`CREATE TEMP TABLE eval_label (l text, r text, is_match boolean)`);
  const labels = readCsv('splink/fake_1000_labels.csv');
  await c.query(`INSERT INTO eval_label SELECT * FROM unnest($1::text[], $2::text[], $3::boolean[])`, [
    labels.map((f) => f[0]),
    labels.map((f) => f[2]),
    labels.map((f) => f[4] === '1.0'),
  ]);
  const counts = await c.query<{ n: string }>(`SELECT count(*)::text AS n FROM eval_record GROUP BY dataset ORDER BY dataset`);
  t.deepEqual(counts.rows.map((r) => r.n), ['1000', '5000', '5000'], 'eval data files are complete');

  const { rows } = await c.query<Rate & { pair_set: string }>(`
    WITH rec AS (
      SELECT *, concat_ws(' ', first_name, last_name) AS name,
             first_name IS NOT NULL AND last_name IS NOT NULL AS complete
      FROM eval_record
    ),
    febrl_true AS (          -- an original and its duplicate, both with first and last name
      SELECT o.name AS a, o.first_name AS a_first, o.last_name AS a_last, d.name AS b, d.first_name AS b_first, d.last_name AS b_last
      FROM rec o JOIN rec d ON d.dataset = 'febrl4b' AND d.entity = o.entity
      WHERE o.dataset = 'febrl4a' AND o.complete AND d.complete
      ORDER BY md5(o.rec_id) LIMIT 500
    ),
    febrl_namesakes AS (     -- different people sharing the first or the last name
      SELECT a, a_first, a_last, b, b_first, b_last FROM (
        SELECT DISTINCT ON (o.rec_id) o.rec_id, o.name AS a, o.first_name AS a_first, o.last_name AS a_last,
               d.name AS b, d.first_name AS b_first, d.last_name AS b_last
        FROM rec o JOIN rec d ON d.dataset = 'febrl4b' AND d.entity <> o.entity
          AND (d.first_name = o.first_name OR d.last_name = o.last_name)
        WHERE o.dataset = 'febrl4a' AND o.complete AND d.complete
        ORDER BY o.rec_id, md5(o.rec_id || d.rec_id)
      ) AS s
      ORDER BY md5(rec_id) LIMIT 500
    ),
    febrl_random AS (        -- different people, drawn at random
      SELECT o.name AS a, o.first_name AS a_first, o.last_name AS a_last, d.name AS b, d.first_name AS b_first, d.last_name AS b_last
      FROM (SELECT *, row_number() OVER (ORDER BY md5(rec_id)) AS k FROM rec WHERE dataset = 'febrl4a') AS o
      JOIN (SELECT *, row_number() OVER (ORDER BY md5(rec_id || 'x')) AS k FROM rec WHERE dataset = 'febrl4b') AS d
        ON d.k = o.k AND d.entity <> o.entity
      ORDER BY o.k LIMIT 500
    ),
    splink AS (              -- clerically labelled pairs, most of them look-alikes
      SELECT x.name AS a, x.first_name AS a_first, x.last_name AS a_last, y.name AS b, y.first_name AS b_first, y.last_name AS b_last,
             lb.is_match, x.complete AND y.complete AS complete
      FROM eval_label lb
      JOIN rec x ON x.dataset = 'fake' AND x.rec_id = lb.l
      JOIN rec y ON y.dataset = 'fake' AND y.rec_id = lb.r
    ),
    pairs AS (
      SELECT 'febrl_true' AS pair_set, a, a_first, a_last, b, b_first, b_last FROM febrl_true
      UNION ALL SELECT 'febrl_namesakes', a, a_first, a_last, b, b_first, b_last FROM febrl_namesakes
      UNION ALL SELECT 'febrl_random', a, a_first, a_last, b, b_first, b_last FROM febrl_random
      UNION ALL SELECT 'splink_true_complete', a, a_first, a_last, b, b_first, b_last FROM splink WHERE is_match AND complete
      UNION ALL SELECT 'splink_true_all', a, a_first, a_last, b, b_first, b_last FROM splink WHERE is_match
      UNION ALL SELECT 'splink_non_match', a, a_first, a_last, b, b_first, b_last FROM splink WHERE NOT is_match
    )
    SELECT pair_set, count(*)::int AS pairs, count(*) FILTER (WHERE canon.name_similarity(a, b) >= 0.66)::int AS at_or_above,
           -- SPEC 5 relatives veto on the pairs at or above, roles from the files' fields
           count(*) FILTER (WHERE canon.name_similarity(a, b) >= 0.66
                              AND canon.name_veto(canon.name_tokens(a), canon.name_field_tokens(a_first), canon.name_field_tokens(a_last),
                                                  canon.name_tokens(b), canon.name_field_tokens(b_first), canon.name_field_tokens(b_last),
                                                  NULL, NULL) IS NOT NULL)::int AS vetoed
    FROM pairs GROUP BY pair_set ORDER BY pair_set`);
  const rate = Object.fromEntries(rows.map((r) => [r.pair_set, r.at_or_above / r.pairs]));
  t.log(rows.map((r) => `${r.pair_set}: ${r.at_or_above}/${r.pairs} = ${(r.at_or_above / r.pairs).toFixed(3)}, vetoed ${r.vetoed}`).join('; '));

  // Measured (PostgreSQL 15 and 18 alike): FEBRL 4 true pairs 378/500 = 0.756, namesakes
  // 4/500 = 0.008, random 0/500; Splink true pairs with both names 587/947 = 0.620 (all
  // 644/2031 = 0.317: many lack a name part), labelled non-matches 0/1145. Most misses are
  // duplicates whose first or last name was replaced or has a typo in a token of < 5 letters.
  t.true((rate.febrl_true ?? 0) >= 0.7, 'FEBRL 4 recall');
  t.true((rate.febrl_namesakes ?? 1) <= 0.02, 'FEBRL 4 namesakes accepted');
  t.true((rate.febrl_random ?? 1) <= 0.005, 'FEBRL 4 random pairs accepted');
  t.true((rate.splink_true_complete ?? 0) >= 0.55, 'Splink recall, both names complete');
  t.true((rate.splink_non_match ?? 1) <= 0.01, 'Splink labelled non-matches accepted');
  // The relatives veto (SPEC 5) drops no true pair: these names have one given name and one
  // surname, so no true pair has a token on each side the other lacks. Measured over every
  // pair (FEBRL 1-3 within entities, FEBRL 4a x 4b, Splink's 2,031 labelled matches): 0 of
  // 10,010 true pairs at or above 0.66 vetoed, once two-letter fragments (VAN'T HOF /
  // VAN'WT HOF) stopped counting as names.
  for (const set of ['febrl_true', 'splink_true_all', 'splink_true_complete']) {
    t.is(rows.find((r) => r.pair_set === set)?.vetoed, 0, `${set} vetoed`);
  }
});

test('canon.token_similarity on the tokens of two normalised names equals name_similarity of the raw names (property: what the matcher compares)', async (t) => {
  await fc.assert(
    fc.asyncProperty(pairBatch, async (pairs) => {
      const rows = await db.query<{ raw: string; tokens: string; via_tokens_fn: string }>(
        `SELECT canon.name_similarity(a, b) AS raw,
                canon.token_similarity(string_to_array(canon.normalize_name(a), ' '),
                                       string_to_array(canon.normalize_name(b), ' ')) AS tokens,
                canon.token_similarity(canon.name_tokens(a), canon.name_tokens(b)) AS via_tokens_fn
         FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(a, b, i) ORDER BY i`,
        [pairs.map((p) => p[0]), pairs.map((p) => p[1])],
      );
      for (const r of rows) {
        if (r.raw !== r.tokens || r.raw !== r.via_tokens_fn) return false;
      }
      return rows.length === pairs.length;
    }),
    { numRuns: 40 },
  );
  t.is(await similarity('María José de la Cruz', 'CRUZ JOSE MARIA'), 1);
  const [r] = await db.query<{ s: string }>(`SELECT canon.token_similarity(ARRAY['CRUZ', 'MARIA'], ARRAY['CRUZ', 'MARIO']) AS s`);
  t.is(Number(r!.s), await similarity('Maria Cruz', 'Mario Cruz'));
});
