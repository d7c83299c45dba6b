// The embedded server lets in only its owner (src/embedded.ts, docs/security.md): a Unix
// socket in a folder only the server's OS user may enter, no TCP at all; where there is no
// Unix socket (CABINET_EMBEDDED_TRANSPORT=tcp, the Windows default) a password kept 0600
// in the data folder, scram-sha-256, never trust. The product and its owner connect as
// before (db-url, psql); another OS user cannot.
//
// What this proves: the modes and owners of the socket folder, the socket and the
// password file; the server's own view (listen_addresses, pg_hba rules); that the server
// process does not inherit the product's secrets; and, when the tests run as root, that
// the OS user `nobody` running psql gets "Permission denied" on the socket and cannot read
// the password file. Run as another user, the nobody part is skipped (logged).
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import pg from 'pg';
import { connectionStringOf, serverState, startEmbedded, type EmbeddedServer } from '../src/embedded.js';
import { createLogger } from '../src/logger.js';
import { runCli } from './helpers/cli.js';
import { embeddedDataDir } from './helpers/embedded.js';

const log = createLogger({ logLevel: 'silent', logFormat: 'json' });
const SECRET = 'hook-token-5b1e9f0c';

function psqlAvailable(): boolean {
  return spawnSync('psql', ['--version'], { stdio: 'ignore' }).status === 0;
}

/** uid and gid of `nobody` when this process may act as it (root), else undefined. */
function nobody(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  try {
    return {
      uid: Number(execFileSync('id', ['-u', 'nobody'], { encoding: 'utf8' }).trim()),
      gid: Number(execFileSync('id', ['-g', 'nobody'], { encoding: 'utf8' }).trim()),
    };
  } catch {
    return undefined;
  }
}

/** The OS user the server runs as: `postgres` when we are root (PostgreSQL refuses root), else us. */
function serverUid(): number {
  return process.getuid?.() === 0 ? Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim()) : process.getuid!();
}

async function query<R extends pg.QueryResultRow>(url: string, sql: string): Promise<R[]> {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => {});
  await c.connect();
  try {
    return (await c.query<R>(sql)).rows;
  } finally {
    await c.end();
  }
}

let dir: string;
let server: EmbeddedServer;

test.before(async () => {
  dir = embeddedDataDir('owner-only');
  // A secret of the product's environment: the server process must not inherit it.
  process.env.ALERT_WEBHOOK_URL = `https://hooks.example.com/services/${SECRET}`;
  try {
    server = await startEmbedded(dir, log);
  } finally {
    delete process.env.ALERT_WEBHOOK_URL;
  }
});
test.after.always(async () => {
  await server?.stop();
});

test.serial('it listens on a Unix socket only, in a folder only its OS user may enter; another OS user cannot connect', async (t) => {
  t.is(server.endpoint.transport, 'socket');
  if (server.endpoint.transport !== 'socket') return;
  const socketDir = server.endpoint.socketDir;
  t.is(socketDir, path.join(dir, 'socket'));
  const folder = statSync(socketDir);
  t.is(folder.mode & 0o777, 0o700, 'the socket folder is 0700');
  t.is(folder.uid, serverUid(), 'owned by the server\'s OS user');
  const socketFile = path.join(socketDir, '.s.PGSQL.5432');
  t.is(statSync(socketFile).mode & 0o777, 0o700, 'the socket itself is 0700 too');
  t.is(statSync(path.join(dir, 'postgres.log')).mode & 0o777, 0o600, 'the server log is private');

  // The server's own view: no TCP address, trust only on the socket.
  const [settings] = await query<{ listen: string; sockets: string }>(
    server.connectionString,
    `SELECT current_setting('listen_addresses') AS listen, current_setting('unix_socket_directories') AS sockets`,
  );
  t.deepEqual(settings, { listen: '', sockets: socketDir });
  const rules = await query<{ type: string; auth_method: string }>(server.connectionString, `SELECT type, auth_method FROM pg_hba_file_rules ORDER BY line_number`);
  t.deepEqual(rules, [
    { type: 'local', auth_method: 'trust' },
    { type: 'host', auth_method: 'scram-sha-256' },
    { type: 'host', auth_method: 'scram-sha-256' },
  ]);
  const pid = serverState(path.join(dir, 'pg'))!.pid;
  t.is(readFileSync(path.join(dir, 'pg', 'postmaster.pid'), 'utf8').split('\n')[5], '', 'postmaster.pid: no TCP address');
  if (process.platform === 'linux') {
    const environ = readFileSync(`/proc/${pid}/environ`, 'utf8');
    t.false(environ.includes(SECRET), 'the server does not inherit the product\'s secrets');
    t.false(/(^|\0)(ALERT_WEBHOOK_URL|DATABASE_URL)=/.test(environ));
  }

  const other = nobody();
  if (!other || !psqlAvailable()) {
    t.log('not root (or no psql): another OS user was not tried; the folder and socket modes above are what keeps it out');
    return;
  }
  const tried = spawnSync('psql', ['-h', socketDir, '-p', '5432', '-U', 'postgres', '-d', 'cabinet_leads', '-w', '-Atc', 'SELECT 1'], {
    uid: other.uid,
    gid: other.gid,
    encoding: 'utf8',
    env: { PATH: process.env.PATH },
  });
  t.is(tried.status, 2, `nobody: ${tried.stdout}${tried.stderr}`);
  t.regex(tried.stderr, /Permission denied/);
  t.is(tried.stdout, '', 'nobody got no answer from the server');
});

test.serial('cabinet-leads db-url prints what psql connects with; cabinet-leads psql runs psql on the running server', async (t) => {
  const env = { DATABASE_URL: '', CABINET_DATA_DIR: dir, LOG_LEVEL: 'warn' };
  const url = await runCli(['db-url'], env);
  t.is(url.code, 0, url.stderr);
  t.is(url.stdout.trim(), server.connectionString);
  t.is(url.stderr, '');
  const withUrl = await runCli(['db-url'], { ...env, DATABASE_URL: 'postgres://someone:pw@db.example.com/x' });
  t.is(withUrl.code, 2);
  t.regex(withUrl.stderr, /DATABASE_URL is set/);
  t.false(withUrl.stderr.includes('pw@'), 'the password of DATABASE_URL is not echoed');
  if (!psqlAvailable()) {
    t.log('psql is not installed: db-url and psql were not tried with it');
    return;
  }
  const viaUrl = spawnSync('psql', [url.stdout.trim(), '-Atc', 'SELECT current_user'], { encoding: 'utf8' });
  t.is(viaUrl.stdout, 'postgres\n', viaUrl.stderr);
  const viaCommand = await runCli(['psql', '-Atc', 'SELECT current_database()'], env);
  t.is(viaCommand.code, 0, viaCommand.stderr);
  t.is(viaCommand.stdout, 'cabinet_leads\n');
  t.truthy(serverState(path.join(dir, 'pg')), 'the running server was reused, not stopped');
  const failing = await runCli(['psql', '-c', 'SELECT * FROM no_such_table'], env);
  t.is(failing.code, 1, 'psql\'s exit code');
});

test('cabinet-leads psql starts the embedded server for the session and stops it after', async (t) => {
  if (!psqlAvailable()) {
    t.pass('psql is not installed');
    return;
  }
  const own = embeddedDataDir('psql-session');
  const r = await runCli(['psql', '-Atc', 'SELECT 42'], { DATABASE_URL: '', CABINET_DATA_DIR: own, LOG_LEVEL: 'warn' });
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, '42\n');
  t.is(serverState(path.join(own, 'pg')), undefined, 'the server it started is stopped');
});

test('without a Unix socket (CABINET_EMBEDDED_TRANSPORT=tcp): scram with the password kept 0600 in the data folder, never trust; an older folder is locked at its next start', async (t) => {
  const own = embeddedDataDir('tcp');
  const first = await startEmbedded(own, log);
  await first.stop();
  // What an older version left: trust everywhere, no password.
  writeFileSync(path.join(own, 'pg', 'pg_hba.conf'), 'local all all trust\nhost all all 127.0.0.1/32 trust\n');

  const tcp = await startEmbedded(own, log, { transport: 'tcp' });
  t.teardown(() => tcp.stop());
  t.is(tcp.endpoint.transport, 'tcp');
  if (tcp.endpoint.transport !== 'tcp') return;
  const { host, port, password } = tcp.endpoint;
  t.is(host, '127.0.0.1');
  const file = path.join(own, 'password');
  t.is(statSync(file).mode & 0o777, 0o600, 'the password file is 0600');
  t.is(readFileSync(file, 'utf8').trim(), password ?? '(none)');
  t.true(password!.length >= 32);

  const noPassword: string = `postgres://postgres@127.0.0.1:${port}/cabinet_leads`;
  await t.throwsAsync(query(noPassword.replace('postgres@', 'postgres:wrong@'), 'SELECT 1'), { code: '28P01' });
  t.deepEqual(await query(tcp.connectionString, `SELECT current_user AS u`), [{ u: 'postgres' }]);
  const rules = await query<{ type: string; auth_method: string }>(tcp.connectionString, `SELECT type, auth_method FROM pg_hba_file_rules WHERE type LIKE 'host%'`);
  t.true(rules.length > 0 && rules.every((r) => r.auth_method === 'scram-sha-256'), JSON.stringify(rules));
  // A second process reuses it with the password from the file.
  const again = await startEmbedded(own, log);
  t.false(again.owned);
  t.is(again.connectionString, connectionStringOf(tcp.endpoint));

  if (psqlAvailable()) {
    const bare = spawnSync('psql', [noPassword, '-w', '-Atc', 'SELECT 1'], { encoding: 'utf8', env: { PATH: process.env.PATH } });
    t.is(bare.status, 2);
    t.regex(bare.stderr, /no password supplied|password authentication failed/);
  }
  const other = nobody();
  if (other) {
    const cat = spawnSync('cat', [file], { uid: other.uid, gid: other.gid, encoding: 'utf8' });
    t.not(cat.status, 0);
    t.regex(cat.stderr, /Permission denied/);
  } else t.log('not root: another OS user reading the password file was not tried (mode 0600 checked)');
});
