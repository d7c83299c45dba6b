// Demo and labeled data generator: fills public.module_ct_cabinet_leads, public.drivers
// and public.summary_daily with a realistic synthetic data set and records the true
// driver of every lead in demo.lead_truth (read by the matching-quality benchmark).
//
// The generation is set-based SQL in src/demo/*.sql (INSERT ... SELECT over
// generate_series, every value derived from a hash of seed/batch/entity/index/purpose:
// md5 for people and rows, hashint8extended for the millions of trip cells), so a
// million leads take the same code path as the two thousand of the default; this file
// only runs the steps in order, in one transaction, and logs and sums them up.
// Same seed into empty tables = identical rows; without --reset a call appends a new
// batch whose hash inputs and ids never repeat the previous ones.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type pg from 'pg';
import { PROJECT_ROOT } from './config.js';
import { UsageError } from './errors.js';
import type { Logger } from './logger.js';
import { PIPELINE_DEFAULTS } from './pipeline.js';

/**
 * Leads are dated over the last tripDays days: as many as the pipeline's default
 * days_back, so that a first `reconcile` evaluates every demo lead (none is left in
 * NO_IDENTITY only because it is older than the scope).
 */
export const DEMO_DEFAULTS = { seed: 42, leads: 2000, drivers: 5000, tripDays: PIPELINE_DEFAULTS.daysBack } as const;

export interface DemoOptions {
  seed: number;
  leads: number;
  drivers: number;
  tripDays: number;
  reset: boolean;
}

/** Source tables, then the product's data derived from them (emptied by --reset). */
const SOURCE_TABLES = ['public.module_ct_cabinet_leads', 'public.drivers', 'public.summary_daily'];
const CANON_TABLES = [
  'canon.identity_links',
  'canon.identity_unmatched',
  'canon.identity_origin',
  'canon.claims_yango_cabinet_14d',
  'canon.identity_registry',
  // Matching keys: lead_keys follows lead ids (restarted by the reset) and the driver
  // index follows an updated_at watermark, so both would go stale; an empty state row
  // makes the next run rebuild the index in full.
  'canon_internal.lead_keys',
  'canon_internal.driver_index',
  'canon_internal.driver_index_state',
];

/** Unparseable trip dates per valid trip row (at least one of each of the four kinds). */
const GARBAGE_DATE_SHARE = 0.0005;

function sqlFile(name: string): string {
  // From the project root, not this module's URL: the compiled CLI runs from dist/.
  return readFileSync(path.join(PROJECT_ROOT, 'src', 'demo', `${name}.sql`), 'utf8');
}

function checkOptions(opts: DemoOptions): void {
  const limits: [keyof DemoOptions, number, number][] = [
    ['seed', 0, 2147483647],
    ['leads', 0, 10_000_000],
    ['drivers', 0, 10_000_000],
    ['tripDays', 1, 3650],
  ];
  for (const [name, min, max] of limits) {
    const v = opts[name];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      throw new UsageError(`invalid demo option ${name}=${JSON.stringify(v)}: expected an integer from ${min} to ${max}`);
    }
  }
}

/** Rows a step produced: its own count when it returns one ({rows}), else rowCount. */
function rowsOf(res: pg.QueryResult): number {
  const first = res.rows[0] as { rows?: unknown } | undefined;
  return res.command === 'SELECT' && first?.rows !== undefined ? Number(first.rows) : res.rowCount ?? 0;
}

/** Runs one step, logs it, and returns its result. */
async function step<R extends pg.QueryResultRow>(
  client: pg.ClientBase,
  log: Logger,
  name: string,
  text: string,
  params: unknown[] = [],
): Promise<pg.QueryResult<R>> {
  const t0 = performance.now();
  const res: pg.QueryResult<R> | pg.QueryResult<R>[] = await client.query<R>(text, params);
  // A file of several statements returns one result per statement: the last one counts.
  const last = Array.isArray(res) ? res[res.length - 1]! : res;
  log.info({ step: name, rows: rowsOf(last), ms: Math.round(performance.now() - t0) }, 'demo data');
  return last;
}

/** --reset: empty the source tables, the demo schema and the product's derived data. */
async function reset(client: pg.ClientBase, log: Logger): Promise<void> {
  const wanted = [...SOURCE_TABLES, ...CANON_TABLES];
  const { rows } = await client.query<{ name: string }>(
    `SELECT t.name FROM unnest($1::text[]) AS t(name) WHERE to_regclass(t.name) IS NOT NULL`,
    [wanted],
  );
  const present = new Set(rows.map((r) => r.name));
  const source = SOURCE_TABLES.filter((t) => present.has(t));
  const canon = CANON_TABLES.filter((t) => present.has(t));
  const t0 = performance.now();
  // Source tables without CASCADE: a foreign key into them from elsewhere must fail
  // loudly, never empty someone else's table.
  if (source.length > 0) await client.query(`TRUNCATE ${source.join(', ')} RESTART IDENTITY`);
  if (canon.length > 0) await client.query(`TRUNCATE ${canon.join(', ')} CASCADE`);
  await client.query('DROP SCHEMA IF EXISTS demo CASCADE');
  log.info({ step: 'reset', rows: source.length + canon.length, ms: Math.round(performance.now() - t0) }, 'demo data');
}

async function nextBatch(client: pg.ClientBase): Promise<number> {
  const { rows } = await client.query<{ batch: number }>('SELECT coalesce(max(batch), 0) + 1 AS batch FROM demo.batches');
  return rows[0]!.batch;
}

interface TripCounts {
  rows: number;
  ymd_rows: number;
}

async function generateTrips(client: pg.ClientBase, log: Logger): Promise<{ rows: number; ymd: number; garbage: number }> {
  const leads = (await step<TripCounts>(client, log, 'trips_leads', sqlFile('trips_leads'))).rows[0]!;
  const background = (await step<TripCounts>(client, log, 'trips_background', sqlFile('trips_background'))).rows[0]!;
  const valid = leads.rows + background.rows;
  const garbageWanted = Math.max(4, Math.round(valid * GARBAGE_DATE_SHARE));
  const garbage = (await step(client, log, 'trips_garbage', sqlFile('trips_garbage'), [garbageWanted])).rowCount ?? 0;
  return { rows: valid + garbage, ymd: leads.ymd_rows + background.ymd_rows, garbage };
}

/** Counts of this batch's ground truth, for the summary. */
async function truthCounts(client: pg.ClientBase): Promise<Record<string, number>> {
  const { rows } = await client.query<Record<string, number>>(
    `SELECT count(*)::integer AS leads,
            (count(*) FILTER (WHERE true_driver_id IS NOT NULL))::integer AS leads_with_true_driver,
            (count(*) FILTER (WHERE matchable))::integer AS matchable_leads,
            (count(*) FILTER (WHERE scenario LIKE 'HOSTILE%'))::integer AS hostile_leads
     FROM demo.lead_truth WHERE lead_id > (SELECT lead_base FROM demo_params)`,
  );
  return rows[0]!;
}

/** Serial columns follow the explicit ids, so later plain inserts do not collide. */
async function syncSequences(client: pg.ClientBase): Promise<void> {
  await client.query(`
    SELECT setval(s, m)
    FROM (VALUES (pg_get_serial_sequence('public.module_ct_cabinet_leads', 'id'),
                  (SELECT max(id) FROM public.module_ct_cabinet_leads)::bigint),
                 (pg_get_serial_sequence('public.drivers', 'id'), (SELECT max(id) FROM public.drivers)::bigint)) v(s, m)
    WHERE s IS NOT NULL AND m IS NOT NULL`);
}

/** Demo schema, batch number, shared parameters and the per-lead plan. */
async function prepare(client: pg.ClientBase, opts: DemoOptions, log: Logger): Promise<number> {
  await step(client, log, 'schema', sqlFile('schema'));
  const batch = await nextBatch(client);
  await step(client, log, 'params', sqlFile('params'), [opts.seed, batch, opts.leads, opts.drivers, opts.tripDays]);
  await client.query('ANALYZE demo_params');
  await step(client, log, 'plan', sqlFile('plan'));
  await client.query(`
    UPDATE demo_params p
    SET lead_drivers = x.lead_drivers,
        bg_target_share = greatest(0, least(1, (0.6 * p.n_drivers - x.in_target) / nullif(p.n_drivers - x.lead_drivers, 0)))
    FROM (SELECT coalesce(max(coalesce(second_ord, main_ord)), 0) AS lead_drivers,
                 count(main_ord) FILTER (WHERE main_park = target_park)
                 + count(second_ord) FILTER (WHERE second_park = target_park) AS in_target
          FROM demo_plan CROSS JOIN demo_params) x`);
  // Statistics for the temp tables: the later joins are planned on real row counts.
  await client.query('ANALYZE demo_params, demo_plan');
  return batch;
}

/** Drivers, leads and their ground truth; returns the number of drivers written. */
async function render(client: pg.ClientBase, log: Logger): Promise<number> {
  const drivers = (await step(client, log, 'drivers', sqlFile('drivers'))).rowCount ?? 0;
  await step(client, log, 'leads', sqlFile('leads'));
  await step(client, log, 'leads_dup', sqlFile('leads_dup'));
  await step(client, log, 'truth', sqlFile('truth'));
  return drivers;
}

/** Records the batch (options, id ranges, summary) in demo.batches. */
async function recordBatch(client: pg.ClientBase, batch: number, opts: DemoOptions, summary: Record<string, number>): Promise<void> {
  await client.query(
    `INSERT INTO demo.batches (batch, seed, leads, drivers, trip_days, lead_id_from, driver_id_from, business_today, summary)
     SELECT $1, $2, $3, $4, $5, lead_base + 1, driver_base + 1, today, $6 FROM demo_params`,
    [batch, opts.seed, opts.leads, opts.drivers, opts.tripDays, JSON.stringify(summary)],
  );
}

async function generate(client: pg.ClientBase, opts: DemoOptions, log: Logger): Promise<Record<string, number>> {
  if (opts.reset) await reset(client, log);
  const batch = await prepare(client, opts, log);
  const drivers = await render(client, log);
  const trips = await generateTrips(client, log);
  await syncSequences(client);
  const truth = await truthCounts(client);
  const summary: Record<string, number> = {
    batch,
    leads: truth.leads!,
    drivers,
    trip_rows: trips.rows,
    leads_with_true_driver: truth.leads_with_true_driver!,
    matchable_leads: truth.matchable_leads!,
    hostile_leads: truth.hostile_leads!,
    date_ymd_rows: trips.ymd,
    garbage_date_rows: trips.garbage,
  };
  await recordBatch(client, batch, opts, summary);
  return summary;
}

/**
 * Generates one batch of demo data (see the file header). Runs in its own transaction on
 * the given client, which must not be inside one: either everything is written or nothing.
 * Returns the summary counts of this batch and the elapsed milliseconds.
 */
export async function generateDemoData(client: pg.ClientBase, opts: DemoOptions, log: Logger): Promise<Record<string, number>> {
  checkOptions(opts);
  const t0 = performance.now();
  await client.query('BEGIN');
  try {
    // One generator at a time per database: a batch's ids start after the current maximum.
    await client.query(`SELECT pg_advisory_xact_lock(hashtext('cabinet-leads demo generator'))`);
    // Sorts and hashes over a million plan rows stay in memory; JIT would spend seconds
    // compiling the wide one-row cross joins for no gain.
    await client.query(`SET LOCAL work_mem = '256MB'`);
    await client.query('SET LOCAL jit = off');
    // A million leads take minutes: a role's default statement_timeout must not cut them.
    await client.query('SET LOCAL statement_timeout = 0');
    // Memoize (PostgreSQL 14+) caches per-row hash subqueries whose keys never repeat.
    await client.query(
      `SELECT set_config('enable_memoize', 'off', true) WHERE current_setting('server_version_num')::integer >= 140000`,
    );
    const summary = await generate(client, opts, log);
    await client.query('COMMIT');
    const result = { ...summary, ms: Math.round(performance.now() - t0) };
    log.info({ step: 'done', ...result }, 'demo data');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}
