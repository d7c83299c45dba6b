// What the reliability tests share: the invariant check every test ends with, a
// fingerprint of the product's data that two databases built from the same seed can be
// compared on, real CLI and worker processes that a test can hold, kill or stop, and a
// PostgreSQL server of a test's own (embedded, in a temp folder) that it may restart.
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import net from 'node:net';
import path from 'node:path';
import pg from 'pg';
import { PROJECT_ROOT } from '../../src/config.js';
import { generateDemoData, type DemoOptions } from '../../src/demo.js';
import { endOnSignals, startEmbedded, type EmbeddedServer } from '../../src/embedded.js';
import { createLogger } from '../../src/logger.js';
import { migrate } from '../../src/migrate.js';
import { BIN } from '../helpers/cli.js';
import { cloneDatabase, type TestDb } from '../helpers/db.js';
import { waitFor } from '../helpers/locks.js';

export const log = createLogger({ logLevel: 'silent', logFormat: 'json' });

export { FAILPOINT_LOCK, waitFor } from '../helpers/locks.js';

type Db = Pick<TestDb, 'query'>;

export interface Violation {
  invariant: string;
  violations: string;
  examples: string[];
}

/** ops.check_invariants() rows with violations: what every test ends with (expects none). */
export async function violations(db: Db): Promise<Violation[]> {
  return db.query<Violation>(`SELECT invariant, violations, examples FROM ops.check_invariants() WHERE violations > 0`);
}

/**
 * Lead keys with lead_date in the last daysBack days that are neither linked nor have an
 * unmatched row: after a completed run there are none (SPEC 6: every selected lead is
 * evaluated). Read from the source table, so a lead row never keyed counts too.
 */
export async function leadKeysNotEvaluated(db: Db, daysBack = 30): Promise<string[]> {
  const rows = await db.query<{ k: string }>(
    `SELECT DISTINCT left(s.k, 60) AS k
     FROM (SELECT canon.lead_source_pk(l.external_id, l.id) AS k FROM public.module_ct_cabinet_leads l
           WHERE l.lead_created_at >= (canon.business_today() - $1::int)::timestamp AND isfinite(l.lead_created_at)) s
     WHERE NOT EXISTS (SELECT 1 FROM canon.identity_links i WHERE i.source_table = 'module_ct_cabinet_leads' AND i.source_pk = s.k)
       AND NOT EXISTS (SELECT 1 FROM canon.identity_unmatched u WHERE u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = s.k)
     ORDER BY 1`,
    [daysBack],
  );
  return rows.map((r) => r.k);
}

export interface RunRow {
  id: string;
  status: string;
  trigger: string;
  backend_pid: number;
  client_pid: number | null;
  worker_job_id: string | null;
  error_message: string | null;
  error_sqlstate: string | null;
  stats: Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
}

export async function runs(db: Db): Promise<RunRow[]> {
  return db.query<RunRow>(
    `SELECT id, status, trigger, backend_pid, client_pid, worker_job_id, error_message, error_sqlstate, stats
     FROM canon.ingestion_runs ORDER BY id`,
  );
}

/** The demo generator's data set (realistic rows plus its hostile ones) into a database. */
export async function seedDemo(db: { pool: pg.Pool }, opts: Partial<DemoOptions> & { seed: number }): Promise<void> {
  const c = await db.pool.connect();
  try {
    await generateDemoData(c, { leads: 300, drivers: 600, tripDays: 30, reset: false, ...opts }, log);
  } finally {
    c.release();
  }
}

/**
 * The product's data, independent of what differs between two databases that did the same
 * work: person keys (random uuids) are replaced by the sorted keys of the records linked
 * to the person; times and run ids are left out. Run log excluded.
 */
export async function canonFingerprint(db: Db): Promise<Record<string, string>> {
  const person = `(SELECT string_agg(x.source_table || ':' || x.source_pk, ',' ORDER BY x.source_table, x.source_pk)
                   FROM canon.identity_links x WHERE x.person_key = t.person_key)`;
  const tables: Record<string, string> = {
    identity_registry: `SELECT ${person} AS person, confidence_level, primary_phone, primary_license, primary_name FROM canon.identity_registry t`,
    identity_links: `SELECT source_table, source_pk, ${person} AS person, match_rule, match_score, confidence_level, evidence FROM canon.identity_links t`,
    identity_unmatched: `SELECT source_table, source_pk, reason_code, details, candidates, status, attempts FROM canon.identity_unmatched`,
    identity_origin: `SELECT ${person} AS person, origin_tag, origin_source_id, confidence_level, origin_created_at, decided_by FROM canon.identity_origin t`,
    claims: `SELECT lead_source_pk, milestone, ${person} AS person, driver_id, lead_date, amount_expected, currency, status FROM canon.claims_yango_cabinet_14d t`,
    lead_keys: `SELECT lead_id, lead_source_pk, lead_created_at, lead_date, phone_norm, plate_norm, license_norm, name_norm, lead_name, source_hash FROM canon_internal.lead_keys`,
    driver_index: `SELECT driver_id, park_id, phone_norm, license_norm, plate_norm, name_norm, hire_date, source_hash FROM canon_internal.driver_index`,
  };
  const out: Record<string, string> = {};
  for (const [name, sql] of Object.entries(tables)) {
    const [r] = await db.query<{ h: string; n: string }>(
      `SELECT md5(coalesce(string_agg(f.r, '|' ORDER BY f.r), '')) AS h, count(*) AS n FROM (SELECT q::text AS r FROM (${sql}) q) f`,
    );
    out[name] = `${r!.n} rows, md5 ${r!.h}`;
  }
  return out;
}

/** A CLI or worker process of the test, with its log lines (JSON on stderr). */
export interface Proc {
  child: ChildProcess;
  name: string;
  stdout: string[];
  stderr: string[];
  exit: Promise<number | null>;
  exited: boolean;
}

export function startProcess(name: string, args: string[], env: NodeJS.ProcessEnv): Proc {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, LOG_FORMAT: 'json', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const proc: Proc = { child, name, stdout: [], stderr: [], exited: false, exit: Promise.resolve(null) };
  child.stdout!.on('data', (d: Buffer) => proc.stdout.push(...d.toString('utf8').split('\n').filter(Boolean)));
  child.stderr!.on('data', (d: Buffer) => proc.stderr.push(...d.toString('utf8').split('\n').filter(Boolean)));
  proc.exit = new Promise((resolve) =>
    child.on('exit', (code, signal) => {
      proc.exited = true;
      resolve(code ?? (signal ? -1 : null));
    }),
  );
  return proc;
}

/** A `cabinet-leads worker` process on a crontab with nothing scheduled (jobs are added by the test). */
export function startWorker(name: string, url: string, crontab: string, env: NodeJS.ProcessEnv = {}): Proc {
  return startProcess(name, ['worker', '--crontab', crontab], { DATABASE_URL: url, ...env });
}

export async function waitForLog(p: Proc, text: string, ms = 60_000): Promise<void> {
  await waitFor(async () => (p.stderr.some((l) => l.includes(text)) ? true : p.exited ? true : undefined), `${p.name} to log ${text}`, ms);
  if (!p.stderr.some((l) => l.includes(text))) throw new Error(`${p.name} exited before logging ${text}: ${p.stderr.slice(-5).join('\n')}`);
}

/** SIGTERM, then SIGKILL after ms; returns the exit code (-1 when it ended on a signal). */
export async function stopProcess(p: Proc, ms = 20_000): Promise<number | null> {
  if (p.exited) return p.exit;
  p.child.kill('SIGTERM');
  const timer = setTimeout(() => p.child.kill('SIGKILL'), ms);
  const code = await p.exit;
  clearTimeout(timer);
  return code;
}

/** A pool on a database of an own server, with the query helper of TestDb. */
export function openDb(url: string): { url: string; pool: pg.Pool; query: Db['query']; close(): Promise<void> } {
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  pool.on('error', () => {});
  return {
    url,
    pool,
    query: async (sql, params) => (await pool.query(sql, params)).rows,
    close: () => pool.end().catch(() => {}),
  };
}

/**
 * A copy of a prepared database (CREATE DATABASE ... TEMPLATE), for tests that each need
 * the same expensive starting point. Nobody may be connected to the source meanwhile.
 */
export async function cloneDb(source: string, label: string): Promise<TestDb> {
  return cloneDatabase(source, label);
}

let crontab: string | undefined;

/** An empty crontab file (one per test process, removed on exit): the test adds the jobs itself. */
export function emptyCrontab(): string {
  if (crontab === undefined) {
    const dir = mkdtempSync(path.join(tmpdir(), 'cabinet-crontab-'));
    crontab = path.join(dir, 'crontab');
    writeFileSync(crontab, '# jobs are added by the test (graphile_worker.add_job)\n');
    process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  }
  return crontab;
}

export async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => {});
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => {});
  }
}

/** Where a server listens, for net.connect: its Unix socket, or its TCP address. */
export function serverAddress(server: EmbeddedServer): net.NetConnectOpts {
  const e = server.endpoint;
  return e.transport === 'socket' ? { path: path.join(e.socketDir, `.s.PGSQL.${e.port}`) } : { host: e.host, port: e.port };
}

/** Forwards 127.0.0.1:<port> to where the server listens now, so clients keep one address across a restart. */
export class TcpProxy {
  private readonly sockets = new Set<net.Socket>();
  private constructor(
    private readonly server: net.Server,
    public readonly port: number,
    public target: net.NetConnectOpts,
  ) {}

  static async start(target: net.NetConnectOpts): Promise<TcpProxy> {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const proxy = new TcpProxy(server, (server.address() as net.AddressInfo).port, target);
    server.on('connection', (client) => {
      const upstream = net.connect(proxy.target);
      for (const s of [client, upstream]) {
        proxy.sockets.add(s);
        s.on('close', () => proxy.sockets.delete(s));
        s.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream);
      upstream.pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    return proxy;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/**
 * A PostgreSQL server of the test's own: embedded, in a temp folder, with a migrated
 * template; clients connect through a proxy whose port survives restarts.
 */
export class OwnServer {
  private static readonly TEMPLATE = 'reliability_tpl';
  private static stopsOnSignals = false;
  private constructor(
    private readonly dir: string,
    private server: EmbeddedServer,
    private readonly proxy: TcpProxy,
  ) {}

  static async start(): Promise<OwnServer> {
    // The server runs in its own session: a test process ended by a signal stops it first.
    if (!OwnServer.stopsOnSignals) endOnSignals();
    OwnServer.stopsOnSignals = true;
    const dir = mkdtempSync(path.join(tmpdir(), 'cabinet-reliability-'));
    chmodSync(dir, 0o755); // the server runs as the postgres user when the tests run as root
    const server = await startEmbedded(path.join(dir, 'data'), log);
    const proxy = await TcpProxy.start(serverAddress(server));
    const own = new OwnServer(dir, server, proxy);
    await withClient(own.url('postgres'), (c) => c.query(`CREATE DATABASE ${OwnServer.TEMPLATE}`));
    await migrate(own.url(OwnServer.TEMPLATE), log);
    return own;
  }

  /** Connection string of a database on this server (through the proxy). */
  url(database: string): string {
    return `postgres://postgres@127.0.0.1:${this.proxy.port}/${database}`;
  }

  async createDb(name: string): Promise<string> {
    await withClient(this.url('postgres'), (c) => c.query(`CREATE DATABASE ${name} TEMPLATE ${OwnServer.TEMPLATE}`));
    return this.url(name);
  }

  /**
   * Stops the server (fast shutdown: every session is terminated, open transactions roll
   * back), leaves it down for downtimeMs, and starts it again.
   */
  async restart(downtimeMs = 0): Promise<void> {
    await this.server.stop();
    await new Promise((r) => setTimeout(r, downtimeMs));
    this.server = await startEmbedded(path.join(this.dir, 'data'), log);
    this.proxy.target = serverAddress(this.server);
  }

  async stop(): Promise<void> {
    await this.proxy.close();
    await this.server.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
