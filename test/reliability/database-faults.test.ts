// Database faults (issue 8, scenario 3), on a PostgreSQL server of this file's own (an
// embedded one in a temp folder, never the shared test server): the server restarted
// during a run, the run's connection cut, a statement timeout, a canon table locked by
// another session. Each run fails cleanly (rolled back, logged FAILED or later marked
// abandoned); a worker whose job fails retries it per its policy and stays up; the next
// run succeeds, also when the worker's job ended while the server was down. The tests
// are serial: two of them restart the server.
import test from 'ava';
import { runCli } from '../helpers/cli.js';
import {
  FAILPOINT_LOCK,
  OwnServer,
  leadKeysNotEvaluated,
  emptyCrontab,
  openDb,
  runs,
  seedDemo,
  startProcess,
  startWorker,
  stopProcess,
  violations,
  waitFor,
  waitForLog,
  withClient,
  type Proc,
  type RunRow,
} from './support.js';

let server: OwnServer;
let n = 0;

test.before(async () => {
  server = await OwnServer.start();
});
test.after.always(async () => {
  await server?.stop();
});

/** A database of this server with the demo data set (it goes with the server's folder at the end). */
async function demoDb(t: { teardown(fn: () => Promise<void>): void }, seed: number): Promise<ReturnType<typeof openDb>> {
  const url = await server.createDb(`faults_${++n}`);
  const db = openDb(url);
  t.teardown(() => db.close());
  await seedDemo(db, { seed, leads: 200, drivers: 400, tripDays: 20 });
  return db;
}

async function linkCount(db: ReturnType<typeof openDb>): Promise<number> {
  const [r] = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM canon.identity_links`);
  return r!.n;
}

const PARK = { PGOPTIONS: '-c cabinet.failpoint=wait:after_match' };
// A job as the shipped crontab schedules it: serial queue, job key, 3 attempts.
const addJob = `SELECT (graphile_worker.add_job('reconcile_cabinet_leads_pipeline', '{"days_back": 30, "limit": 2000}'::json,
                  queue_name => 'cabinet_leads_pipeline', job_key => 'reconcile_cabinet_leads_pipeline',
                  job_key_mode => 'preserve_run_at', max_attempts => 3)).id`;

async function parkedRun(db: ReturnType<typeof openDb>): Promise<RunRow> {
  return waitFor(async () => {
    const [r] = await db.query<RunRow>(
      `SELECT r.* FROM canon.ingestion_runs r
       JOIN pg_locks l ON l.pid = r.backend_pid AND l.locktype = 'advisory' AND NOT l.granted
       WHERE r.status = 'RUNNING'`,
    );
    return r;
  }, 'a run parked at the failpoint');
}

/** The runs of a worker job once one of them completed (the worker must stay up meanwhile). */
async function jobCompleted(db: ReturnType<typeof openDb>, jobId: string, worker: Proc): Promise<RunRow[]> {
  return waitFor(async () => {
    if (worker.exited) throw new Error(`the worker exited while job ${jobId} was pending: ${worker.stderr.slice(-3).join('\n')}`);
    const r = (await db.query<RunRow>(`SELECT * FROM canon.ingestion_runs WHERE worker_job_id = $1 ORDER BY id`, [jobId]).catch(() => [])) as RunRow[];
    return r.some((x) => x.status === 'COMPLETED') ? r : undefined;
  }, `job ${jobId} to complete`, 40_000);
}

test.serial('the server restarted during a CLI run: the run is rolled back, the CLI fails, the next run marks it abandoned and completes', async (t) => {
  t.timeout(90_000);
  const db = await demoDb(t, 91);
  let parked: RunRow | undefined;
  const cli = startProcess('cli', ['reconcile'], { DATABASE_URL: db.url, ...PARK });
  await withClient(db.url, async (holder) => {
    await holder.query(`SELECT pg_advisory_lock(${FAILPOINT_LOCK})`);
    parked = await parkedRun(db);
    await server.restart(); // fast shutdown: every session ends, the run's transaction rolls back
  });
  t.not(await cli.exit, 0);
  t.is(await linkCount(db), 0, 'nothing of the run remains');
  t.deepEqual((await runs(db)).map((r) => r.status), ['RUNNING']);

  const next = await runCli(['reconcile', '--json'], { DATABASE_URL: db.url });
  t.is(next.code, 0, next.stderr);
  const [old, done] = await runs(db);
  t.is(old!.id, parked!.id);
  t.is(old!.status, 'FAILED');
  t.is(old!.error_sqlstate, 'CL003');
  t.is(done!.status, 'COMPLETED');
  t.is(done!.stats['abandoned_runs_marked'], 1);
  t.deepEqual(await leadKeysNotEvaluated(db), []);
  t.deepEqual(await violations(db), []);
});

test.serial("the run's connection cut: the worker's job fails, is retried per its policy, and the retry completes; the worker stays up", async (t) => {
  t.timeout(120_000);
  const db = await demoDb(t, 92);
  const worker = startWorker('worker', db.url, emptyCrontab(), PARK);
  try {
    await waitForLog(worker, '"worker started"');
    await withClient(db.url, async (holder) => {
      await holder.query(`SELECT pg_advisory_lock(${FAILPOINT_LOCK})`);
      const [job] = await db.query<{ id: string }>(addJob);
      const parked = await parkedRun(db);
      await holder.query(`SELECT pg_terminate_backend($1)`, [parked.backend_pid]);
      // The failed attempt is recorded on the job, which waits for its retry.
      const failed = await waitFor(async () => {
        const [j] = await db.query<{ attempts: number; last_error: string | null }>(
          `SELECT attempts, last_error FROM graphile_worker.jobs WHERE id = $1 AND last_error IS NOT NULL`,
          [job!.id],
        );
        return j;
      }, 'the first attempt to fail');
      t.is(failed.attempts, 1);
      t.regex(failed.last_error!, /terminat/i);
      t.is(await linkCount(db), 0, 'nothing of the cut run remains');
      await holder.query(`SELECT pg_advisory_unlock(${FAILPOINT_LOCK})`);

      const jobRuns = await jobCompleted(db, job!.id, worker);
      t.deepEqual(jobRuns.map((r) => r.status), ['FAILED', 'COMPLETED']);
      t.is(jobRuns[0]!.error_sqlstate, 'CL003');
      t.is(jobRuns[1]!.stats['abandoned_runs_marked'], 1);
    });
    await waitFor(async () => ((await db.query(`SELECT 1 FROM graphile_worker.jobs`)).length === 0 ? true : undefined), 'the job to be done');
    t.false(worker.exited, 'the worker is still up');
    t.deepEqual(await leadKeysNotEvaluated(db), []);
    t.deepEqual(await violations(db), []);
  } finally {
    t.is(await stopProcess(worker), 0, 'the worker stops gracefully');
  }
});

test.serial('a statement timeout cancels the run: logged FAILED, rolled back, the CLI exits 1; the next run completes', async (t) => {
  t.timeout(90_000);
  const db = await demoDb(t, 93);
  await withClient(db.url, async (holder) => {
    await holder.query(`SELECT pg_advisory_lock(${FAILPOINT_LOCK})`);
    const r = await runCli(['reconcile', '--timeout', '2'], { DATABASE_URL: db.url, ...PARK });
    t.is(r.code, 1, r.stderr);
    t.regex(r.stderr, /cabinet-leads: error: run \d+ failed: canceling statement due to statement timeout/);
  });
  const [failed] = await runs(db);
  t.is(failed!.status, 'FAILED');
  t.is(failed!.error_sqlstate, '57014');
  t.is(await linkCount(db), 0);
  const next = await runCli(['reconcile'], { DATABASE_URL: db.url });
  t.is(next.code, 0, next.stderr);
  t.deepEqual((await runs(db)).map((x) => x.status), ['FAILED', 'COMPLETED']);
  t.deepEqual(await leadKeysNotEvaluated(db), []);
  t.deepEqual(await violations(db), []);
});

test.serial('a canon table locked by another session: the run fails on lock_timeout instead of hanging, is logged FAILED; the next run completes', async (t) => {
  t.timeout(90_000);
  const db = await demoDb(t, 94);
  await withClient(db.url, async (locker) => {
    await locker.query(`BEGIN`);
    await locker.query(`LOCK TABLE canon.identity_links IN ACCESS EXCLUSIVE MODE`);
    // A shorter lock_timeout than the run's 30 s default keeps the test fast.
    const r = await runCli(['reconcile'], { DATABASE_URL: db.url, PGOPTIONS: '-c lock_timeout=2s' });
    t.is(r.code, 1, r.stderr);
    t.regex(r.stderr, /cabinet-leads: error: run \d+ failed: canceling statement due to lock timeout/);
    t.true(r.ms < 25_000, `failed after ${r.ms} ms, not after the 30 s default`);
    await locker.query(`ROLLBACK`);
  });
  const [failed] = await runs(db);
  t.is(failed!.status, 'FAILED');
  t.is(failed!.error_sqlstate, '55P03');
  const next = await runCli(['reconcile'], { DATABASE_URL: db.url });
  t.is(next.code, 0, next.stderr);
  t.deepEqual((await runs(db)).map((x) => x.status), ['FAILED', 'COMPLETED']);
  t.deepEqual(await leadKeysNotEvaluated(db), []);
  t.deepEqual(await violations(db), []);
});

// graphile-worker 0.17.3 records a failed job without awaiting it (dist/worker.js:
// failJob(...) is not awaited) and retries that query only on 40001/40P01/57P03/
// EHOSTUNREACH/ETIMEDOUT (dist/lib.js RETRYABLE_ERROR_CODES): with the server down for a
// few seconds the job and its serial queue stay locked by the worker's pool. The worker
// stays up (src/cli/worker.ts logs the unhandled rejection) and records the outcome again
// once the server answers (src/worker.ts JobOutcomeRecorder), which frees the queue.
test.serial('a worker whose job fails while the server restarts stays up, and the next scheduled run completes', async (t) => {
  t.timeout(90_000);
  const db = await demoDb(t, 95);
  const worker = startWorker('worker', db.url, emptyCrontab(), PARK);
  try {
    await waitForLog(worker, '"worker started"');
    await withClient(db.url, async (holder) => {
      await holder.query(`SELECT pg_advisory_lock(${FAILPOINT_LOCK})`);
      await db.query(addJob);
      await parkedRun(db);
      await server.restart(5000);
    });
    // The next cron slot, as the crontab would add it.
    const [next] = await waitFor(async () => (await db.query<{ id: string }>(addJob).catch(() => undefined)), 'the server to accept jobs');
    const jobRuns = await jobCompleted(db, next!.id, worker).catch((e: Error) => {
      t.log(worker.stderr.filter((l) => /unhandled|released|could not|error/i.test(l)).slice(0, 20).join('\n'));
      throw e;
    });
    t.is(jobRuns.at(-1)!.stats['abandoned_runs_marked'], 1);
    t.false(worker.exited, 'the worker is still up');
    t.deepEqual(await violations(db), []);
  } finally {
    const code = await stopProcess(worker);
    if (code !== 0) t.log(worker.stderr.filter((l) => !l.startsWith('{')).slice(0, 12).join('\n'));
    t.is(code, 0, 'the worker stops gracefully');
  }
});

// Every pooled client has an 'error' listener (src/db.ts): when the server ends the
// connection (FATAL 57P01, then close) the CLI reports it in one line, exit code 1.
test.serial("the CLI whose run's connection is cut exits 1 with a one-line error", async (t) => {
  t.timeout(60_000);
  const db = await demoDb(t, 96);
  const cli = startProcess('cli', ['reconcile'], { DATABASE_URL: db.url, ...PARK });
  await withClient(db.url, async (holder) => {
    await holder.query(`SELECT pg_advisory_lock(${FAILPOINT_LOCK})`);
    const parked = await parkedRun(db);
    await holder.query(`SELECT pg_terminate_backend($1)`, [parked.backend_pid]);
  });
  t.is(await cli.exit, 1);
  t.deepEqual(cli.stderr.filter((l) => !l.startsWith('{')).length, 1, cli.stderr.join('\n'));
  t.regex(cli.stderr.filter((l) => !l.startsWith('{'))[0] ?? '', /^cabinet-leads: error: .*terminat/);
  await db.query(`SELECT canon.mark_abandoned_runs()`);
  t.deepEqual(await violations(db), []);
});
