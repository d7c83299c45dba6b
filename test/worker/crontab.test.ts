// The schedule: the shipped crontab line, a bad crontab refused before anything starts
// (exit 2, the file and the line named), and real graphile-worker processes that
// schedule exactly one job per slot when two workers run, then stop gracefully.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { parseCrontab } from 'graphile-worker';
import { PROJECT_ROOT } from '../../src/config.js';
import { ConfigError } from '../../src/errors.js';
import { loadCrontab } from '../../src/worker.js';
import { TASKS } from '../../tasks/index.js';
import { BIN, errorLine, runCli } from '../helpers/cli.js';
import { createTestDb } from '../helpers/db.js';

test('the shipped crontab runs every 15 minutes with a permanent id, serial queue, job key and bounded attempts', (t) => {
  const [item, ...rest] = parseCrontab(readFileSync(path.join(PROJECT_ROOT, 'crontab'), 'utf8'));
  t.is(rest.length, 0);
  t.is(item!.task, 'reconcile_cabinet_leads_pipeline');
  t.is(item!.identifier, 'reconcile_cabinet_leads_every_15m');
  t.is(item!.options.queueName, 'cabinet_leads_pipeline');
  t.is(item!.options.jobKey, 'reconcile_cabinet_leads_pipeline');
  t.is(item!.options.jobKeyMode, 'preserve_run_at');
  t.is(item!.options.maxAttempts, 3);
  t.is(item!.options.backfillPeriod, 60 * 60 * 1000);
  t.deepEqual(item!.payload, { days_back: 30, limit: 2000 });
  const quarterHours = [0, 15, 30, 45].map((m) => item!.match({ min: m, hour: 3, date: 1, month: 1, dow: 1 }));
  const others = [1, 14, 16, 59].map((m) => item!.match({ min: m, hour: 3, date: 1, month: 1, dow: 1 }));
  t.deepEqual(quarterHours, [true, true, true, true]);
  t.deepEqual(others, [false, false, false, false]);
});

const GOOD = '*/15 * * * * reconcile_cabinet_leads_pipeline ?id=a&max=3 {"days_back":30}';

for (const [label, lines, reason] of [
  ['a line that is not a crontab line', [GOOD, '*/15 * * * reconcile_cabinet_leads_pipeline'], /line 3: expected "<minute> <hour> <day> <month> <weekday> <task> \[\?options\] \[payload\]", got '\*\/15 \* \* \* reconcile_cabinet_leads_pipeline'$/],
  ['a minute out of range', ['61 * * * * reconcile_cabinet_leads_pipeline'], /line 2: Too large value '61' in minutes range: expected values in the range 0-59\.$/],
  ['an unknown option', ['* * * * * reconcile_cabinet_leads_pipeline ?maxx=3'], /line 2: Options contains unsupported key 'maxx'/],
  ['a payload that is not JSON5', ['* * * * * reconcile_cabinet_leads_pipeline {"days_back": 30,,}'], /line 2: Failed to parse JSON5 payload: /],
  ['an unknown task', ['* * * * * reconcile_cabinet_lead_pipeline'], /line 2: unknown task "reconcile_cabinet_lead_pipeline" \(tasks: reconcile_cabinet_leads_pipeline\)$/],
  ['an identifier used twice', [GOOD, GOOD.replace('?id=a&', '?id=a&queue=q&')], /line 3: identifier "a" is already used on line 2; give each line its own \?id=\.\.\.$/],
  ['a payload the task refuses', ['* * * * * reconcile_cabinet_leads_pipeline {"days_back":-1}'], /line 2: invalid job payload field days_back=-1: expected an integer from 0 to 36500$/],
] as const) {
  test(`a crontab with ${label} is a configuration error naming the file and the line`, (t) => {
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'cabinet-crontab-')), 'crontab');
    writeFileSync(file, ['# comment', ...lines].join('\n'));
    const err = t.throws(() => loadCrontab(TASKS, file), { instanceOf: ConfigError });
    t.true(err.message.startsWith(`invalid crontab ${file} line `), err.message);
    t.regex(err.message, reason);
  });
}

test('the shipped crontab passes the same checks', (t) => {
  t.deepEqual(loadCrontab(TASKS).map((i) => i.identifier), ['reconcile_cabinet_leads_every_15m']);
});

test('worker with a bad crontab exits 2 with one line naming the file and the line, before touching the database', async (t) => {
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'cabinet-crontab-')), 'crontab');
  writeFileSync(file, `# every quarter hour\n${GOOD}\n*/15 * * * reconcile_cabinet_leads_pipeline\n`);
  // An unreachable database: the crontab is refused first, so that is never tried.
  const r = await runCli(['worker', '--crontab', file], { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/never-reached' });
  t.is(r.code, 2, r.stderr);
  t.is(r.stderr.trim().split('\n').length, 1, r.stderr);
  t.regex(errorLine(r), new RegExp(`^cabinet-leads: error: invalid crontab ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} line 3: `));
  const missing = await runCli(['worker', '--crontab', `${file}.missing`], { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/never-reached' });
  t.is(missing.code, 2);
  t.regex(errorLine(missing), /cannot read crontab file .*crontab\.missing: no such file$/);
});

function startWorker(url: string, crontab: string, logs: string[]): ChildProcess {
  const child = spawn(process.execPath, [BIN, 'worker', '--crontab', crontab], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, DATABASE_URL: url, LOG_FORMAT: 'json', LOG_LEVEL: 'info' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  child.stderr!.on('data', (d: Buffer) => logs.push(...d.toString('utf8').split('\n').filter(Boolean)));
  return child;
}

function exited(child: ChildProcess, ms: number): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('worker did not stop in time')), ms);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

test('two workers schedule exactly one run per cron slot, and stop gracefully on SIGTERM', async (t) => {
  t.timeout(150_000);
  const db = await createTestDb('crontab');
  const dir = mkdtempSync(path.join(tmpdir(), 'cabinet-crontab-'));
  const crontab = path.join(dir, 'crontab');
  writeFileSync(
    crontab,
    '* * * * * reconcile_cabinet_leads_pipeline ?id=test_every_minute&max=3&queue=cabinet_leads_pipeline&jobKey=reconcile_cabinet_leads_pipeline&jobKeyMode=preserve_run_at {"days_back":30,"limit":10}\n',
  );
  const logsA: string[] = [];
  const logsB: string[] = [];
  const a = startWorker(db.url, crontab, logsA);
  const b = startWorker(db.url, crontab, logsB);
  try {
    const waitStarted = async (logs: string[]) => {
      for (let i = 0; i < 600 && !logs.some((l) => l.includes('"worker started"')); i++) await new Promise((r) => setTimeout(r, 100));
    };
    await Promise.all([waitStarted(logsA), waitStarted(logsB)]);
    t.true(logsA.some((l) => l.includes('"worker started"')) && logsB.some((l) => l.includes('"worker started"')), 'both workers started');
    const started = new Date();
    // The first slot both workers saw is the next minute boundary; wait until it ran.
    const slot = new Date(Math.ceil(started.getTime() / 60_000) * 60_000);
    let runs: { id: string; status: string; worker_job_id: string; created_at: Date }[] = [];
    while (Date.now() < slot.getTime() + 60_000) {
      runs = await db.query(`SELECT id, status, worker_job_id, created_at FROM canon.ingestion_runs WHERE trigger = 'worker' ORDER BY id`);
      if (runs.length && runs.every((r) => r.status !== 'RUNNING') && Date.now() > slot.getTime() + 10_000) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    const inSlot = runs.filter((r) => r.created_at.getTime() >= slot.getTime() && r.created_at.getTime() < slot.getTime() + 60_000);
    t.is(inSlot.length, 1, `runs: ${JSON.stringify(runs)}`);
    t.is(inSlot[0]?.status, 'COMPLETED');
    t.truthy(inSlot[0]?.worker_job_id);
    const [jobs] = await db.query<{ n: string }>(`SELECT count(*) AS n FROM graphile_worker.jobs WHERE task_identifier = 'reconcile_cabinet_leads_pipeline'`);
    t.is(jobs?.n, '0', 'the job completed and was removed');
  } finally {
    a.kill('SIGTERM');
    b.kill('SIGTERM');
    const codes = await Promise.all([exited(a, 20_000), exited(b, 20_000)]).catch((e: Error) => {
      a.kill('SIGKILL');
      b.kill('SIGKILL');
      throw e;
    });
    t.deepEqual(codes, [0, 0]);
    t.true(logsA.some((l) => l.includes('"worker stopped"')));
    await db.drop();
  }
});
