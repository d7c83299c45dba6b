// `reconcile --until-done`: a backfill in runs of --limit leads until none is left, with a
// progress bar in a terminal (cli-progress) and progress events in the JSON log otherwise.
import { execFileSync, spawnSync } from 'node:child_process';
import test from 'ava';
import { BIN, runCli } from '../helpers/cli.js';
import { createTestDb } from '../helpers/db.js';
import { insertLead } from '../helpers/rows.js';

async function leadsDb(label: string, n: number) {
  const db = await createTestDb(label);
  for (let i = 0; i < n; i++) await insertLead(db, { external_id: `L${i}`, first_name: 'Ana', last_name: null, park_phone: `98800${String(i).padStart(4, '0')}` });
  return db;
}

test('--until-done runs batches of --limit until no lead is left, with progress events in the JSON log', async (t) => {
  const db = await leadsDb('until_done', 5);
  t.teardown(() => db.drop());
  const r = await runCli(['reconcile', '--until-done', '--limit', '2'], { DATABASE_URL: db.url });
  t.is(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  t.is(lines.length, 4, r.stdout);
  t.regex(lines[0]!, /^run \d+ COMPLETED in .*: 2 leads evaluated, 0 linked, 2 unmatched \(NO_CANDIDATES 2\)/);
  t.regex(lines[2]!, /^run \d+ COMPLETED in .*: 1 leads evaluated/);
  t.regex(lines[3]!, /^until done: 3 run\(s\) in .*: 5 leads evaluated, 0 linked, 5 unmatched, 0 claims S\/ 0\.00, NO_IDENTITY 5 → 5|^until done: 3 run\(s\) in .*: 5 leads evaluated, 0 linked, 5 unmatched, 0 claims S\/ 0\.00, limbo unchanged/);
  const progress = r.stderr.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => e['event'] === 'progress');
  t.deepEqual(progress.map((p) => [p['leads_done'], p['leads_total']]), [[2, 5], [4, 5], [5, 5]]);
  t.true(progress.every((p) => typeof p['rate_per_s'] === 'number' && p['msg'] === 'reconcile progress'));
  t.is(progress[2]!['eta_s'], 0);
  const [left] = await db.query<{ n: string }>(`SELECT count(*) AS n FROM canon.identity_unmatched`);
  t.is(left!.n, '5');
});

const hasScript = spawnSync('script', ['--version']).status === 0;
(hasScript ? test : test.skip)('in a terminal --until-done draws a progress bar: leads done of total, rate, time left', async (t) => {
  const db = await leadsDb('until_done_tty', 3);
  t.teardown(() => db.drop());
  // script(1) gives the command a pseudo-terminal, as a person's shell does.
  const out = execFileSync('script', ['-qfec', `${process.execPath} ${BIN} reconcile --until-done --limit 2`, '/dev/null'], {
    env: { ...process.env, DATABASE_URL: db.url, LOG_FORMAT: 'pretty', LOG_LEVEL: 'info' },
    encoding: 'utf8',
    timeout: 60_000,
  });
  t.regex(out, /reconcile \|[█░]+\| 3\/3 leads \| \d+ leads\/s \| \d+s left/);
  t.regex(out, /until done: 2 run\(s\) in .*: 3 leads evaluated/);
  // info lines would break the bar: none while it is drawn
  t.notRegex(out, /pipeline run starting/);
});
