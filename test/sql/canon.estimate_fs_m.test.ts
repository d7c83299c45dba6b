// canon.estimate_fs_m: the m of the probabilistic tier by expectation-maximisation, without
// labels, on the pairs the tier can link. On generated people whose true driver is known
// (test/helpers/fs-people.ts: a quarter of the pairs are namesakes on other cars), EM finds
// the m that counting the true pairs gives; a second run from its own estimate stays there;
// too few pairs and bad parameters are refused.
import test from 'ava';
import { type TestDb, withDb } from '../helpers/db.js';
import { FS_TRUE_DRIVER_SQL, insertFsPeople } from '../helpers/fs-people.js';
import { runPipeline } from '../helpers/pipeline.js';
import { insertLead } from '../helpers/rows.js';

interface Estimate {
  comparison: string;
  level: string;
  m: string;
  m_start: string;
  occurrences: string;
  pairs: number;
  leads: number;
  matches: string;
  iterations: number;
  converged: boolean;
}

const ALL_LEADS = `ARRAY(SELECT lead_id FROM canon_internal.lead_keys ORDER BY lead_id)`;

/** The people, and the tier's indexes built as a run builds them (no lead evaluated). */
async function people(db: TestDb): Promise<void> {
  await insertFsPeople(db);
  await runPipeline(db, 'p_days_back => 30, p_limit => 0');
}

async function estimate(db: TestDb, args = ''): Promise<Map<string, Estimate>> {
  const rows = await db.query<Estimate>(`SELECT * FROM canon.estimate_fs_m(${ALL_LEADS}, p_min_pairs => 500${args})`);
  return new Map(rows.map((r) => [`${r.comparison}.${r.level}`, r]));
}

/** m counted on the true pairs among the pairs EM reads (canon.fs_pair_levels), and the pair counts. */
async function truth(db: TestDb): Promise<{ m: Map<string, number>; pairs: number; truePairs: number }> {
  const rows = await db.query<{ comparison: string; level: string; m: number }>(`
    WITH p AS (
      SELECT x.*, x.driver_id = ${FS_TRUE_DRIVER_SQL('k.lead_source_pk')} AS is_true
      FROM canon.fs_pair_levels(${ALL_LEADS}, 1) x JOIN canon_internal.lead_keys k ON k.lead_id = x.lead_id
    )
    SELECT comparison, level, (sum(n) / sum(sum(n)) OVER (PARTITION BY comparison))::float8 AS m
    FROM p WHERE is_true GROUP BY comparison, level`);
  const [c] = await db.query<{ pairs: number; true_pairs: number }>(`
    SELECT count(DISTINCT (x.lead_id, x.driver_id))::int AS pairs,
           count(DISTINCT (x.lead_id, x.driver_id)) FILTER (WHERE x.driver_id = ${FS_TRUE_DRIVER_SQL('k.lead_source_pk')})::int AS true_pairs
    FROM canon.fs_pair_levels(${ALL_LEADS}, 1) x JOIN canon_internal.lead_keys k ON k.lead_id = x.lead_id`);
  return { m: new Map(rows.map((r) => [`${r.comparison}.${r.level}`, r.m])), pairs: c!.pairs, truePairs: c!.true_pairs };
}

const TOLERANCE = 0.03;

test('EM finds the m the true pairs show for the plate and name levels, within 0.03, from the hand-set m and without labels', (t) =>
  withDb('fs_em', async (db) => {
    await people(db);
    const em = await estimate(db);
    const tr = await truth(db);
    const any = [...em.values()][0]!;
    t.is(any.pairs, tr.pairs);
    t.true(tr.pairs - tr.truePairs >= 0.2 * tr.pairs, `non-matches among the pairs: ${tr.pairs - tr.truePairs} of ${tr.pairs}`);
    t.true(any.converged);
    t.true(Math.abs(Number(any.matches) - tr.truePairs) <= 0.05 * tr.truePairs, `expected matches ${any.matches}, true pairs ${tr.truePairs}`);
    for (const key of ['PLATE.EXACT', 'PLATE.CONFUSION', 'PLATE.ONE_EDIT', 'PLATE.DIFFERENT', 'NAME_TOKEN.EXACT', 'NAME_TOKEN.TYPO',
      'NAME_TOKEN.PHONETIC', 'NAME_DRIVER_TOKEN.MISSING', 'HIRE_DATE.NEAR', 'PARK.TARGET']) {
      const m = Number(em.get(key)!.m);
      const want = tr.m.get(key)!;
      t.true(Math.abs(m - want) <= TOLERANCE, `${key}: EM ${m}, true pairs ${want.toFixed(4)}`);
    }
    // the start (hand-set) m were far from these for some levels: EM moved them
    for (const key of ['PLATE.ONE_EDIT', 'NAME_TOKEN.TYPO', 'NAME_DRIVER_TOKEN.MISSING']) {
      t.true(Math.abs(Number(em.get(key)!.m_start) - tr.m.get(key)!) > 2 * TOLERANCE, `${key} started near the truth`);
    }
  }));

test('a level no true pair shows gets a small m, not 0 (half a pair over the matches), and the levels of a comparison sum to about 1', (t) =>
  withDb('fs_em', async (db) => {
    await people(db);
    const em = await estimate(db);
    // the decoys leave lead tokens without partner; no true pair does
    t.true(Number(em.get('NAME_TOKEN.NONE')!.occurrences) > 0);
    const none = Number(em.get('NAME_TOKEN.NONE')!.m);
    t.true(none > 0 && none < 0.001, `NONE ${none}`);
    t.is(Number(em.get('NAME_TOKEN.INITIAL')!.occurrences), 0);
    t.true(Number(em.get('NAME_TOKEN.INITIAL')!.m) < 0.001);
    for (const c of ['PLATE', 'NAME_TOKEN', 'HIRE_DATE', 'PARK']) {
      const sum = [...em.values()].filter((r) => r.comparison === c).reduce((a, r) => a + Number(r.m), 0);
      t.true(Math.abs(sum - 1) < 0.01, `${c}: m sum to ${sum}`);
    }
  }));

test('a second run from its own estimate ends where it started: EM has converged', (t) =>
  withDb('fs_em', async (db) => {
    await people(db);
    const first = await estimate(db);
    t.true([...first.values()][0]!.converged);
    await db.query(`SELECT * FROM ops.estimate_fs_version('first estimate', ${ALL_LEADS}, p_min_pairs => 500)`);
    const second = await estimate(db, ', p_version => 2');
    for (const [key, r] of second) {
      t.is(Number(r.m_start), Number(first.get(key)!.m), `${key} started from the first run's m`);
      t.true(Math.abs(Number(r.m) - Number(first.get(key)!.m)) < 0.001, `${key}: ${first.get(key)!.m} then ${r.m}`);
    }
    t.true([...second.values()][0]!.iterations <= 2, `iterations ${[...second.values()][0]!.iterations}`);
  }));

test('fewer pairs than p_min_pairs are refused with CL026, naming the pairs found and the minimum', (t) =>
  withDb('fs_em', async (db) => {
    await insertFsPeople(db, 30, 100);
    await runPipeline(db, 'p_days_back => 30, p_limit => 0');
    const err = await t.throwsAsync(db.query(`SELECT * FROM canon.estimate_fs_m(${ALL_LEADS})`));
    t.is((err as { code?: string }).code, 'CL026');
    t.regex(err!.message, /^estimate_fs_m: too few candidate pairs to estimate m: \d+ pairs from \d+ of the 30 lead rows given, at least 1000 needed \(p_min_pairs\)$/);
    const none = await t.throwsAsync(db.query(`SELECT * FROM canon.estimate_fs_m('{}', p_min_pairs => 1)`));
    t.regex(none!.message, /0 pairs from 0 of the 0 lead rows given, at least 1 needed/);
  }));

test('bad parameters are refused (22023), an unknown version too (P0002), before any pair is read', (t) =>
  withDb('fs_em', async (db) => {
    const lead = await insertLead(db, { asset_plate_number: 'ABC123' });
    t.truthy(lead.id);
    for (const [args, code, msg] of [
      ['p_max_iterations => 0', '22023', /p_max_iterations must be 1 or more, got 0/],
      ['p_epsilon => 0', '22023', /p_epsilon must be above 0, got 0/],
      ['p_version => 9', 'P0002', /no parameter version 9/],
    ] as const) {
      const err = await t.throwsAsync(db.query(`SELECT * FROM canon.estimate_fs_m(ARRAY[${lead.id}], ${args})`));
      t.is((err as { code?: string }).code, code, args);
      t.regex(err!.message, msg);
    }
  }));
