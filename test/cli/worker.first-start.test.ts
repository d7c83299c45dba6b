// A newcomer's first `npm start` (the worker): on an empty database it says so and names
// the next step; it logs when the next run is due, at start and after each run.
import { spawn } from 'node:child_process';
import test from 'ava';
import { PROJECT_ROOT } from '../../src/config.js';
import { nextRunDue, loadCrontab } from '../../src/worker.js';
import { TASKS } from '../../tasks/index.js';
import { BIN } from '../helpers/cli.js';
import { createTestDb } from '../helpers/db.js';

/** Runs the worker until it has logged `until`, then stops it with SIGTERM; returns its JSON log events. */
async function workerEvents(url: string, until: string): Promise<{ code: number | null; events: Record<string, unknown>[]; log: string }> {
  const child = spawn(process.execPath, [BIN, 'worker', '--migrate'], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, DATABASE_URL: url, LOG_FORMAT: 'json', LOG_LEVEL: 'info' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let out = '';
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  let stopped = false;
  child.stderr.on('data', (d: Buffer) => {
    out += d.toString('utf8');
    // Once: a second SIGTERM while it exits would end it by the signal (exit code null).
    if (!stopped && out.includes(until)) stopped = child.kill('SIGTERM');
  });
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  clearTimeout(timer);
  return { code, log: out.slice(-3000), events: out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>) };
}

test('on an empty database the worker says so and names the next step, and logs when the next run is due', async (t) => {
  const db = await createTestDb('worker_empty');
  t.teardown(() => db.drop());
  const before = Date.now();
  const { code, events, log } = await workerEvents(db.url, '"next run due"');
  t.is(code, 0, log);
  const empty = events.find((e) => String(e['msg']).startsWith('the database has no lead yet'));
  t.truthy(empty, JSON.stringify(events.map((e) => e['msg'])));
  t.is(empty!['level'], 40);
  t.deepEqual(empty!['next_step'], ['cabinet-leads demo', 'cabinet-leads import-leads FILE.csv']);
  t.regex(String(empty!['msg']), /`npx cabinet-leads demo`.*`npx cabinet-leads import-leads FILE\.csv`/);
  const next = events.find((e) => e['msg'] === 'next run due')!;
  const at = new Date(String(next['next_run_at']));
  // the default crontab: every 15 minutes
  t.is(at.getUTCMinutes() % 15, 0);
  t.is(at.getUTCSeconds(), 0);
  t.true(at.getTime() > before && at.getTime() <= before + 15 * 60_000 + 1000, at.toISOString());
  t.is(next['cron_item'], 'reconcile_cabinet_leads_every_15m');
});

test('with leads there is no such warning', async (t) => {
  const db = await createTestDb('worker_leads');
  t.teardown(() => db.drop());
  await db.query(`INSERT INTO public.module_ct_cabinet_leads (external_id, lead_created_at, first_name) VALUES ('W1', now(), 'Ana')`);
  const { code, events, log } = await workerEvents(db.url, '"next run due"');
  t.is(code, 0, log);
  t.false(events.some((e) => String(e['msg']).startsWith('the database has no lead yet')));
});

test('the next run due follows the crontab, in UTC as graphile-worker reads it', (t) => {
  const items = loadCrontab(TASKS);
  t.deepEqual(nextRunDue(items, new Date('2026-03-01T10:07:30Z')), { at: new Date('2026-03-01T10:15:00Z'), identifier: 'reconcile_cabinet_leads_every_15m' });
  t.deepEqual(nextRunDue(items, new Date('2026-03-01T23:45:00Z'))?.at, new Date('2026-03-02T00:00:00Z'));
});
