// A held lock is visible (issue 15, item 4): a session that keeps the job lock makes every
// run SKIPPED with exit 0; status and doctor name it (pid, application_name, since when)
// once it has held it longer than a run can last, and the documented step frees it
// (docs/operations.md). A worker killed with kill -9 leaves its graphile-worker job and
// queue locked: doctor flags it, graphile-worker's force_unlock_workers frees them, and
// the next worker runs the job. Real processes and connections; the passing of an hour is
// written into the rows (started_at, locked_at) instead of waited for.
import test from 'ava';
import pg from 'pg';
import { runCli } from '../helpers/cli.js';
import { freshDb } from '../helpers/db.js';
import { FAILPOINT_LOCK, emptyCrontab, seedDemo, startWorker, stopProcess, waitFor, waitForLog } from '../reliability/support.js';

const JOB_LOCK = `hashtext('cabinet_leads'), hashtext('reconcile_cabinet_leads_pipeline')`;

test('a session holding the job lock: runs are SKIPPED (exit 0); held too long, status and doctor name it; pg_terminate_backend frees it', async (t) => {
  const db = await freshDb(t, 'job_lock_held');
  await seedDemo(db, { seed: 31, leads: 60, drivers: 120, tripDays: 30 });
  const env = { DATABASE_URL: db.url, LOG_LEVEL: 'info' };
  const holder = new pg.Client({ connectionString: db.url, application_name: 'forgotten-psql' });
  holder.on('error', () => {});
  await holder.connect();
  t.teardown(() => holder.end().catch(() => {}));
  const [{ pid } = { pid: 0 }] = (await holder.query<{ pid: number }>(`SELECT pg_backend_pid() AS pid, pg_advisory_lock(${JOB_LOCK})`)).rows;

  const skipped = await runCli(['reconcile', '--json'], env);
  t.is(skipped.code, 0, skipped.stderr);
  t.is((JSON.parse(skipped.stdout) as { status: string }).status, 'SKIPPED');
  const line = skipped.stderr.split('\n').find((l) => l.includes('pipeline run skipped'));
  t.truthy(line, skipped.stderr);
  const holders = (JSON.parse(line!) as { lock_holders: { pid: number; application_name: string; run_id: string | null; too_long: boolean }[] }).lock_holders;
  t.deepEqual(
    holders.map((h) => ({ pid: h.pid, application_name: h.application_name, run_id: h.run_id, too_long: h.too_long })),
    [{ pid, application_name: 'forgotten-psql', run_id: null, too_long: false }],
  );

  // Held, but not yet longer than a run can last: named by status, not a violation.
  const shortly = await runCli(['status'], env);
  t.regex(shortly.stdout, new RegExp(`^Job lock: held by pid ${pid} \\(forgotten-psql, user \\S+, idle\\) since `, 'm'));
  t.is((await runCli(['doctor'], env)).code, 0);

  // Every run of the last 2 hours was SKIPPED: the lock has kept the job out since then.
  await db.query(`UPDATE canon.ingestion_runs SET started_at = now() - interval '2 hours', created_at = now() - interval '2 hours' WHERE status = 'SKIPPED'`);
  const status = await runCli(['status'], env);
  t.is(status.code, 0, status.stderr);
  t.regex(status.stdout, new RegExp(`^Job lock: HELD TOO LONG by pid ${pid} \\(forgotten-psql, user \\S+, idle\\) since \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d \\(0?2:00:\\d\\d\\)`, 'm'));
  t.regex(status.stdout, new RegExp(`^  Free it: SELECT pg_terminate_backend\\(${pid}\\);`, 'm'));
  const doctor = await runCli(['doctor'], env);
  t.is(doctor.code, 1, doctor.stdout);
  t.regex(doctor.stdout, new RegExp(`^FAIL JOB_LOCK_HELD_TOO_LONG +1 violation\\(s\\), e\\.g\\. pid ${pid} \\(forgotten-psql, .*SELECT pg_terminate_backend\\(${pid}\\);`, 'm'));

  // The documented step, from another session.
  const [terminated] = await db.query<{ ok: boolean }>(`SELECT pg_terminate_backend(pid) AS ok FROM ops.job_lock_holders() WHERE too_long`);
  t.true(terminated!.ok);
  await waitFor(async () => ((await db.query(`SELECT 1 FROM ops.job_lock_holders()`)).length === 0 ? true : undefined), 'the lock to be free');
  const ran = await runCli(['reconcile', '--json'], env);
  t.is((JSON.parse(ran.stdout) as { status: string }).status, 'COMPLETED', ran.stderr);
  t.is((await runCli(['doctor'], env)).code, 0);
});

test('a worker killed with kill -9 leaves its job and queue locked: doctor names them; force_unlock_workers frees them and the next worker runs the job', async (t) => {
  const db = await freshDb(t, 'job_lock_worker');
  await seedDemo(db, { seed: 32, leads: 60, drivers: 120, tripDays: 30 });
  // The run parks after its match step until the test lets it go (canon.failpoint).
  const failpoint = new pg.Client({ connectionString: db.url });
  failpoint.on('error', () => {});
  await failpoint.connect();
  t.teardown(() => failpoint.end().catch(() => {}));
  await failpoint.query(`SELECT pg_advisory_lock(${FAILPOINT_LOCK})`);

  const crontab = emptyCrontab();
  const killed = startWorker('worker killed by kill -9', db.url, crontab, { PGOPTIONS: '-c cabinet.failpoint=wait:after_match' });
  t.teardown(() => void stopProcess(killed));
  await waitForLog(killed, '"worker started"');
  const [job] = await db.query<{ id: string }>(
    `SELECT (graphile_worker.add_job('reconcile_cabinet_leads_pipeline', '{"days_back": 30, "limit": 2000}'::json,
                                     queue_name => 'cabinet_leads_serial', max_attempts => 3)).id::text AS id`,
  );
  await waitFor(async () => ((await db.query(`SELECT 1 FROM canon.ingestion_runs WHERE status = 'RUNNING'`)).length > 0 ? true : undefined), 'the run to start');
  killed.child.kill('SIGKILL');
  t.is(await killed.exit, -1);
  // Its CALL goes on in the server: let it end (completed, or rolled back when it finds
  // its client gone), so that only the worker's locks are left.
  await failpoint.query(`SELECT pg_advisory_unlock(${FAILPOINT_LOCK})`);
  await waitFor(
    async () =>
      (await db.query(`SELECT 1 FROM canon.ingestion_runs r JOIN pg_stat_activity a ON a.pid = r.backend_pid WHERE r.status = 'RUNNING'`)).length === 0
        ? true
        : undefined,
    'the run\'s backend to end',
  );

  const [locked] = await db.query<{ locked_by: string }>(`SELECT locked_by FROM graphile_worker._private_jobs WHERE id = $1 AND locked_at IS NOT NULL`, [job!.id]);
  t.truthy(locked, 'the killed worker left its job locked');
  const lockedBy = locked!.locked_by;
  const workerCheck = async () => {
    const r = await runCli(['doctor', '--json'], { DATABASE_URL: db.url, LOG_LEVEL: 'warn' });
    return (JSON.parse(r.stdout) as { checks: { invariant: string; violations: number; examples: string[] }[] }).checks.find(
      (c) => c.invariant === 'WORKER_JOB_LOCKED_TOO_LONG',
    )!;
  };
  t.is((await workerCheck()).violations, 0, 'not yet longer than a run can last');

  // An hour and more later (graphile-worker itself would wait 4 hours).
  await db.query(`UPDATE graphile_worker._private_jobs SET locked_at = now() - interval '90 minutes' WHERE locked_by = $1;
                  UPDATE graphile_worker._private_job_queues SET locked_at = now() - interval '90 minutes' WHERE locked_by = $1`.replaceAll('$1', `'${lockedBy}'`));
  const check = await workerCheck();
  t.is(check.violations, 2);
  const doctor = await runCli(['doctor'], { DATABASE_URL: db.url, LOG_LEVEL: 'warn' });
  t.is(doctor.code, 1);
  t.regex(doctor.stdout, /^FAIL WORKER_JOB_LOCKED_TOO_LONG +2 violation\(s\)/m);
  t.deepEqual(
    check.examples.map((e) => e.replace(/ since .* UTC \([^)]*\)/, '')).sort(),
    [
      `JOB ${job!.id} (reconcile_cabinet_leads_pipeline) locked by ${lockedBy}: SELECT graphile_worker.force_unlock_workers(ARRAY['${lockedBy}']);`,
      `QUEUE ${check.examples.find((e) => e.startsWith('QUEUE'))!.split(' ')[1]} (cabinet_leads_serial) locked by ${lockedBy}: SELECT graphile_worker.force_unlock_workers(ARRAY['${lockedBy}']);`,
    ].sort(),
  );

  // docs/operations.md: the command doctor printed; then a new worker takes the job.
  await db.query(`SELECT graphile_worker.force_unlock_workers(ARRAY['${lockedBy}'])`);
  const next = startWorker('next worker', db.url, crontab);
  t.teardown(() => void stopProcess(next));
  await waitFor(async () => ((await db.query(`SELECT 1 FROM graphile_worker.jobs`)).length === 0 ? true : undefined), 'the job to be done by the next worker', 60_000);
  const runs = await db.query<{ status: string; worker_job_id: string }>(`SELECT status, worker_job_id FROM canon.ingestion_runs ORDER BY id`);
  t.deepEqual(runs.map((r) => r.worker_job_id), [job!.id, job!.id]);
  t.is(runs.at(-1)!.status, 'COMPLETED');
  t.is(await stopProcess(next), 0);
  t.is((await runCli(['doctor'], { DATABASE_URL: db.url, LOG_LEVEL: 'warn' })).code, 0);
});
