// Pipeline performance at production and growth volumes, against baselines measured in
// the same run (issue 7):
//   npm run bench -- --leads 200000 --drivers 1000000 --trip-days 14 [--scenario all] [--out bench/out]
// Options: --seed 42, --backfill-batch 2000 (limit of the backfill runs), --days-back (default trip-days + 2: every demo lead in scope),
// --batch 2000 (pipeline limit), --steady-leads 2000, --steady-drivers 2000 (new drivers
// that arrive with them), --steady-runs 5 (steady runs in all, each on a new batch), --baseline-leads 300 (per-lead baseline subset),
// --latency-ms 1, --skip-backfill-over N (stop the backfill after N runs; 0 = no cap).
// Data comes from the set-based demo generator (src/demo.ts); the pipeline is the real
// CALL ops.reconcile_cabinet_leads_pipeline. Scenarios (the bulk is always evaluated
// first, in batches, because every other scenario starts from it):
//   backfill  runs of --batch until every lead is evaluated: total time, leads/s
//   steady    --steady-leads new leads arrive; one run timed end to end, then more runs on
//             new batches (--steady-runs in all) and the median per step; the floor (bare
//             exact-key join), the write floor (the run's identity rows written again by
//             bare INSERTs) and the per-lead baseline on the same batch; EXPLAIN files
//   idle      ten consecutive runs with nothing new
//   --trip-rows N  tops summary_daily up to N rows after the demo (a trip row per day for
//             drivers in id order, both date formats): the demo writes trips for the
//             drivers of leads only (4.4M rows at 1M leads / 30 days), the issue's
//             backfill has 30M
//   latency   a TCP proxy on 127.0.0.1 delays every chunk by --latency-ms each way; the
//             pipeline and the per-lead baseline through it and direct
// Everything measured is printed with the load average at the time; EXPLAIN (ANALYZE,
// BUFFERS) output goes to --out (gitignored).
import { mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import pg from 'pg';
import { autovacuumStandIn, benchArgs, benchDatabase, demo, intArg, loadAvg, machine, median, ms, strArg, table, type BenchDb, type Stats } from './lib.js';
import { perLeadBaseline } from './per-lead.js';

const SCENARIOS = ['steady', 'backfill', 'idle', 'latency', 'all'] as const;
type Scenario = (typeof SCENARIOS)[number];

benchArgs(import.meta.url, {
  values: ['leads', 'drivers', 'trip-days', 'seed', 'batch', 'backfill-batch', 'steady-leads', 'steady-drivers',
    'baseline-leads', 'latency-ms', 'trip-rows', 'skip-backfill-over', 'scenario', 'out', 'days-back', 'steady-runs'],
});
const opts = {
  leads: intArg('leads', 50000),
  drivers: intArg('drivers', 200000),
  tripDays: intArg('trip-days', 30),
  seed: intArg('seed', 42),
  batch: intArg('batch', 2000),
  backfillBatch: intArg('backfill-batch', 2000),
  steadyLeads: intArg('steady-leads', 2000),
  steadyDrivers: intArg('steady-drivers', 2000),
  steadyRuns: intArg('steady-runs', 5),
  baselineLeads: intArg('baseline-leads', 300),
  latencyMs: intArg('latency-ms', 1),
  tripRows: intArg('trip-rows', 0),
  backfillCap: intArg('skip-backfill-over', 0),
  scenario: strArg('scenario', 'all', SCENARIOS) as Scenario,
  out: strArg('out', 'bench/out'),
};
const daysBack = intArg('days-back', opts.tripDays + 2);
const wants = (s: Scenario) => opts.scenario === 'all' || opts.scenario === s;
const runArgs = (limit: number, extra = '') => `p_days_back => ${daysBack}, p_limit => ${limit}${extra}`;

// ---------------------------------------------------------------- measurement plumbing


const num = (x: unknown) => Number(x ?? 0);

/** Peak RSS of this process, sampled every 50 ms; `phase()` starts a new per-phase peak. */
const rss = (() => {
  let overall = process.memoryUsage().rss;
  let phase = overall;
  const timer = setInterval(() => {
    const v = process.memoryUsage().rss;
    overall = Math.max(overall, v);
    phase = Math.max(phase, v);
  }, 50);
  timer.unref();
  return {
    phase(): number {
      const p = Math.max(phase, process.memoryUsage().rss);
      phase = process.memoryUsage().rss;
      return p;
    },
    overall: () => Math.max(overall, process.memoryUsage().rss),
    stop: () => clearInterval(timer),
  };
})();
const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;

/** Result lines: [scenario, measure, value, load average when measured]. */
const results: string[][] = [['scenario', 'measure', 'value', 'load avg (1/5/15 min)']];
function record(scenario: string, measure: string, value: string): void {
  results.push([scenario, measure, value, loadAvg()]);
  console.log(`  ${scenario} | ${measure} | ${value} | load ${loadAvg()}`);
}

function writeOut(name: string, text: string): string {
  const file = path.join(opts.out, name);
  // Plans print bound id arrays in full: keep the files readable.
  writeFileSync(file, text.replace(/'\{[\d,]{200,}\}'/g, (m) => `'{<${m.split(',').length} ids>}'`));
  return file;
}

interface Run {
  id: number;
  status: string;
  stats: Stats;
}

/** One CALL of the pipeline on the given client; client time included. */
async function callPipeline(c: pg.ClientBase, args: string): Promise<{ run: Run; ms: number }> {
  const t = performance.now();
  const res = await c.query<{ run: Run & { error_message: string | null } }>(
    `CALL ops.reconcile_cabinet_leads_pipeline(${args}, p_raise_on_failure => false)`,
  );
  const run = res.rows[0]!.run;
  if (run.status !== 'COMPLETED') throw new Error(`pipeline run ${run.id} ${run.status}: ${run.error_message}`);
  return { run, ms: performance.now() - t };
}

async function withClient<T>(url: string, f: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url, application_name: 'cabinet-leads-bench' });
  await c.connect();
  try {
    return await f(c);
  } finally {
    await c.end();
  }
}

const STEPS = ['refresh_driver_index', 'match', 'link_probabilistic', 'generate_cabinet_claims', 'snapshot_limbo'] as const;

function stepRows(label: string, run: Run, clientMs: number): (string | number)[][] {
  const d = run.stats['durations_ms'] as Record<string, number>;
  const known = STEPS.reduce((s, k) => s + num(d[k]), 0);
  const evaluated = num(run.stats['match']?.['leads_evaluated']);
  return [
    ...STEPS.map((k) => [label, k, ms(num(d[k]))]),
    [label, 'other (contract check, limbo counts before/after, run log)', ms(num(d['total']) - known)],
    [label, 'total (database)', ms(num(d['total']))],
    [label, 'total (client, end to end)', ms(clientMs)],
    [label, 'leads evaluated', evaluated],
    [label, 'leads/s (end to end)', evaluated ? Math.round((evaluated / clientMs) * 1000) : 0],
    [label, 'match sub-steps (ms)', JSON.stringify(run.stats['match']?.['durations_ms'] ?? {})],
  ];
}

// ---------------------------------------------------------------- baselines

/** The floor: the bare set-based exact-key join (phone, plate) of the batch's keys. */
const FLOOR_SQL = `
  SELECT k.lead_id, d.driver_id, 'PHONE' AS key
  FROM canon_internal.lead_keys k JOIN canon_internal.driver_index d ON d.phone_norm = k.phone_norm
  WHERE k.lead_id = ANY ($1::integer[])
  UNION ALL
  SELECT k.lead_id, d.driver_id, 'PLATE'
  FROM canon_internal.lead_keys k JOIN canon_internal.driver_index d ON d.plate_norm = k.plate_norm
  WHERE k.lead_id = ANY ($1::integer[])`;

async function clientTimes(c: pg.ClientBase, sql: string, params: unknown[], n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await c.query(sql, params);
    out.push(performance.now() - t);
  }
  return out;
}

async function explain(c: pg.ClientBase, sql: string, params: unknown[]): Promise<{ text: string; execMs: number }> {
  const res = await c.query<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, BUFFERS) ${sql}`, params);
  const text = res.rows.map((r) => r['QUERY PLAN']).join('\n');
  const m = /Execution Time: ([\d.]+) ms/.exec(text);
  return { text, execMs: m ? Number(m[1]) : NaN };
}

/**
 * The write floor: the rows the run `runId` wrote to the identity tables (persons, links,
 * origins, audit rows, unmatched rows), written again by bare set-based INSERTs with no
 * trigger and no foreign-key check (session_replication_role = replica), each table's
 * indexes kept: the least any matcher that keeps what this one keeps must write. In one
 * transaction rolled back at the end; the run's rows are copied and deleted first,
 * untimed. Null when the bench role may not turn triggers off.
 */
async function writeFloor(url: string, runId: number): Promise<{ ms: number; rows: number } | null> {
  return withClient(url, async (c) => {
    await c.query('BEGIN');
    try {
      await c.query(`SET LOCAL session_replication_role = replica`);
    } catch {
      await c.query('ROLLBACK');
      return null;
    }
    const tables: [string, string][] = [
      ['canon.identity_registry', 'created_run_id'],
      ['canon.identity_links', 'run_id'],
      ['canon.identity_origin', 'run_id'],
      ['canon.identity_audit', 'run_id'],
      ['canon.identity_unmatched', 'last_run_id'],
    ];
    let rows = 0;
    for (const [i, [table, col]] of tables.entries()) {
      rows += (await c.query(`CREATE TEMP TABLE write_floor_${i} ON COMMIT DROP AS SELECT * FROM ${table} WHERE ${col} = $1`, [runId])).rowCount ?? 0;
    }
    // children first (links and origins reference persons; no check fires in replica mode anyway)
    for (const [table, col] of [...tables].reverse()) await c.query(`DELETE FROM ${table} WHERE ${col} = $1`, [runId]);
    const t = performance.now();
    for (const [i, [table]] of tables.entries()) {
      await c.query(`INSERT INTO ${table} OVERRIDING SYSTEM VALUE SELECT * FROM pg_temp.write_floor_${i}`);
    }
    const elapsed = performance.now() - t;
    await c.query('ROLLBACK');
    return { ms: elapsed, rows };
  });
}

// ---------------------------------------------------------------- latency proxy

/** A TCP proxy on 127.0.0.1 that delays every chunk by delayMs in each direction. */
async function startDelayProxy(targetHost: string, targetPort: number, delayMs: number): Promise<{ port: number; close(): Promise<void> }> {
  const socket = targetHost.startsWith('/') ? path.join(targetHost, `.s.PGSQL.${targetPort}`) : undefined;
  if (!socket && !['127.0.0.1', 'localhost', '::1', '[::1]'].includes(targetHost)) {
    throw new Error(`latency proxy refuses non-loopback database host ${targetHost}`);
  }
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = socket
      ? net.connect(socket)
      : net.connect(targetPort, targetHost === 'localhost' ? '127.0.0.1' : targetHost.replace(/[[\]]/g, ''));
    sockets.add(client).add(upstream);
    // Timers of one duration fire in insertion order, so chunks keep their order.
    const forward = (from: net.Socket, to: net.Socket) =>
      from.on('data', (chunk) => setTimeout(() => { if (!to.destroyed) to.write(chunk); }, delayMs));
    forward(client, upstream);
    forward(upstream, client);
    const done = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    for (const s of [client, upstream]) {
      s.on('close', done);
      s.on('error', done);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    }),
  };
}

async function roundTrip(url: string, n = 200): Promise<number> {
  return withClient(url, async (c) => median(await clientTimes(c, 'SELECT 1', [], n)));
}

// ---------------------------------------------------------------- scenarios

/** Lead rows (one per lead key) that the given run evaluated. */
async function runLeadIds(db: BenchDb, runId: number): Promise<number[]> {
  const { rows } = await db.pool.query<{ lead_id: number }>(
    `SELECT min(k.lead_id) AS lead_id
     FROM canon_internal.lead_keys k
     WHERE k.lead_source_pk IN (
       SELECT source_pk FROM canon.identity_links WHERE source_table = 'module_ct_cabinet_leads' AND run_id = $1
       UNION SELECT source_pk FROM canon.identity_unmatched WHERE source_table = 'module_ct_cabinet_leads' AND last_run_id = $1)
     GROUP BY k.lead_source_pk ORDER BY 1`,
    [runId],
  );
  return rows.map((r) => r.lead_id);
}

/** Pipeline dry run with auto_explain on every nested statement over minMs (plans with ANALYZE, BUFFERS). */
async function autoExplain(url: string, minMs: number, sql: string, params: unknown[]): Promise<string> {
  return withClient(url, async (c) => {
    const notices: string[] = [];
    c.on('notice', (n) => notices.push(n.message ?? ''));
    // WARNING level: the match steps set client_min_messages = warning inside.
    await c.query(`LOAD 'auto_explain';
      SET auto_explain.log_min_duration = ${minMs}; SET auto_explain.log_analyze = on; SET auto_explain.log_buffers = on;
      SET auto_explain.log_nested_statements = on; SET auto_explain.log_level = warning`);
    const t = performance.now();
    await c.query(sql, params);
    const total = performance.now() - t;
    return `-- ${sql.trim()}\n-- client time ${total.toFixed(1)} ms (with auto_explain ANALYZE overhead); ` +
      `statements over ${minMs} ms, innermost first\n\n${notices.join('\n\n----------------------------------------\n\n')}\n`;
  });
}

async function backfill(db: BenchDb): Promise<void> {
  const size = Math.max(1, opts.backfillBatch);
  console.log(`\n== backfill: runs of ${size} until every lead is evaluated`);
  const maxRuns = opts.backfillCap || Math.ceil((opts.leads * 1.2) / size) + 5;
  const totals: number[] = [];
  const steps: Record<string, number> = {};
  let evaluated = 0;
  let newLeads = 0;
  let done = false;
  const perRun: string[] = [['run', 'client_ms', ...STEPS, 'leads_evaluated', 'load'].join(',')];
  // A server with autovacuum off (this machine's CI configuration sets it off) would let
  // every run's dead rows pile up, which no production server does: the tables past
  // autovacuum's thresholds are then vacuumed after each run, as autovacuum would between
  // two runs, and that time is reported apart (and once counted in).
  const autovacuumOff = (await db.pool.query<{ v: string }>(`SELECT current_setting('autovacuum') AS v`)).rows[0]!.v === 'off';
  let vacuumMs = 0;
  rss.phase();
  const t = performance.now();
  const c = await db.pool.connect();
  try {
    for (let i = 0; i < maxRuns && !done; i++) {
      if (autovacuumOff && i > 0) {
        const tv = performance.now();
        await autovacuumStandIn(c);
        vacuumMs += performance.now() - tv;
      }
      const { run, ms: cms } = await callPipeline(c, runArgs(size));
      totals.push(cms);
      for (const k of STEPS) steps[k] = (steps[k] ?? 0) + num(run.stats['durations_ms'][k]);
      evaluated += num(run.stats['match']['leads_evaluated']);
      // Done once a batch is no longer full of never-evaluated leads (the rest are retries).
      newLeads += num(run.stats['match']['batch']['never_evaluated']);
      done = num(run.stats['match']['batch']['never_evaluated']) < size;
      perRun.push([i + 1, Math.round(cms), ...STEPS.map((k) => num(run.stats['durations_ms'][k])), num(run.stats['match']['leads_evaluated']), loadAvg()].join(','));
      if (i % 10 === 0 || done) console.log(`  run ${i + 1}: ${ms(cms)}, evaluated so far ${evaluated}, load ${loadAvg()}`);
    }
  } finally {
    c.release();
  }
  const elapsed = performance.now() - t - vacuumMs;
  writeOut('backfill-runs.csv', perRun.join('\n') + '\n');
  record('backfill', 'batch size (limit)', String(size));
  record('backfill', 'leads evaluated (never evaluated before) / runs', `${evaluated} (${newLeads}) in ${totals.length} runs${done ? '' : ' (STOPPED before the end)'}`);
  record('backfill', 'total time', `${(elapsed / 1000).toFixed(1)} s`);
  record('backfill', 'leads/s', `${Math.round((evaluated / elapsed) * 1000)}`);
  if (autovacuumOff) {
    record('backfill', 'VACUUM (ANALYZE) of the tables past autovacuum\'s thresholds between runs (autovacuum is off on this server)',
      `${(vacuumMs / 1000).toFixed(1)} s in total, not in the figures above; counted in: ${Math.round((evaluated / (elapsed + vacuumMs)) * 1000)} leads/s`);
  }
  record('backfill', 'run time first / median / last', `${ms(totals[0] ?? NaN)} / ${ms(median(totals))} / ${ms(totals.at(-1) ?? NaN)}`);
  record('backfill', 'time per step (sum over runs)', STEPS.map((k) => `${k} ${((steps[k] ?? 0) / 1000).toFixed(1)} s`).join(', '));
  record('backfill', 'peak RSS (node)', mib(rss.phase()));
}

async function steady(db: BenchDb): Promise<void> {
  console.log(`\n== steady: ${opts.steadyLeads} new leads (and ${opts.steadyDrivers} new drivers) arrive, one run of ${opts.batch}`);
  const gen = await demo(db, { seed: opts.seed + 1, leads: opts.steadyLeads, drivers: opts.steadyDrivers, tripDays: opts.tripDays });
  console.log(`  new batch: ${JSON.stringify(gen)}`);
  await db.pool.query('ANALYZE');
  // The whole pipeline's heavy statements, from a dry run on the same new leads (rolled back).
  const dry = await autoExplain(db.url, 20, `CALL ops.reconcile_cabinet_leads_pipeline(${runArgs(opts.batch, ', p_dry_run => true')}, p_raise_on_failure => false)`, []);
  console.log(`  wrote ${writeOut('pipeline-dry-run.auto_explain.txt', dry)}`);

  rss.phase();
  const { run, ms: cms } = await withClient(db.url, (c) => callPipeline(c, runArgs(opts.batch)));
  const rows = stepRows('steady', run, cms);
  for (const r of rows) record(String(r[0]), String(r[1]), String(r[2]));
  record('steady', 'peak RSS (node)', mib(rss.phase()));
  const ids = await runLeadIds(db, run.id);
  writeOut('steady-batch-lead-ids.txt', ids.join(','));
  const matchMs = num(run.stats['durations_ms']['match']);
  const decideMs = num(run.stats['match']['durations_ms']?.['decide']);

  // Floor and lead_decisions, warm, same batch, same client.
  let floorBest = NaN;
  await withClient(db.url, async (c) => {
    const floor = await explain(c, FLOOR_SQL, [ids]);
    writeOut('floor-exact-key-join.explain.txt', `-- batch of ${ids.length} lead rows (steady-batch-lead-ids.txt)\n${FLOOR_SQL.trim()}\n\n${floor.text}\n`);
    const floorClient = median(await clientTimes(c, FLOOR_SQL, [ids], 5));
    const dec = await explain(c, 'SELECT * FROM canon.lead_decisions($1::integer[])', [ids]);
    const decClient = median(await clientTimes(c, 'SELECT * FROM canon.lead_decisions($1::integer[])', [ids], 3));
    const decNested = await autoExplain(db.url, 1, 'SELECT * FROM canon.lead_decisions($1::integer[])', [ids]);
    writeOut('lead_decisions.explain.txt',
      `-- SELECT * FROM canon.lead_decisions(<${ids.length} lead ids of steady-batch-lead-ids.txt>)\n${dec.text}\n\n` +
      `-- the same with auto_explain (nested statements: lead_decisions and lead_candidates are not inlined)\n${decNested}`);
    record('steady', 'floor: exact-key join (EXPLAIN ANALYZE exec / client median of 5)', `${ms(floor.execMs)} / ${ms(floorClient)}`);
    record('steady', 'lead_decisions alone, warm (EXPLAIN ANALYZE exec / client median of 3)', `${ms(dec.execMs)} / ${ms(decClient)}`);
    // The floor is the least of the two (EXPLAIN's instrumentation costs a lot on a loaded machine).
    const best = Math.min(floor.execMs, floorClient);
    floorBest = best;
    record('steady', 'ratio match step / floor (least of exec, client)', `${(matchMs / best).toFixed(1)}x (decide sub-step ${(decideMs / best).toFixed(1)}x)`);
  });

  // What its link sub-step writes, written bare: how much of the step is the writes themselves.
  const wf = await writeFloor(db.url, run.id);
  if (wf) {
    const linkMs = num(run.stats['match']['durations_ms']?.['link']);
    record('steady', 'write floor: the run\'s identity rows written again by bare INSERTs (no trigger, no FK check)',
      `${ms(wf.ms)} for ${wf.rows} rows (persons, links, origins, audit, unmatched); link sub-step ${ms(linkMs)} = ${(linkMs / wf.ms).toFixed(1)}x`);
    record('steady', 'ratio match step / (floor + write floor)', `${(matchMs / (floorBest + wf.ms)).toFixed(1)}x`);
  }

  // Per-lead baseline on a subset of the same batch.
  const subset = ids.slice(0, opts.baselineLeads);
  const base = await perLeadBaseline(db.url, subset, run.id);
  const perLead = base.ms / base.leads;
  const scaled = perLead * ids.length;
  record('steady', `per-lead baseline (${base.leads} leads of the batch, loopback)`,
    `${ms(base.ms)}, ${(base.statements / base.leads).toFixed(1)} statements/lead, ${base.linked} linked, ${perLead.toFixed(2)} ms/lead, ${Math.round(1000 / perLead)} leads/s, scaled to ${ids.length}: ${ms(scaled)}${base.triggersOff ? '' : ' (our triggers on: not allowed to turn them off)'}`);
  record('steady', 'ratio per-lead baseline (scaled) / match step', `${(scaled / matchMs).toFixed(1)}x (the predecessor costs 6 to 7 ms/lead on this server, more than this stand-in: the ratio understates the gain)`);

  if (opts.steadyRuns > 1) await steadyAgain(db, run, cms);

  // The limbo view and the weekly funnel at this size.
  await withClient(db.url, async (c) => {
    const lead = ids[Math.floor(ids.length / 2)] ?? 1;
    const views: [string, string, unknown[]][] = [
      ['limbo-stage-counts', 'SELECT limbo_stage, count(*) FROM ops.v_cabinet_leads_limbo GROUP BY 1', []],
      ['limbo-one-lead', 'SELECT * FROM ops.v_cabinet_leads_limbo WHERE lead_id = $1', [lead]],
      ['funnel-weekly', 'SELECT * FROM ops.v_cabinet_14d_funnel_weekly', []],
    ];
    for (const [name, sql, params] of views) {
      const e = await explain(c, sql, params);
      writeOut(`${name}.explain.txt`, `-- ${sql}${params.length ? `  ($1 = ${JSON.stringify(params)})` : ''}\n${e.text}\n`);
      const client = median(await clientTimes(c, sql, params, 3));
      record('steady', `${name} (EXPLAIN ANALYZE exec / client median of 3)`, `${ms(e.execMs)} / ${ms(client)}`);
    }
  });
}

/**
 * One steady run is one sample on a shared machine: more batches arrive, each vacuumed
 * before as autovacuum would be between two runs 15 minutes apart, and the median per
 * step over all the steady runs (the first included) is reported.
 */
async function steadyAgain(db: BenchDb, first: Run, firstMs: number): Promise<void> {
  const runs: { run: Run; ms: number }[] = [{ run: first, ms: firstMs }];
  await withClient(db.url, async (c) => {
    for (let i = 1; i < opts.steadyRuns; i++) {
      await demo(db, { seed: opts.seed + 1000 + i, leads: opts.steadyLeads, drivers: opts.steadyDrivers, tripDays: opts.tripDays });
      await autovacuumStandIn(c);
      runs.push(await callPipeline(c, runArgs(opts.batch)));
    }
  });
  const step = (r: Run, k: string) => num(r.stats['durations_ms'][k]);
  const label = `steady, median of ${runs.length} runs`;
  for (const k of STEPS) record(label, k, ms(median(runs.map((r) => step(r.run, k)))));
  record(label, 'total (database)', ms(median(runs.map((r) => step(r.run, 'total')))));
  record(label, 'total (client, end to end)', `${ms(median(runs.map((r) => r.ms)))} (runs: ${runs.map((r) => Math.round(r.ms)).join(', ')} ms)`);
}

async function idle(db: BenchDb): Promise<void> {
  console.log('\n== idle: ten consecutive runs with nothing new');
  const totals: string[] = [];
  const c = await db.pool.connect();
  rss.phase();
  try {
    for (let i = 0; i < 10; i++) {
      const { run, ms: cms } = await callPipeline(c, runArgs(opts.batch));
      totals.push(`${Math.round(cms)}(${num(run.stats['match']['leads_selected'])})`);
      if (i === 9) {
        for (const r of stepRows('idle (10th run)', run, cms)) record(String(r[0]), String(r[1]), String(r[2]));
      }
    }
  } finally {
    c.release();
  }
  record('idle', 'ten runs: client ms (leads selected: unmatched retries)', totals.join(' '));
  record('idle', 'peak RSS (node)', mib(rss.phase()));
}

async function latency(db: BenchDb): Promise<void> {
  console.log(`\n== latency: +${opts.latencyMs} ms each way through a TCP proxy on 127.0.0.1`);
  const u = new URL(db.url);
  // The embedded server listens on a Unix socket (its folder as a percent-encoded host).
  const socketDir = /^%2f/i.test(u.hostname) ? decodeURIComponent(u.hostname) : undefined;
  const proxy = await startDelayProxy(socketDir ?? u.hostname, Number(u.port || 5432), opts.latencyMs);
  try {
    const proxied = new URL(db.url);
    proxied.hostname = '127.0.0.1';
    proxied.port = String(proxy.port);
    const rttDirect = await roundTrip(db.url);
    const rttProxy = await roundTrip(proxied.toString());
    record('latency', 'round trip SELECT 1, median of 200 (direct / proxy)', `${rttDirect.toFixed(3)} ms / ${rttProxy.toFixed(3)} ms`);
    const gen = await demo(db, { seed: opts.seed + 2, leads: opts.steadyLeads, drivers: opts.steadyDrivers, tripDays: opts.tripDays });
    console.log(`  new batch: ${JSON.stringify(gen)}`);
    await db.pool.query('ANALYZE');
    const { run, ms: cms } = await withClient(proxied.toString(), (c) => callPipeline(c, runArgs(opts.batch)));
    record('latency', 'pipeline through proxy (new batch): total database / client', `${ms(num(run.stats['durations_ms']['total']))} / ${ms(cms)}`);
    record('latency', 'pipeline through proxy: match step / leads evaluated', `${ms(num(run.stats['durations_ms']['match']))} / ${num(run.stats['match']['leads_evaluated'])}`);
    const ids = (await runLeadIds(db, run.id)).slice(0, opts.baselineLeads);
    const direct = await perLeadBaseline(db.url, ids, run.id);
    const viaProxy = await perLeadBaseline(proxied.toString(), ids, run.id);
    for (const [label, b] of [['direct', direct], ['through proxy', viaProxy]] as const) {
      record('latency', `per-lead baseline ${label} (${b.leads} leads)`,
        `${ms(b.ms)}, ${(b.ms / b.leads).toFixed(2)} ms/lead, ${Math.round((b.leads / b.ms) * 1000)} leads/s, ${(b.statements / b.leads).toFixed(1)} statements/lead`);
    }
    const evaluated = num(run.stats['match']['leads_evaluated']);
    record('latency', `ratio per-lead baseline (proxy, scaled to ${evaluated}) / pipeline end to end (proxy)`,
      `${(((viaProxy.ms / viaProxy.leads) * evaluated) / cms).toFixed(1)}x`);
  } finally {
    await proxy.close();
  }
}

/** More trip rows, up to `target`: a row per day for drivers in id order (bulk load, then one index build). */
async function topUpTrips(db: BenchDb, target: number): Promise<void> {
  const t = performance.now();
  const have = Number((await db.pool.query<{ n: string }>('SELECT count(*) AS n FROM public.summary_daily')).rows[0]!.n);
  const missing = target - have;
  if (missing <= 0) return;
  const drivers = Math.ceil(missing / opts.tripDays);
  await db.pool.query('DROP INDEX public.summary_daily_driver_trip_date_idx');
  await db.pool.query(
    `INSERT INTO public.summary_daily (driver_id, date_file, count_orders_completed, sum_work_time_seconds)
     SELECT d.driver_id,
            CASE WHEN g % 2 = 0 THEN to_char(t.today - g, 'YYYY-MM-DD') ELSE to_char(t.today - g, 'DD-MM-YYYY') END,
            (hashint4(d.rn::integer * 31 + g) & 3), 3600
     FROM (SELECT canon.business_today() AS today) t,
          (SELECT x.driver_id, row_number() OVER (ORDER BY x.id) AS rn FROM public.drivers x ORDER BY x.id LIMIT $1) d,
          generate_series(0, $2::integer - 1) g
     LIMIT $3`,
    [drivers, opts.tripDays, missing],
  );
  await db.pool.query(`CREATE INDEX summary_daily_driver_trip_date_idx ON public.summary_daily (driver_id, canon.parse_date_file(date_file))`);
  await db.pool.query('ANALYZE public.summary_daily');
  record('setup', `trip rows topped up to ${target} (--trip-rows)`, `${missing} rows for ${drivers} drivers in ${((performance.now() - t) / 1000).toFixed(1)} s`);
}

// ---------------------------------------------------------------- main

mkdirSync(opts.out, { recursive: true });
const command = `npm run bench -- --leads ${opts.leads} --drivers ${opts.drivers} --trip-days ${opts.tripDays} --scenario ${opts.scenario} --days-back ${daysBack} --seed ${opts.seed} --backfill-batch ${opts.backfillBatch}${opts.tripRows ? ` --trip-rows ${opts.tripRows}` : ''}`;
const db = await benchDatabase('pipeline');
const machineLine = machine(db.serverVersion);
console.log(`machine: ${machineLine}`);
console.log(`command: ${command}`);
try {
  const t = performance.now();
  rss.phase();
  const gen = await demo(db, { seed: opts.seed, leads: opts.leads, drivers: opts.drivers, tripDays: opts.tripDays });
  await db.pool.query('ANALYZE');
  record('setup', 'demo data (set-based SQL)', `${JSON.stringify(gen)} in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  if (opts.tripRows > 0) await topUpTrips(db, opts.tripRows);
  record('setup', 'peak RSS (node) during generation', mib(rss.phase()));
  // The first run builds the driver index in full; limit 0 keeps it out of the batches.
  const c = await db.pool.connect();
  try {
    const { run, ms: cms } = await callPipeline(c, runArgs(0));
    record('setup', 'first run, limit 0 (full driver index build, claims, snapshot)', `${ms(cms)} (refresh_driver_index ${ms(num(run.stats['durations_ms']['refresh_driver_index']))})`);
  } finally {
    c.release();
  }
  await backfill(db);
  // Scheduled runs are 15 minutes apart: autovacuum (naptime 1 min) has processed the
  // tables past its thresholds before the next run. Done here at once, so that the
  // scenarios below start from that state, not from dead index entries no vacuum has
  // reached yet in a bench that runs them back to back.
  const tv = performance.now();
  const vacuumed = await withClient(db.url, (vc) => autovacuumStandIn(vc));
  record('setup', 'VACUUM (ANALYZE) of the tables past autovacuum\'s thresholds (what autovacuum does between runs)', `${ms(performance.now() - tv)}: ${vacuumed.join(', ')}`);
  if (wants('steady')) await steady(db);
  if (wants('latency')) await latency(db);
  if (wants('idle')) await idle(db);
  const size = (await db.pool.query<{ size: string; bytes: string }>(
    `SELECT pg_size_pretty(pg_database_size(current_database())) AS size, pg_database_size(current_database()) AS bytes`)).rows[0]!;
  record('end', 'database size (pg_database_size)', size.size);
  const big = (await db.pool.query<{ name: string; size: string }>(
    `SELECT c.oid::regclass::text AS name, pg_size_pretty(pg_total_relation_size(c.oid)) AS size
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'm') AND n.nspname IN ('public', 'canon', 'canon_internal', 'ops')
     ORDER BY pg_total_relation_size(c.oid) DESC LIMIT 6`)).rows;
  record('end', 'largest tables', big.map((b) => `${b.name} ${b.size}`).join(', '));
  record('end', 'peak RSS (node), whole bench', mib(rss.overall()));
} finally {
  rss.stop();
  await db.close();
}
console.log(`\nmachine: ${machineLine}`);
console.log(`command: ${command}`);
const summary = table(results);
console.log(summary);
const file = writeOut(`pipeline-${opts.leads}-${opts.drivers}-${opts.scenario}.md`,
  `machine: ${machineLine}\ncommand: ${command}\n\n${summary}\n`);
console.log(`written: ${file} and the EXPLAIN files in ${opts.out}/`);
