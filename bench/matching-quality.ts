// Matching quality and speed against ground truth, side by side with the predecessor's
// rules on the same data (SPEC 6, issue 3 targets):
//   npm run bench:quality -- [--leads 20000] [--drivers 50000] [--seed 42] [--speed-drivers 200000] [--residual 3000] [--fs-em]
// Quality: the demo generator records each lead's true driver (demo.lead_truth); --residual
// adds the residual leads of issue 19 (bench/sql/residual_leads.sql: plate typos, changed
// cars, two typos, glued names, and hard negatives: relatives, namesakes, resales); we run
// the pipeline in 2,000-lead batches and score every lead link, per rule and per category.
// --fs-em: then the m of the probabilistic tier estimated by EM on the tier's leads of that
// run (ops.estimate_fs_version: its time and its m beside the active m), activated in a
// second bench database with the same data, and the same quality run there; per category
// precision and recall with the active m and with the EM m side by side.
// Speed: one 2,000-lead batch against --speed-drivers drivers, database time of the
// matching step.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { benchArgs, benchDatabase, demo, intArg, machine, pipeline, table, type BenchDb } from './lib.js';

interface Category {
  scenario: string | null;
  leads: number;
  matchable: number;
  correct: number;
  matchable_correct: number;
  wrong: number;
  by_tier: number;
  review: number;
  review_true_first: number;
}

interface Row {
  rule: string;
  links: number;
  correct: number;
  matchable_correct: number;
}

function prf(correct: number, links: number, matchableCorrect: number, matchable: number) {
  const p = links ? correct / links : 1;
  const r = matchable ? matchableCorrect / matchable : 0;
  const f = p + r ? (2 * p * r) / (p + r) : 0;
  return { p, r, f };
}

const fmt = (x: number) => x.toFixed(4);

/** One quality run; fsLevels: a parameter version's m and u to activate first (as version 2). */
async function quality(db: BenchDb, leads: number, drivers: number, seed: number, residual: number,
  fsLevels?: FsLevel[]): Promise<Category[]> {
  const summary = await demo(db, { seed, leads, drivers, tripDays: 60 });
  if (fsLevels) await activateVersion(db, fsLevels);
  if (residual > 0) {
    const c = await db.pool.connect();
    try {
      await c.query(`SELECT set_config('bench.res_seed', $1, false), set_config('bench.res_leads', $2, false)`, [String(seed), String(residual)]);
      await c.query(readFileSync(path.join(import.meta.dirname, 'sql', 'residual_leads.sql'), 'utf8'));
    } finally {
      c.release();
    }
  }
  let runs = 0;
  const matchMs: number[] = [];
  const tierMs: number[] = [];
  for (;;) {
    const { stats } = await pipeline(db, `p_days_back => 3650, p_limit => 2000`);
    runs++;
    matchMs.push(Number(stats['durations_ms']['match']));
    tierMs.push(Number(stats['durations_ms']['link_probabilistic'] ?? 0));
    if (stats['match']['batch']['never_evaluated'] === 0) break;
  }
  // A lead without lead_created_at has no lead date: it is no lead for the product (not
  // in limbo, never evaluated), so it cannot count as matchable here.
  await db.pool.query(`CREATE SCHEMA IF NOT EXISTS bench;
    CREATE OR REPLACE VIEW bench.truth AS
    SELECT DISTINCT ON (t.lead_source_pk) t.lead_id, t.lead_source_pk, t.true_driver_id, t.scenario,
           t.matchable AND l.lead_created_at IS NOT NULL AS matchable
    FROM demo.lead_truth t JOIN public.module_ct_cabinet_leads l ON l.id = t.lead_id
    ORDER BY t.lead_source_pk, t.lead_id`);
  const [{ matchable }] = (await db.pool.query<{ matchable: number }>(
    `SELECT count(*)::int AS matchable FROM bench.truth WHERE matchable`,
  )).rows as [{ matchable: number }];

  // Ours: the driver a lead was linked to is the one its link's evidence names.
  const ours = (await db.pool.query<Row>(`
    SELECT l.match_rule AS rule, count(*)::int AS links,
           count(*) FILTER (WHERE t.true_driver_id = l.evidence->'driver'->>'driver_id')::int AS correct,
           count(*) FILTER (WHERE t.matchable AND t.true_driver_id = l.evidence->'driver'->>'driver_id')::int AS matchable_correct
    FROM canon.identity_links l
    JOIN bench.truth t ON t.lead_source_pk = l.source_pk
    WHERE l.source_table = 'module_ct_cabinet_leads'
    GROUP BY ROLLUP (l.match_rule) ORDER BY l.match_rule NULLS LAST`)).rows;

  await db.pool.query(readFileSync(path.join(import.meta.dirname, 'sql', 'predecessor_matching.sql'), 'utf8'));
  const theirs = (await db.pool.query<Row>(`
    SELECT p.rule, count(*)::int AS links,
           count(*) FILTER (WHERE t.true_driver_id = p.driver_id)::int AS correct,
           count(*) FILTER (WHERE t.matchable AND t.true_driver_id = p.driver_id)::int AS matchable_correct
    FROM bench.predecessor_decisions p
    JOIN bench.truth t ON t.lead_id = p.lead_id
    WHERE p.driver_id IS NOT NULL
    GROUP BY ROLLUP (p.rule) ORDER BY p.rule NULLS LAST`)).rows;

  const rows: (string | number)[][] = [['system', 'rule', 'links', 'correct', 'precision', 'recall', 'F1']];
  for (const [system, data] of [['cabinet-leads', ours], ['predecessor', theirs]] as const) {
    for (const r of data) {
      const { p, r: rec, f } = prf(r.correct, r.links, r.matchable_correct, matchable);
      rows.push([system, r.rule ?? 'ALL', r.links, r.correct, fmt(p), fmt(rec), fmt(f)]);
    }
  }
  console.log(`\nMatching quality: ${leads} leads (${matchable} matchable), ${drivers} drivers, seed ${seed}, ${runs} runs of 2,000`);
  console.log(`demo data: ${JSON.stringify(summary)}`);
  console.log(table(rows));
  const oursAll = ours.find((r) => r.rule === null)!;
  const theirsAll = theirs.find((r) => r.rule === null)!;
  const a = prf(oursAll.correct, oursAll.links, oursAll.matchable_correct, matchable);
  const b = prf(theirsAll.correct, theirsAll.links, theirsAll.matchable_correct, matchable);
  console.log(`recall ratio (ours / predecessor): ${(a.r / b.r).toFixed(2)}; precision ours ${fmt(a.p)} vs ${fmt(b.p)}`);
  console.log(`targets: precision >= 0.995 ${a.p >= 0.995 ? 'MET' : 'NOT MET'}; recall >= 0.97 ${a.r >= 0.97 ? 'MET' : 'NOT MET'}; recall above predecessor at no lower precision ${a.r > b.r && a.p >= b.p ? 'MET' : 'NOT MET'}`);
  const misses = (await db.pool.query(`
    SELECT t.scenario, coalesce(u.reason_code, CASE WHEN l.source_pk IS NOT NULL THEN 'WRONG_DRIVER' END, 'NOT_EVALUATED') AS outcome, count(*)::int AS n
    FROM bench.truth t
    LEFT JOIN canon.identity_links l ON l.source_table = 'module_ct_cabinet_leads' AND l.source_pk = t.lead_source_pk
    LEFT JOIN canon.identity_unmatched u ON u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = t.lead_source_pk AND u.status = 'OPEN'
    WHERE t.matchable AND (l.source_pk IS NULL OR l.evidence->'driver'->>'driver_id' IS DISTINCT FROM t.true_driver_id)
    GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 15`)).rows;
  console.log('matchable leads not correctly linked, by scenario and outcome:');
  console.log(misses.length ? table([['scenario', 'outcome', 'leads'], ...misses.map((m) => [m.scenario, m.outcome, m.n])]) : '(none)');
  const wrong = (await db.pool.query(`
    SELECT t.scenario, l.match_rule, count(*)::int AS n
    FROM canon.identity_links l JOIN bench.truth t ON t.lead_source_pk = l.source_pk
    WHERE l.source_table = 'module_ct_cabinet_leads' AND l.evidence->'driver'->>'driver_id' IS DISTINCT FROM t.true_driver_id
    GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 10`)).rows;
  console.log('wrong links (precision losses), by scenario:');
  console.log(wrong.length ? table([['scenario', 'rule', 'links'], ...wrong.map((m) => [m.scenario, m.match_rule, m.n])]) : '(none)');
  console.log(`match step per 2,000-lead batch: ${matchMs.map((m) => Math.round(m)).join(', ')} ms`);
  console.log(`probabilistic tier per 2,000-lead batch: ${tierMs.map((m) => Math.round(m)).join(', ')} ms`);
  return categories(db);
}

/**
 * Precision and recall per category (demo scenario or residual case): links to the true
 * driver, links to another driver (false positives), leads sent to review as
 * PROBABLE_MATCH, and what the rules alone did (links by R1-R3).
 */
async function categories(db: BenchDb): Promise<Category[]> {
  const rows = (await db.pool.query(`
    SELECT t.scenario,
           count(*)::int AS leads,
           count(*) FILTER (WHERE t.matchable)::int AS matchable,
           count(l.source_pk) FILTER (WHERE l.evidence->'driver'->>'driver_id' = t.true_driver_id)::int AS correct,
           count(l.source_pk) FILTER (WHERE t.matchable AND l.evidence->'driver'->>'driver_id' = t.true_driver_id)::int AS matchable_correct,
           count(l.source_pk) FILTER (WHERE l.evidence->'driver'->>'driver_id' IS DISTINCT FROM t.true_driver_id)::int AS wrong,
           count(l.source_pk) FILTER (WHERE l.match_rule = 'R4_PROBABILISTIC')::int AS by_tier,
           count(u.source_pk) FILTER (WHERE u.reason_code = 'PROBABLE_MATCH')::int AS review,
           count(u.source_pk) FILTER (WHERE u.reason_code = 'PROBABLE_MATCH' AND u.candidates->0->>'driver_id' = t.true_driver_id)::int AS review_true_first
    FROM bench.truth t
    LEFT JOIN canon.identity_links l ON l.source_table = 'module_ct_cabinet_leads' AND l.source_pk = t.lead_source_pk
    LEFT JOIN canon.identity_unmatched u ON u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = t.lead_source_pk AND u.status = 'OPEN'
    GROUP BY ROLLUP (t.scenario) ORDER BY t.scenario NULLS LAST`)).rows as Category[];
  const out: (string | number)[][] = [['category', 'leads', 'matchable', 'linked right', 'linked wrong', 'by R4', 'review', 'precision', 'recall']];
  for (const r of rows) {
    const links = r.correct + r.wrong;
    out.push([r.scenario ?? 'ALL', r.leads, r.matchable, r.correct, r.wrong, r.by_tier, r.review,
      links ? fmt(r.correct / links) : '-', r.matchable ? fmt(r.matchable_correct / r.matchable) : '-']);
  }
  console.log('\nper category (demo scenarios, RES_* residual leads, NEG_* hard negatives):');
  console.log(table(out));
  const res = rows.filter((r) => r.scenario?.startsWith('RES_'));
  const neg = rows.filter((r) => r.scenario?.startsWith('NEG_'));
  if (res.length) {
    const m = res.reduce((a, r) => a + r.matchable, 0);
    const c = res.reduce((a, r) => a + r.matchable_correct, 0);
    const links = res.reduce((a, r) => a + r.correct + r.wrong, 0);
    const right = res.reduce((a, r) => a + r.correct, 0);
    const fpNeg = neg.reduce((a, r) => a + r.wrong, 0);
    const all = rows.find((r) => r.scenario === null)!;
    const pAll = all.correct / Math.max(1, all.correct + all.wrong);
    console.log(`residual leads: recall ${fmt(c / Math.max(1, m))} (${c} of ${m} matchable), precision ${fmt(right / Math.max(1, links))}; ` +
      `hard negatives linked: ${fpNeg}; precision overall ${fmt(pAll)}`);
    console.log(`targets (issue 19): precision >= 0.995 ${pAll >= 0.995 ? 'MET' : 'NOT MET'}; zero false positives on hard negatives ${fpNeg === 0 ? 'MET' : 'NOT MET'}; ` +
      `recall >= 0.85 on residual leads ${c / Math.max(1, m) >= 0.85 ? 'MET' : 'NOT MET'}`);
  }
  return rows;
}

interface FsLevel {
  comparison: string;
  level: string;
  m: string;
  active_m: string;
  u: string;
  u_kind: string;
  occurrences: string;
  in_matches: string | null;
  pairs: number;
  leads: number;
  iterations: number;
  converged: boolean;
}

/** The EM estimate of m on the tier's leads of a finished quality run (a new inactive version). */
async function estimateM(db: BenchDb): Promise<FsLevel[]> {
  const t = performance.now();
  const rows = (await db.pool.query<FsLevel>(
    `SELECT * FROM ops.estimate_fs_version('bench:quality --fs-em: EM on the tier''s leads')`)).rows;
  const emMs = performance.now() - t;
  const r = rows[0]!;
  console.log(`\nEM estimate of m (ops.estimate_fs_version): ${Math.round(emMs)} ms, ${r.pairs} pairs of ${r.leads} leads, ` +
    `${r.iterations} iterations, ${r.converged ? 'converged' : 'NOT converged'}`);
  console.log(table([['comparison', 'level', 'active m', 'EM m', 'u', 'u_kind', 'occurrences', 'expected in matches'],
    ...rows.map((x) => [x.comparison, x.level, x.active_m, x.m, x.u, x.u_kind, x.occurrences, x.in_matches ?? '-'])]));
  return rows;
}

/** Version 1's bands and guards with the given m and u, as version 2, active. */
async function activateVersion(db: BenchDb, levels: FsLevel[]): Promise<void> {
  await db.pool.query(`
    INSERT INTO canon.match_fs_versions (version, prior_match_share, link_probability_min, review_probability_min, margin_bits_min,
                                         rare_token_max_share, name_block_max_drivers, token_share_min, notes)
    SELECT 2, prior_match_share, link_probability_min, review_probability_min, margin_bits_min, rare_token_max_share,
           name_block_max_drivers, token_share_min, 'bench:quality --fs-em: m by EM'
    FROM canon.match_fs_versions WHERE version = 1`);
  await db.pool.query(`
    INSERT INTO canon.match_fs_levels (version, comparison, level, m, u, u_kind, note)
    SELECT 2, x.comparison, x.level, x.m, x.u, x.u_kind, 'm by EM'
    FROM jsonb_to_recordset($1::jsonb) AS x (comparison text, level text, m numeric, u numeric, u_kind text)`,
  [JSON.stringify(levels.map(({ comparison, level, m, u, u_kind }) => ({ comparison, level, m, u, u_kind })))]);
  await db.pool.query(`UPDATE canon.match_fs_versions SET active = (version = 2)`);
}

/** Precision and recall per category, the active m's run beside the EM m's. */
function compare(hand: Category[], em: Category[]): void {
  const pr = (r: Category | undefined) => {
    if (!r) return ['-', '-', '-'];
    const links = r.correct + r.wrong;
    return [`${r.correct}/${r.wrong}/${r.review}`, links ? fmt(r.correct / links) : '-', r.matchable ? fmt(r.matchable_correct / r.matchable) : '-'];
  };
  const rows: (string | number)[][] = [['category', 'matchable', 'active m: right/wrong/review', 'precision', 'recall',
    'EM m: right/wrong/review', 'precision', 'recall']];
  for (const h of hand) {
    const e = em.find((x) => x.scenario === h.scenario);
    // a category nothing can link and neither run touched says nothing (the hard negatives do)
    const idle = (r: Category | undefined) => !r || r.correct + r.wrong + r.review === 0;
    if (h.matchable === 0 && idle(h) && idle(e) && !h.scenario?.startsWith('NEG_')) continue;
    rows.push([h.scenario ?? 'ALL', h.matchable, ...pr(h), ...pr(e)]);
  }
  console.log('\nper category, the active (hand-set) m against the EM m:');
  console.log(table(rows));
}

async function speed(db: BenchDb, drivers: number, seed: number): Promise<void> {
  await demo(db, { seed, leads: 2000, drivers, tripDays: 60 });
  const warm = await pipeline(db, `p_days_back => 3650, p_limit => 0`); // builds the driver index
  const { stats, ms } = await pipeline(db, `p_days_back => 3650, p_limit => 2000`);
  const matchMs = Number(stats['durations_ms']['match']);
  const evaluated = Number(stats['match']['leads_evaluated']);
  console.log(`\nSpeed: ${evaluated} leads against ${drivers} drivers (index build ${Math.round(warm.stats['durations_ms']['refresh_driver_index'])} ms, done once)`);
  console.log(table([
    ['measure', 'value'],
    ['match + link step (database time)', `${Math.round(matchMs)} ms`],
    ['sub-steps', JSON.stringify(stats['match']['durations_ms'])],
    ['leads per second', Math.round((evaluated / matchMs) * 1000)],
    ['whole run (client time)', `${Math.round(ms)} ms`],
    ['predecessor (PREDECESSOR.md: 1 to 1.6 s per lead)', `${Math.round(evaluated * 1.0)} to ${Math.round(evaluated * 1.6)} s`],
    ['ratio predecessor / ours (at 1 s per lead)', `${Math.round((evaluated * 1000) / matchMs)}x`],
  ]));
  console.log(`target: 2,000 leads against 200k drivers under 1 s: ${matchMs < 1000 ? 'MET' : 'NOT MET'}`);
}

benchArgs(import.meta.url, { values: ['leads', 'drivers', 'seed', 'speed-drivers', 'residual'], switches: ['fs-em'] });
const leads = intArg('leads', 20000);
const drivers = intArg('drivers', 50000);
const seed = intArg('seed', 42);
const speedDrivers = intArg('speed-drivers', 200000);
const residual = intArg('residual', 3000);
const q = await benchDatabase('quality');
console.log(`machine: ${machine(q.serverVersion)}`);
const fsEm = process.argv.includes('--fs-em');
console.log(`command: npm run bench:quality -- --leads ${leads} --drivers ${drivers} --seed ${seed} --speed-drivers ${speedDrivers} --residual ${residual}${fsEm ? ' --fs-em' : ''}`);
let hand: Category[];
let levels: FsLevel[] | undefined;
try {
  hand = await quality(q, leads, drivers, seed, residual);
  if (fsEm) levels = await estimateM(q);
} finally {
  await q.close();
}
if (levels) {
  console.log('\nThe same data, the EM m active (version 2):');
  const e = await benchDatabase('quality_em');
  try {
    compare(hand, await quality(e, leads, drivers, seed, residual, levels));
  } finally {
    await e.close();
  }
}
if (speedDrivers > 0) {
  const s = await benchDatabase('speed');
  try {
    await speed(s, speedDrivers, seed);
  } finally {
    await s.close();
  }
}
