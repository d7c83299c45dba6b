// Shared plumbing of the benchmarks: a fresh database on the configured server (or the
// embedded one), migrated, with demo data; a pipeline call that returns its stats; and
// the machine description printed with every result.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { intFlag } from '../src/cli/args.js';
import { loadConfig } from '../src/config.js';
import { openDatabase, type Database } from '../src/db.js';
import { generateDemoData, type DemoOptions } from '../src/demo.js';
import { createLogger, type Logger } from '../src/logger.js';
import { migrate } from '../src/migrate.js';

export interface BenchDb {
  pool: pg.Pool;
  url: string;
  log: Logger;
  serverVersion: string;
  close(): Promise<void>;
}

function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

/** A new database for this benchmark (dropped at close unless KEEP_BENCH_DB=1). */
export async function benchDatabase(label: string): Promise<BenchDb> {
  const config = loadConfig();
  const log = createLogger({ logLevel: process.env.LOG_LEVEL ?? 'warn', logFormat: config.logFormat });
  const server: Database = await openDatabase(config, log, 'cabinet-leads-bench');
  const name = `bench_${label}_${randomBytes(3).toString('hex')}`;
  await server.pool.query(`CREATE DATABASE ${name}`);
  const url = withDatabase(server.connectionString, name);
  await migrate(url, log);
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  const v = await pool.query<{ v: string }>(`SELECT current_setting('server_version') AS v`);
  return {
    pool,
    url,
    log,
    serverVersion: v.rows[0]!.v,
    async close() {
      await pool.end();
      if (process.env.KEEP_BENCH_DB !== '1') await server.pool.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      else console.log(`kept database ${name}`);
      await server.close();
    },
  };
}

/**
 * A migrated database filled once (`fill`), then copied for each measurement that needs a
 * fresh one (CREATE DATABASE ... TEMPLATE: a freshly migrated database with the data,
 * never run on). Every copy and the template are dropped at close unless KEEP_BENCH_DB=1.
 */
export async function templateDatabase(label: string, fill: (c: pg.Client) => Promise<void>): Promise<{
  serverVersion: string;
  copy(label: string): Promise<{ url: string; drop(): Promise<void> }>;
  close(): Promise<void>;
}> {
  const config = loadConfig();
  const log = createLogger({ logLevel: process.env.LOG_LEVEL ?? 'warn', logFormat: config.logFormat });
  const server: Database = await openDatabase(config, log, 'cabinet-leads-bench');
  const name = `bench_${label}_${randomBytes(3).toString('hex')}`;
  await server.pool.query(`CREATE DATABASE ${name}`);
  const url = withDatabase(server.connectionString, name);
  await migrate(url, log);
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  let serverVersion: string;
  try {
    await fill(c);
    await c.query('ANALYZE');
    serverVersion = (await c.query<{ v: string }>(`SELECT current_setting('server_version') AS v`)).rows[0]!.v;
  } finally {
    await c.end();
  }
  const keep = process.env.KEEP_BENCH_DB === '1';
  let copies = 0;
  return {
    serverVersion,
    async copy(copyLabel: string) {
      const copyName = `${name}_${copyLabel}_${++copies}`;
      await server.pool.query(`CREATE DATABASE ${copyName} TEMPLATE ${name}`);
      return {
        url: withDatabase(server.connectionString, copyName),
        async drop() {
          if (!keep) await server.pool.query(`DROP DATABASE IF EXISTS ${copyName} WITH (FORCE)`);
        },
      };
    },
    async close() {
      if (!keep) await server.pool.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      else console.log(`kept database ${name} (and its copies)`);
      await server.close();
    },
  };
}

export async function demo(db: BenchDb, opts: Omit<DemoOptions, 'reset'>): Promise<Record<string, number>> {
  const c = await db.pool.connect();
  try {
    return await generateDemoData(c, { ...opts, reset: false }, db.log);
  } finally {
    c.release();
  }
}

/**
 * What autovacuum would have done by now, for a server that runs with it off (this
 * machine's CI configuration): VACUUM (ANALYZE) of every table past one of its thresholds
 * (dead rows, rows inserted since the last vacuum, rows changed since the last analyze),
 * with the server's settings. Stats are flushed first, so this session's own writes count.
 * Returns the tables processed.
 */
export async function autovacuumStandIn(c: pg.ClientBase): Promise<string[]> {
  // (PostgreSQL 15 and later; before, the collector publishes on its own within 0.5 s)
  const { rows: [v] } = await c.query<{ n: number }>(`SELECT current_setting('server_version_num')::int AS n`);
  if (v!.n >= 150000) await c.query(`SELECT pg_stat_force_next_flush()`);
  await c.query('SELECT 1');
  const { rows } = await c.query<{ t: string }>(`
    SELECT format('%I.%I', s.schemaname, s.relname) AS t
    FROM pg_stat_user_tables s
    JOIN pg_class c ON c.oid = s.relid
    CROSS JOIN LATERAL (SELECT greatest(c.reltuples, 0) AS n) r
    WHERE s.n_dead_tup > current_setting('autovacuum_vacuum_threshold')::float8
                         + current_setting('autovacuum_vacuum_scale_factor')::float8 * r.n
       OR s.n_ins_since_vacuum > current_setting('autovacuum_vacuum_insert_threshold')::float8
                                 + current_setting('autovacuum_vacuum_insert_scale_factor')::float8 * r.n
       OR s.n_mod_since_analyze > current_setting('autovacuum_analyze_threshold')::float8
                                  + current_setting('autovacuum_analyze_scale_factor')::float8 * r.n
    ORDER BY 1`);
  const tables = rows.map((r) => r.t);
  if (tables.length) await c.query(`VACUUM (ANALYZE) ${tables.join(', ')}`);
  return tables;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Stats = Record<string, any>;

export async function pipeline(db: BenchDb, args: string): Promise<{ status: string; stats: Stats; ms: number }> {
  const c = await db.pool.connect();
  try {
    const t = performance.now();
    const res = await c.query<{ run: { status: string; stats: Stats; error_message: string | null } }>(
      `CALL ops.reconcile_cabinet_leads_pipeline(${args}, p_raise_on_failure => false)`,
    );
    const run = res.rows[0]!.run;
    if (run.status !== 'COMPLETED') throw new Error(`pipeline run ${run.status}: ${run.error_message}`);
    return { status: run.status, stats: run.stats, ms: performance.now() - t };
  } finally {
    c.release();
  }
}

export function machine(serverVersion: string): string {
  return `${os.cpus().length} x ${os.cpus()[0]?.model.trim()}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, node ${process.version}, PostgreSQL ${serverVersion}, ${new Date().toISOString().slice(0, 10)}`;
}

export function table(rows: (string | number)[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  return rows.map((r) => '| ' + r.map((c, i) => String(c).padEnd(widths[i]!)).join(' | ') + ' |').join('\n');
}

/**
 * `--help` prints the script's usage (its header comment) and exits 0;
 * a flag the script does not know exits 2 naming it (a typo such as `--lead 1000000`
 * would otherwise run the default volume for half an hour). Call before anything else.
 */
export function benchArgs(scriptUrl: string, known: { values: readonly string[]; switches?: readonly string[] }): void {
  const argv = process.argv.slice(2);
  if (argv.includes('--help') || argv.includes('-h')) {
    // the script's header comment is its usage (one text, not a copy that drifts)
    const header = readFileSync(fileURLToPath(scriptUrl), 'utf8').split('\n');
    const usage = header.slice(0, header.findIndex((l) => !l.startsWith('//'))).map((l) => l.replace(/^\/\/ ?/, ''));
    process.stdout.write(usage.join('\n') + '\n');
    process.exit(0);
  }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const name = a.replace(/^--/, '');
    if (a.startsWith('--') && known.values.includes(name)) i++;
    else if (!(a.startsWith('--') && (known.switches ?? []).includes(name))) {
      process.stderr.write(`unknown argument ${JSON.stringify(a)}; --help lists the options\n`);
      process.exit(2);
    }
  }
}

/** An integer flag of a bench script, validated like the CLI's flags. */
export function intArg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return intFlag('bench', name, i < 0 ? undefined : process.argv[i + 1], fallback, 0);
}

export function strArg(name: string, fallback: string, allowed?: readonly string[]): string {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = process.argv[i + 1];
  if (v === undefined || v.startsWith('--') || (allowed && !allowed.includes(v))) {
    throw new Error(`invalid --${name} ${v ?? '(missing)'}: expected ${allowed ? allowed.join(' | ') : 'a value'}`);
  }
  return v;
}

/** The load average now, as printed next to every figure. */
export const loadAvg = (): string => os.loadavg().map((l) => l.toFixed(2)).join(' ');
/** Milliseconds as printed in the tables. */
export const ms = (x: number): string => `${x < 10 ? x.toFixed(1) : Math.round(x)} ms`;
export const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
