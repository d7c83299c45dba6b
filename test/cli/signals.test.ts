// A clean stop, as real processes: SIGINT (Ctrl-C) or SIGTERM stops the worker's jobs,
// then its connections, then the embedded server it started (which runs in its own
// session, so the signal never reaches it first): exit 0, a few log lines, no crash, no
// postgres left running; also during the very first start (initdb) and under npm start.
// A one-shot command ends by the signal as without an embedded server, and stops the
// server it started.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import test from 'ava';
import { PROJECT_ROOT } from '../../src/config.js';
import { BIN } from '../helpers/cli.js';
import { createTestDb } from '../helpers/db.js';
import { embeddedDataDir, serverProcessesOf } from '../helpers/embedded.js';

interface Proc {
  child: ChildProcess;
  stderr: string[];
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves at the first stderr line containing text; rejects if the process ends first. */
  line(text: string): Promise<void>;
}

function start(command: string, args: string[], env: NodeJS.ProcessEnv, opts: { detached?: boolean } = {}): Proc {
  const child = spawn(command, args, {
    cwd: PROJECT_ROOT,
    env: { ...process.env, LOG_FORMAT: 'json', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: opts.detached ?? false,
  });
  const stderr: string[] = [];
  const waiting: { text: string; resolve: () => void }[] = [];
  let partial = '';
  child.stderr!.on('data', (d: Buffer) => {
    const parts = (partial + d.toString('utf8')).split('\n');
    partial = parts.pop()!;
    for (const l of parts) {
      stderr.push(l);
      for (const w of waiting.filter((x) => l.includes(x.text))) w.resolve();
    }
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('close', (code, signal) => {
      if (partial) stderr.push(partial);
      resolve({ code, signal });
    }),
  );
  return {
    child,
    stderr,
    exit,
    line: (text) =>
      stderr.some((l) => l.includes(text))
        ? Promise.resolve()
        : Promise.race([
            new Promise<void>((resolve) => waiting.push({ text, resolve })),
            exit.then(() => {
              throw new Error(`exited before logging ${text}: ${stderr.slice(-5).join('\n')}`);
            }),
          ]),
  };
}

const cli = (args: string[], env: NodeJS.ProcessEnv) => start(process.execPath, [BIN, ...args], env);

/** Kills what a failed test left running; the data folders' servers are the helper's (test/helpers/embedded.ts). */
function cleanup(t: { teardown(fn: () => void): void }, p: Proc, group = false): void {
  t.teardown(() => {
    if (p.child.exitCode !== null || p.child.signalCode !== null) return;
    try {
      if (group) process.kill(-p.child.pid!, 'SIGKILL');
      else p.child.kill('SIGKILL');
    } catch {
      // gone
    }
  });
}

function messages(lines: string[]): string[] {
  return lines.flatMap((l) => {
    try {
      return [(JSON.parse(l) as { msg: string }).msg];
    } catch {
      return [l];
    }
  });
}

let emptyCrontab: string;
let warm: string;

test.before(() => {
  warm = embeddedDataDir('signals');
  // Nothing scheduled: the log lines of a stop are the same every time.
  emptyCrontab = path.join(warm, 'crontab.empty');
  writeFileSync(emptyCrontab, '# nothing scheduled\n');
});

/** What every stop must look like: exit 0, no crash, no termination noise, a few lines after the signal, nothing left. */
async function assertCleanStop(t: import('ava').ExecutionContext, p: Proc, linesBefore: number, dataDir?: string): Promise<void> {
  const { code, signal } = await p.exit;
  const after = messages(p.stderr.slice(linesBefore));
  t.is(code, 0, p.stderr.join('\n'));
  t.is(signal, null);
  t.false(p.stderr.some((l) => l.includes('Unhandled')), 'no crash');
  t.false(p.stderr.some((l) => l.includes('terminating connection')), 'no session was terminated under the worker');
  t.true(after.length <= 5, `at most 5 lines after the signal: ${after.join(' | ')}`);
  if (dataDir) {
    t.deepEqual(serverProcessesOf(dataDir), [], 'no postgres of the data folder left running');
    t.false(existsSync(path.join(dataDir, 'pg', 'postmaster.pid')), 'the server shut down cleanly');
  }
}

test.serial('worker on the embedded server, first start: SIGINT stops the worker, then the server; exit 0', async (t) => {
  const p = cli(['worker', '--migrate', '--crontab', emptyCrontab], { DATABASE_URL: '', CABINET_DATA_DIR: warm });
  cleanup(t, p);
  await p.line('"worker started"');
  const before = p.stderr.length;
  p.child.kill('SIGINT');
  await assertCleanStop(t, p, before, warm);
  const order = messages(p.stderr).filter((m) => /stopping worker|worker stopped|embedded postgres stopped/.test(m));
  t.deepEqual(order, ['stopping worker gracefully', 'worker stopped', 'embedded postgres stopped']);
});

test.serial('worker on the embedded server, data folder used before: SIGTERM stops it the same way', async (t) => {
  const p = cli(['worker', '--migrate', '--crontab', emptyCrontab], { DATABASE_URL: '', CABINET_DATA_DIR: warm });
  cleanup(t, p);
  await p.line('"worker started"');
  const before = p.stderr.length;
  p.child.kill('SIGTERM');
  await assertCleanStop(t, p, before, warm);
  t.true(messages(p.stderr).includes('embedded postgres stopped'));
});

test.serial('SIGTERM during the very first start (initdb running) stops it with exit 0 and leaves nothing running or half-made', async (t) => {
  const fresh = embeddedDataDir('signals-initdb');
  const p = cli(['worker', '--migrate', '--crontab', emptyCrontab], { DATABASE_URL: '', CABINET_DATA_DIR: fresh });
  cleanup(t, p);
  // Logged right after initdb was started.
  await p.line('"initialising embedded postgres data folder"');
  const before = p.stderr.length;
  p.child.kill('SIGTERM');
  await assertCleanStop(t, p, before, fresh);
  t.true(messages(p.stderr).includes('worker stopped before it started'));
  t.false(messages(p.stderr).includes('embedded postgres started'), 'the server was not started for nothing');
  t.deepEqual(readdirSync(fresh).filter((f) => f.startsWith('pg.init-')), [], 'no half-made data folder');
});

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  test(`worker with DATABASE_URL: ${signal} stops it with exit 0`, async (t) => {
    const db = await createTestDb('signals');
    t.teardown(() => db.drop());
    const p = cli(['worker', '--crontab', emptyCrontab], { DATABASE_URL: db.url });
    cleanup(t, p);
    await p.line('"worker started"');
    const before = p.stderr.length;
    p.child.kill(signal);
    await assertCleanStop(t, p, before);
    t.true(messages(p.stderr).includes('worker stopped'));
  });
}

test.serial('Ctrl-C on npm start (SIGINT to its whole process group) stops the worker, then the server', async (t) => {
  // npm start runs the shipped crontab; its own process group, as a terminal's foreground job.
  // npm runs the script through sh -c, which got the SIGINT too: dash ends by it once the
  // worker has exited, and npm then ends by the same signal (exit status 130 in a shell);
  // where sh is bash (it execs the worker) npm exits with the worker's 0.
  const npm = process.env.npm_execpath;
  const p = npm ? start(process.execPath, [npm, 'start'], { DATABASE_URL: '', CABINET_DATA_DIR: warm }, { detached: true }) : start('npm', ['start'], { DATABASE_URL: '', CABINET_DATA_DIR: warm }, { detached: true });
  cleanup(t, p, true);
  await p.line('"worker started"');
  const before = p.stderr.length;
  process.kill(-p.child.pid!, 'SIGINT');
  const { code, signal } = await p.exit;
  t.true(code === 0 || signal === 'SIGINT', `code ${code}, signal ${signal}: ${p.stderr.join('\n')}`);
  t.false(p.stderr.some((l) => /"level":(50|60)|Unhandled|terminating connection|cabinet-leads: error/.test(l)), p.stderr.join('\n'));
  const after = messages(p.stderr.slice(before));
  t.deepEqual(
    after.filter((m) => /stopping worker|worker stopped|embedded postgres stopped/.test(m)),
    ['stopping worker gracefully', 'worker stopped', 'embedded postgres stopped'],
    'one interrupt (not taken for a second one), the worker first, then the server',
  );
  t.true(after.length <= 5, after.join(' | '));
  t.deepEqual(serverProcessesOf(warm), []);
});

test.serial('a one-shot command interrupted by SIGINT stops the embedded server it started and ends by that signal', async (t) => {
  // The failed run fires an alert that reconcile posts to the webhook: this one never
  // answers, so the command is certainly still running, its server up, when the signal comes.
  const requests: http.IncomingMessage[] = [];
  let posted!: () => void;
  const postedOnce = new Promise<void>((resolve) => (posted = resolve));
  const hook = http.createServer((req) => {
    requests.push(req);
    posted();
  });
  await new Promise<void>((resolve) => hook.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const r of requests) r.socket.destroy();
    hook.close();
  });
  const port = (hook.address() as { port: number }).port;
  const p = cli(['reconcile'], {
    DATABASE_URL: '',
    CABINET_DATA_DIR: warm,
    PGOPTIONS: '-c cabinet.failpoint=after_claims',
    ALERT_WEBHOOK_URL: `http://127.0.0.1:${port}/hook`,
  });
  cleanup(t, p);
  const first = await Promise.race([postedOnce.then(() => 'posted'), p.exit.then(() => 'exited')]);
  t.is(first, 'posted', `ended before posting the alert: ${p.stderr.join('\n')}`);
  t.true(serverProcessesOf(warm).length > 0, 'its server runs while it waits');
  p.child.kill('SIGINT');
  const { code, signal } = await p.exit;
  t.is(signal, 'SIGINT', `code ${code}: ${p.stderr.join('\n')}`);
  t.false(p.stderr.some((l) => l.includes('Unhandled')));
  t.deepEqual(serverProcessesOf(warm), [], 'no postgres of the data folder left running');
});
