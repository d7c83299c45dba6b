// The first pass on a freshly migrated database, side by side with the per-lead baseline,
// and the full driver-index build against its floor (issue 17, items 1, 2 and 5):
//   npx tsx bench/first-pass.ts --drivers 20000 --leads 2000,10000 [--reps 3]
//   npx tsx bench/first-pass.ts --drivers 1000000 --leads 0 [--reps 1]     (the index build alone)
// Options: --seed 42, --trip-days 30, --days-back 32 (every demo lead in scope),
// --baseline-leads 2000 (per-lead baseline on at most this many leads of the run, scaled),
// --floor-reps 3 (floor statements per copy, the least taken).
// For each lead count, demo data (src/demo.ts) fills one migrated database, which is then
// copied for every repetition (CREATE DATABASE ... TEMPLATE): each copy is a freshly
// migrated database with the data, never run on. On it: one pipeline run with
// p_limit = the lead count (every lead in one run; with --leads 0, limit 0: the index
// build, the claims and the snapshot only), its steps as the run logged them
// (stats.steps); then, on the same copy, the floor of the index build; then the per-lead
// baseline (bench/per-lead.ts) on the leads of the run.
//   floor of the index build: a bare CREATE TEMP TABLE AS SELECT of the driver index's
//     columns from public.drivers normalised by the same functions (canon.normalize_phone,
//     normalize_license, normalize_plate, normalize_name), in a transaction rolled back.
//   per-lead baseline: the predecessor's approach from Node, about 10 statements a lead
//     (bench/per-lead.ts). The predecessor costs 6 to 7 ms per lead on this server, more
//     than this stand-in: ratios against it understate the gain.
// Every figure is printed with the load average at the time; the per-lead baseline's
// milliseconds per lead are the yardstick of the machine's speed at that moment.
import pg from 'pg';
import { generateDemoData } from '../src/demo.js';
import { createLogger } from '../src/logger.js';
import { benchArgs, intArg, loadAvg, machine, median, ms, strArg, table, templateDatabase, type Stats } from './lib.js';
import { perLeadBaseline } from './per-lead.js';

benchArgs(import.meta.url, {
  values: ['drivers', 'leads', 'reps', 'seed', 'trip-days', 'days-back', 'baseline-leads', 'floor-reps'],
});
const opts = {
  drivers: intArg('drivers', 20000),
  leads: strArg('leads', '2000,10000').split(',').map((x) => {
    const n = Number(x);
    if (!Number.isInteger(n) || n < 0) throw new Error(`invalid --leads ${x}: expected integers >= 0, comma-separated`);
    return n;
  }),
  reps: Math.max(1, intArg('reps', 3)),
  seed: intArg('seed', 42),
  tripDays: intArg('trip-days', 30),
  daysBack: intArg('days-back', 32),
  baselineLeads: intArg('baseline-leads', 2000),
  floorReps: Math.max(1, intArg('floor-reps', 3)),
};
const command = `npx tsx bench/first-pass.ts --drivers ${opts.drivers} --leads ${opts.leads.join(',')} --reps ${opts.reps} --seed ${opts.seed} --trip-days ${opts.tripDays} --days-back ${opts.daysBack} --baseline-leads ${opts.baselineLeads} --floor-reps ${opts.floorReps}`;
const log = createLogger({ logLevel: 'warn', logFormat: 'json' });

/** The floor of the index build: the index's columns normalised by the same functions, into a temp table. */
const FLOOR_SQL = `
  CREATE TEMP TABLE driver_index_floor ON COMMIT DROP AS
  SELECT d.driver_id, d.park_id,
         canon.normalize_phone(d.phone) AS phone_norm,
         canon.normalize_license(coalesce(nullif(btrim(d.license_normalized_number), ''), d.license_number)) AS license_norm,
         canon.normalize_plate(coalesce(nullif(btrim(d.car_normalized_number), ''), d.car_number)) AS plate_norm,
         canon.normalize_name(coalesce(nullif(btrim(d.full_name), ''), concat_ws(' ', d.first_name, d.middle_name, d.last_name))) AS name_norm,
         d.hire_date
  FROM public.drivers d`;

interface Step { step: string; ms: number }
interface Rep {
  leads: number;
  rep: number;
  runMs: number;
  clientMs: number;
  steps: Step[];
  evaluated: number;
  linked: number;
  floorMs: number;
  perLead?: { msPerLead: number; statements: number; leads: number; linked: number; triggersOff: boolean };
  load: string;
}

const lines: string[][] = [['lead count', 'rep', 'measure', 'value', 'load avg (1/5/15 min)']];
function recordAt(leads: number, rep: number | string, measure: string, value: string, load = loadAvg()): void {
  lines.push([String(leads), String(rep), measure, value, load]);
  console.log(`  ${leads} leads | rep ${rep} | ${measure} | ${value} | load ${load}`);
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

async function floorMs(url: string): Promise<number> {
  return withClient(url, async (c) => {
    await c.query('SET jit = off');
    const times: number[] = [];
    for (let i = 0; i < opts.floorReps; i++) {
      await c.query('BEGIN');
      const t = performance.now();
      await c.query(FLOOR_SQL);
      times.push(performance.now() - t);
      await c.query('ROLLBACK');
    }
    return Math.min(...times);
  });
}

async function oneRep(template: Awaited<ReturnType<typeof templateDatabase>>, leads: number, rep: number): Promise<Rep> {
  const copy = await template.copy(`r${rep}`);
  try {
    const load = loadAvg();
    const { run, clientMs } = await withClient(copy.url, async (c) => {
      const t = performance.now();
      const res = await c.query<{ run: { id: number; status: string; stats: Stats; error_message: string | null } }>(
        `CALL ops.reconcile_cabinet_leads_pipeline(p_days_back => ${opts.daysBack}, p_limit => ${leads}, p_raise_on_failure => false)`);
      const r = res.rows[0]!.run;
      if (r.status !== 'COMPLETED') throw new Error(`pipeline run ${r.id} ${r.status}: ${r.error_message}`);
      return { run: r, clientMs: performance.now() - t };
    });
    const steps = (run.stats['steps'] as Step[]).map((s) => ({ step: s.step, ms: Number(s.ms) }));
    const floor = await floorMs(copy.url);
    const out: Rep = {
      leads, rep, steps, load, floorMs: floor, clientMs,
      runMs: Number(run.stats['durations_ms']['total']),
      evaluated: Number(run.stats['match']?.['leads_evaluated'] ?? 0),
      linked: Number(run.stats['match']?.['newly_linked'] ?? 0),
    };
    if (leads > 0) {
      const ids = (await withClient(copy.url, (c) => c.query<{ lead_id: number }>(
        `SELECT min(k.lead_id) AS lead_id FROM canon_internal.lead_keys k
         WHERE k.lead_source_pk IN (
           SELECT source_pk FROM canon.identity_links WHERE source_table = 'module_ct_cabinet_leads' AND run_id = $1
           UNION SELECT source_pk FROM canon.identity_unmatched WHERE last_run_id = $1)
         GROUP BY k.lead_source_pk ORDER BY 1`, [run.id]))).rows.map((r) => r.lead_id);
      const b = await perLeadBaseline(copy.url, ids.slice(0, opts.baselineLeads), run.id);
      out.perLead = { msPerLead: b.ms / b.leads, statements: b.statements / b.leads, leads: b.leads, linked: b.linked, triggersOff: b.triggersOff };
    }
    return out;
  } finally {
    await copy.drop();
  }
}

function report(reps: Rep[]): void {
  const leads = reps[0]!.leads;
  for (const r of reps) {
    // each line with the load average when its repetition started
    const record = (l: number, rep: number, measure: string, value: string) => recordAt(l, rep, measure, value, r.load);
    record(leads, r.rep, 'run: SQL total (stats.durations_ms.total) / client', `${ms(r.runMs)} / ${ms(r.clientMs)}, ${r.evaluated} leads evaluated`);
    record(leads, r.rep, 'run: steps (stats.steps, ms)', r.steps.map((s) => `${s.step} ${s.ms}`).join(', '));
    const build = r.steps.find((s) => s.step === 'refresh_driver_index')?.ms ?? NaN;
    record(leads, r.rep, `index build (fresh database) / floor (least of ${opts.floorReps}, same copy)`,
      `${ms(build)} / ${ms(r.floorMs)} = ${(build / r.floorMs).toFixed(2)}x`);
    if (r.perLead) {
      const p = r.perLead;
      const scaled = p.msPerLead * r.evaluated;
      const withoutIndex = r.runMs - build;
      record(leads, r.rep, `per-lead baseline (${p.leads} leads of the run, loopback)`,
        `${p.msPerLead.toFixed(2)} ms/lead, ${p.statements.toFixed(1)} statements/lead, ${p.linked} linked; scaled to ${r.evaluated}: ${ms(scaled)}${p.triggersOff ? '' : ' (our triggers on: not allowed to turn them off)'}`);
      record(leads, r.rep, 'ratio per-lead baseline (scaled) / run SQL total; / run without the index build',
        `${(scaled / r.runMs).toFixed(1)}x; ${(scaled / withoutIndex).toFixed(1)}x (the predecessor costs 6 to 7 ms/lead here: these understate the gain)`);
      record(leads, r.rep, 'run SQL total in leads of the per-lead baseline (run ms / ms per lead)', `${Math.round(r.runMs / p.msPerLead)} leads`);
    }
  }
  // medians over the repetitions, per step
  const names = reps[0]!.steps.map((s) => s.step);
  const med = (f: (r: Rep) => number) => median(reps.map(f));
  const rows: (string | number)[][] = [['step', `median of ${reps.length} (ms)`, 'each rep (ms)']];
  for (const n of names) {
    const v = (r: Rep) => r.steps.find((s) => s.step === n)?.ms ?? 0;
    rows.push([n, med(v).toFixed(1), reps.map(v).join(' / ')]);
  }
  rows.push(['total (SQL)', med((r) => r.runMs).toFixed(1), reps.map((r) => r.runMs).join(' / ')]);
  rows.push(['index floor (least of the copy)', med((r) => r.floorMs).toFixed(1), reps.map((r) => r.floorMs.toFixed(1)).join(' / ')]);
  if (reps[0]!.perLead) rows.push(['per-lead baseline, ms/lead', med((r) => r.perLead!.msPerLead).toFixed(2), reps.map((r) => r.perLead!.msPerLead.toFixed(2)).join(' / ')]);
  console.log(`\nper-step table, ${leads} leads / ${opts.drivers} drivers, first run on a fresh copy (limit ${leads}):\n${table(rows)}\n`);
  perStep.push(`${leads} leads / ${opts.drivers} drivers, limit ${leads}:\n${table(rows)}`);
}

const perStep: string[] = [];
let machineLine = '';
console.log(`command: ${command}`);
for (const leads of opts.leads) {
  console.log(`\n== ${leads} leads, ${opts.drivers} drivers: demo data, then ${opts.reps} fresh copies`);
  const t = performance.now();
  let gen: Record<string, number> = {};
  const template = await templateDatabase('first_pass', async (c) => {
    gen = await generateDemoData(c, { seed: opts.seed, leads, drivers: opts.drivers, tripDays: opts.tripDays, reset: false }, log);
  });
  machineLine = machine(template.serverVersion);
  console.log(`machine: ${machineLine}`);
  recordAt(leads, '-', 'demo data (set-based SQL)', `${JSON.stringify(gen)} in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  try {
    const reps: Rep[] = [];
    for (let rep = 1; rep <= opts.reps; rep++) reps.push(await oneRep(template, leads, rep));
    report(reps);
  } finally {
    await template.close();
  }
}
console.log(`\nmachine: ${machineLine}`);
console.log(`command: ${command}`);
console.log(table(lines));
console.log(`\n${perStep.join('\n\n')}`);
