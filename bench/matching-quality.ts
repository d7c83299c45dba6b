// Matching quality and speed against ground truth, side by side with the predecessor's
// rules on the same data (SPEC 6, issue 3 targets):
//   npm run bench:quality -- [--leads 20000] [--drivers 50000] [--seed 42] [--speed-drivers 200000]
// Quality: the demo generator records each lead's true driver (demo.lead_truth); we run
// the pipeline in 2,000-lead batches and score every lead link. Speed: one 2,000-lead
// batch against --speed-drivers drivers, database time of the matching step.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { benchArgs, benchDatabase, demo, intArg, machine, pipeline, table, type BenchDb } from './lib.js';

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

async function quality(db: BenchDb, leads: number, drivers: number, seed: number): Promise<void> {
  const summary = await demo(db, { seed, leads, drivers, tripDays: 60 });
  let runs = 0;
  const matchMs: number[] = [];
  for (;;) {
    const { stats } = await pipeline(db, `p_days_back => 3650, p_limit => 2000`);
    runs++;
    matchMs.push(Number(stats['durations_ms']['match']));
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

benchArgs(import.meta.url, { values: ['leads', 'drivers', 'seed', 'speed-drivers'] });
const leads = intArg('leads', 20000);
const drivers = intArg('drivers', 50000);
const seed = intArg('seed', 42);
const speedDrivers = intArg('speed-drivers', 200000);
const q = await benchDatabase('quality');
console.log(`machine: ${machine(q.serverVersion)}`);
console.log(`command: npm run bench:quality -- --leads ${leads} --drivers ${drivers} --seed ${seed} --speed-drivers ${speedDrivers}`);
try {
  await quality(q, leads, drivers, seed);
} finally {
  await q.close();
}
if (speedDrivers > 0) {
  const s = await benchDatabase('speed');
  try {
    await speed(s, speedDrivers, seed);
  } finally {
    await s.close();
  }
}
