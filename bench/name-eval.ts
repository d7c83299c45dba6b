// The probabilistic tier's name comparison on third-party data with ground truth
// (../shared/eval/data, see its README), side by side with Splink's published figure:
//   npx tsx bench/name-eval.ts
// FEBRL 4: the 5,000 originals (4a) are loaded as drivers (given name, surname; no plate,
// phone or hire date), so the driver index, its phonetic-key index and the token shares
// (canon_internal.name_token_stats) are the product's own; each duplicate (4b) is compared
// with the drivers sharing a phonetic key of a token (the tier's name block, without the
// rarity limit: the eval measures the comparison, not the block), weighed with
// canon.fs_name_tokens of the active version plus the prior of a 1:1 task (1 / 5,000);
// the best candidate is the link when its probability reaches the band. Splink's FEBRL 4
// notebook compares names, date of birth, address and social security number; this is
// names only. fake_1000: Splink's 3,176 clerically labelled pairs, each weighed the same way
// (prior: 2,031 true pairs among the 499,500 pairs of 1,000 records). Probability >= 0: every
// best candidate (FEBRL) or labelled pair (fake_1000): how well the weights rank, whatever the band.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { benchArgs, benchDatabase, machine, pipeline, table, type BenchDb } from './lib.js';

const DATA = path.resolve(import.meta.dirname, '..', '..', 'shared', 'eval', 'data');
function readCsv(relative: string): string[][] {
  return readFileSync(path.join(DATA, relative), 'utf8').split(/\r?\n/).slice(1)
    .filter((l) => l.trim() !== '').map((l) => l.split(',').map((f) => f.trim()));
}

async function loadDrivers(db: BenchDb, rows: { id: string; first: string; last: string }[]): Promise<void> {
  await db.pool.query(
    `INSERT INTO public.drivers (driver_id, park_id, first_name, last_name, hire_date)
     SELECT i, canon.setting('target_park_id'), nullif(f, ''), nullif(l, ''), NULL
     FROM unnest($1::text[], $2::text[], $3::text[]) AS u(i, f, l)`,
    [rows.map((r) => r.id), rows.map((r) => r.first), rows.map((r) => r.last)]);
  await pipeline(db, `p_days_back => 30, p_limit => 0`); // builds the driver index and the token shares
}

/** The name weight (bits) of each (name, driver) pair, as the tier computes it. */
const PAIR_WEIGHT = `
  SELECT coalesce(sum(t.w), 0) AS w
  FROM canon.match_fs_versions v
  CROSS JOIN LATERAL canon.fs_name_tokens(string_to_array(canon.normalize_name(p.name), ' '), d.name_norm, v.version,
                                          (SELECT count(*) FROM canon_internal.driver_index), v.token_share_min) t
  WHERE v.active`;

async function febrl(db: BenchDb): Promise<(string | number)[][]> {
  const a = readCsv('febrl/febrl_dataset4a.csv').map((f) => ({ id: f[0]!, first: f[1]!, last: f[2]! }));
  const b = readCsv('febrl/febrl_dataset4b.csv').map((f) => ({ id: f[0]!, first: f[1]!, last: f[2]! }));
  await loadDrivers(db, a);
  await db.pool.query(`CREATE TABLE bench_b AS SELECT * FROM unnest($1::text[], $2::text[]) AS u(rec_id, name)`,
    [b.map((r) => r.id), b.map((r) => `${r.first} ${r.last}`)]);
  const res = await db.pool.query<{ band: string; links: number; correct: number; truth: number }>(`
    WITH scored AS (
      SELECT p.rec_id, d.driver_id, x.w + log(2, 1.0 / 4999) AS total
      FROM bench_b p
      JOIN canon_internal.driver_index d
        ON canon.name_phonetic_keys(d.name_norm) && canon.name_phonetic_keys(canon.normalize_name(p.name)) AND d.name_norm IS NOT NULL
      CROSS JOIN LATERAL (${PAIR_WEIGHT}) x
    ),
    best AS (
      SELECT DISTINCT ON (rec_id) rec_id, driver_id, 1 / (1 + power(2::float8, -greatest(least(total, 60), -60))) AS p
      FROM scored ORDER BY rec_id, total DESC, driver_id
    )
    SELECT band::text, count(*) FILTER (WHERE b.p >= band)::int AS links,
           count(*) FILTER (WHERE b.p >= band AND regexp_replace(b.rec_id, '^rec-(\\d+)-.*$', '\\1') = regexp_replace(b.driver_id, '^rec-(\\d+)-.*$', '\\1'))::int AS correct,
           5000 AS truth
    FROM best b CROSS JOIN unnest(ARRAY[0, 0.5, 0.999]) band
    GROUP BY band ORDER BY band`);
  return res.rows.map((r) => ['FEBRL 4 (4a x 4b, 5,000 true pairs), names only', `>= ${r.band}`, r.links,
    (r.correct / Math.max(1, r.links)).toFixed(3), (r.correct / r.truth).toFixed(3)]);
}

async function fake1000(db: BenchDb): Promise<(string | number)[][]> {
  const recs = readCsv('splink/fake_1000.csv').map((f) => ({ id: f[0]!, first: f[1]!, last: f[2]! }));
  await loadDrivers(db, recs);
  const labels = readCsv('splink/fake_1000_labels.csv');
  await db.pool.query(`CREATE TABLE bench_l AS SELECT * FROM unnest($1::text[], $2::text[], $3::boolean[]) AS u(l, r, is_match)`,
    [labels.map((f) => f[0]), labels.map((f) => f[2]), labels.map((f) => f[4] === '1.0')]);
  const res = await db.pool.query<{ band: string; links: number; correct: number; truth: number }>(`
    WITH scored AS (
      SELECT lb.is_match, 1 / (1 + power(2::float8, -greatest(least(x.w + log(2, 2031.0 / (499500 - 2031)), 60), -60))) AS p
      FROM bench_l lb
      JOIN LATERAL (SELECT concat_ws(' ', first_name, last_name) AS name FROM public.drivers WHERE driver_id = lb.l) p ON true
      JOIN canon_internal.driver_index d ON d.driver_id = lb.r
      CROSS JOIN LATERAL (${PAIR_WEIGHT}) x
    )
    SELECT band::text, count(*) FILTER (WHERE p >= band)::int AS links,
           count(*) FILTER (WHERE p >= band AND is_match)::int AS correct,
           count(*) FILTER (WHERE is_match)::int AS truth
    FROM scored CROSS JOIN unnest(ARRAY[0, 0.5, 0.999]) band GROUP BY band ORDER BY band`);
  return res.rows.map((r) => ['fake_1000 labelled pairs (2,031 true, 1,145 false), names only', `>= ${r.band}`, r.links,
    (r.correct / Math.max(1, r.links)).toFixed(3), (r.correct / r.truth).toFixed(3)]);
}

benchArgs(import.meta.url, { values: [] });
const rows: (string | number)[][] = [['data', 'probability', 'links', 'precision', 'recall']];
for (const [label, run] of [['names_febrl', febrl], ['names_fake', fake1000]] as const) {
  const db = await benchDatabase(label);
  // the database is dropped WITH (FORCE) at close: an idle pooled connection may hear of it
  db.pool.on('error', () => {});
  try {
    if (rows.length === 1) console.log(`machine: ${machine(db.serverVersion)}\ncommand: npx tsx bench/name-eval.ts`);
    rows.push(...(await run(db)));
  } finally {
    await db.close();
  }
}
rows.push(['Splink, FEBRL 4 notebook (names, date of birth, address, SSN)', '>= 0.5', '-', '1.000', '0.998']);
console.log(table(rows));
