// The commands as real processes connected as LOGIN members of the product's roles
// (docs/security.md): every command of the job runs as cabinet_leads_job, the worker
// included (graphile-worker's schema is installed by migrate, with a row security policy
// for the job role); a reader runs status, report and reconcile --preview, and its
// reconcile is refused.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { runCli } from '../helpers/cli.js';
import { loginRole } from '../helpers/roles.js';
import { freshDb } from '../helpers/db.js';
import { emptyCrontab, seedDemo, startWorker, stopProcess, waitFor } from '../reliability/support.js';

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'least-privilege-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const denied = /permission denied/i;

test('as cabinet_leads_job: reconcile, import-leads, resolve, ignore and unlink a lead, alerts, status, report, doctor --repair', async (t) => {
  const db = await freshDb(t, 'lp_cli_job');
  await seedDemo(db, { seed: 21, leads: 120, drivers: 240, tripDays: 30 });
  const job = await loginRole(t, db.url, 'cabinet_leads_job');
  const env = { DATABASE_URL: job.url, LOG_LEVEL: 'warn' };
  const dir = tempDir(t);

  const reconcile = await runCli(['reconcile', '--json'], env);
  t.is(reconcile.code, 0, reconcile.stderr);
  const run = JSON.parse(reconcile.stdout) as { id: number; status: string; stats: { match: { newly_linked: number } } };
  t.is(run.status, 'COMPLETED');
  t.true(run.stats.match.newly_linked > 10);

  const csv = path.join(dir, 'leads.csv');
  writeFileSync(csv, `external_id,lead_created_at,first_name,last_name,park_phone\nlp-imported-1,${new Date().toISOString().slice(0, 10)},ROSA,TICONA,966111222\n`);
  const imported = await runCli(['import-leads', csv], env);
  t.is(imported.code, 0, imported.stderr);
  t.regex(imported.stdout, /read 1, inserted 1/);

  const [linked] = await db.query<{ source_pk: string }>(
    `SELECT source_pk FROM canon.identity_links WHERE source_table = 'module_ct_cabinet_leads' ORDER BY source_pk LIMIT 1`,
  );
  const [driver] = await db.query<{ driver_id: string }>(`SELECT driver_id FROM public.drivers ORDER BY driver_id LIMIT 1`);
  const unlink = await runCli(['unlink-lead', linked!.source_pk, '--note', 'wrong person'], env);
  t.is(unlink.code, 0, unlink.stderr);
  const resolve = await runCli(['resolve-lead', linked!.source_pk, driver!.driver_id, '--note', 'checked by phone', '--force'], env);
  t.is(resolve.code, 0, resolve.stderr);
  const ignore = await runCli(['ignore-lead', 'lp-imported-1', '--note', 'test lead'], env);
  t.is(ignore.code, 0, ignore.stderr);
  t.deepEqual(
    await db.query(`SELECT status FROM canon.identity_unmatched WHERE source_pk = 'lp-imported-1'`),
    [{ status: 'IGNORED' }],
  );

  const alerts = await runCli(['alerts'], env);
  t.true(alerts.code === 0 || alerts.code === 1, alerts.stderr);
  t.notRegex(alerts.stderr, denied);
  const status = await runCli(['status'], env);
  t.is(status.code, 0, status.stderr);
  t.regex(status.stdout, /^Last runs /m);
  const report = await runCli(['report', '--out', path.join(dir, 'report.html')], env);
  t.is(report.code, 0, report.stderr);
  t.true(readFileSync(path.join(dir, 'report.html'), 'utf8').includes('<html'));
  const doctor = await runCli(['doctor', '--repair'], env);
  t.is(doctor.code, 0, doctor.stdout + doctor.stderr);
  t.regex(doctor.stdout, /^all invariants hold$/m);
  for (const r of [reconcile, imported, unlink, resolve, ignore, status, report, doctor]) t.notRegex(r.stderr, denied);
});

test('as cabinet_leads_job: the worker takes a job and runs the pipeline, and stops cleanly', async (t) => {
  const db = await freshDb(t, 'lp_worker_job');
  await seedDemo(db, { seed: 22, leads: 60, drivers: 120, tripDays: 30 });
  const job = await loginRole(t, db.url, 'cabinet_leads_job');
  const worker = startWorker('worker as job role', job.url, emptyCrontab());
  t.teardown(() => void stopProcess(worker));
  await job.query(`SELECT graphile_worker.add_job('reconcile_cabinet_leads_pipeline', '{"days_back": 30, "limit": 2000}'::json, max_attempts => 1)`);
  const done = await waitFor(async () => {
    const [r] = await db.query<{ status: string; trigger: string }>(`SELECT status, trigger FROM canon.ingestion_runs WHERE status <> 'RUNNING' ORDER BY id DESC LIMIT 1`);
    const [left] = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM graphile_worker.jobs`);
    return r && left!.n === 0 ? r : undefined;
  }, 'the job to be done');
  t.deepEqual(done, { status: 'COMPLETED', trigger: 'worker' });
  t.is(await stopProcess(worker), 0, worker.stderr.join('\n'));
  t.false(worker.stderr.some((l) => denied.test(l)), worker.stderr.filter((l) => denied.test(l)).join('\n'));
});

test('as cabinet_leads_reader: status, report and reconcile --preview work; reconcile is refused (permission denied), nothing is written', async (t) => {
  const db = await freshDb(t, 'lp_cli_reader');
  await seedDemo(db, { seed: 23, leads: 60, drivers: 120, tripDays: 30 });
  const first = await runCli(['reconcile'], { DATABASE_URL: db.url, LOG_LEVEL: 'warn' });
  t.true(first.code === 0, first.stderr);
  const reader = await loginRole(t, db.url, 'cabinet_leads_reader');
  const env = { DATABASE_URL: reader.url, LOG_LEVEL: 'warn' };
  const before = await db.query(`SELECT count(*)::int AS runs, (SELECT count(*)::int FROM ops.alerts) AS alerts FROM canon.ingestion_runs`);

  const status = await runCli(['status', '--json'], env);
  t.is(status.code, 0, status.stderr);
  t.is((JSON.parse(status.stdout) as { runs: unknown[] }).runs.length, 1);
  const report = await runCli(['report', '--out', path.join(tempDir(t), 'report.html')], env);
  t.is(report.code, 0, report.stderr);
  const preview = await runCli(['reconcile', '--preview', '--json'], env);
  t.is(preview.code, 0, preview.stderr);
  t.deepEqual((JSON.parse(preview.stdout) as { changes: unknown[] }).changes, [], 'the run just decided every lead');

  const reconcile = await runCli(['reconcile'], env);
  t.is(reconcile.code, 1);
  t.regex(reconcile.stderr, /permission denied for procedure reconcile_cabinet_leads_pipeline/);
  const alerts = await runCli(['alerts'], env);
  t.is(alerts.code, 2, 'the recording check is refused: an error, not a verdict');
  t.regex(alerts.stderr, denied);
  t.deepEqual(await db.query(`SELECT count(*)::int AS runs, (SELECT count(*)::int FROM ops.alerts) AS alerts FROM canon.ingestion_runs`), before);
});
