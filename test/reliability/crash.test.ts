// Crash (issue 8, scenario 2): the CLI killed with SIGKILL in the middle of a run, after
// its match step linked leads. Nothing of the run survives; the run log row stays RUNNING
// until the next run marks it FAILED (abandoned) and does the whole work again.
import test from 'ava';
import { runCli } from '../helpers/cli.js';
import { createTestDb } from '../helpers/db.js';
import { runPipeline } from '../helpers/pipeline.js';
import { FAILPOINT_LOCK, canonFingerprint, runs, seedDemo, startProcess, violations, waitFor } from './support.js';

const SEED = 82;

test('a CLI run killed with SIGKILL after linking started leaves no partial write; the next run marks it abandoned and does the work', async (t) => {
  t.timeout(120_000);
  const db = await createTestDb('rel_crash');
  const reference = await createTestDb('rel_crash_ref');
  t.teardown(() => Promise.all([db.drop(), reference.drop()]));
  await Promise.all([seedDemo(db, { seed: SEED }), seedDemo(reference, { seed: SEED })]);
  t.is((await runPipeline(reference, 'p_days_back => 30, p_limit => 2000')).status, 'COMPLETED');
  const before = await canonFingerprint(db);

  const holder = await db.connect();
  await holder.query(`SELECT pg_advisory_lock(${FAILPOINT_LOCK})`);
  const cli = startProcess('cli', ['reconcile', '--days-back', '30', '--limit', '2000'], {
    DATABASE_URL: db.url,
    PGOPTIONS: '-c cabinet.failpoint=wait:after_match',
  });
  // Parked after the match step: its backend waits on the failpoint lock, links written but not committed.
  const running = await waitFor(async () => {
    const [r] = await db.query<{ id: string; backend_pid: number }>(
      `SELECT r.id, r.backend_pid FROM canon.ingestion_runs r
       JOIN pg_locks l ON l.pid = r.backend_pid AND l.locktype = 'advisory' AND NOT l.granted
       WHERE r.status = 'RUNNING'`,
    );
    return r;
  }, 'the run parked after its match step');

  cli.child.kill('SIGKILL');
  await cli.exit;
  // The server has not noticed yet: the backend still holds the run's transaction.
  const [alive] = await db.query<{ n: string }>(`SELECT count(*) AS n FROM pg_stat_activity WHERE pid = $1`, [running.backend_pid]);
  t.is(alive!.n, '1');
  await holder.query(`SELECT pg_terminate_backend($1)`, [running.backend_pid]);
  await waitFor(async () => {
    const [r] = await db.query<{ n: string }>(`SELECT count(*) AS n FROM pg_stat_activity WHERE pid = $1`, [running.backend_pid]);
    return r!.n === '0' ? true : undefined;
  }, 'the backend to exit');
  await holder.query(`SELECT pg_advisory_unlock(${FAILPOINT_LOCK})`);

  t.deepEqual(await canonFingerprint(db), before, 'no write of the killed run remains');
  t.deepEqual((await runs(db)).map((r) => r.status), ['RUNNING']);
  t.deepEqual((await violations(db)).map((v) => v.invariant), ['RUN_STUCK_RUNNING'], 'the checker sees the stuck run');

  const next = await runCli(['reconcile', '--days-back', '30', '--limit', '2000', '--json'], { DATABASE_URL: db.url });
  t.is(next.code, 0, next.stderr);
  const run = JSON.parse(next.stdout) as { status: string; stats: Record<string, number> };
  t.is(run.status, 'COMPLETED');
  t.is(run.stats['abandoned_runs_marked'], 1);
  const [old] = await db.query<{ status: string; error_sqlstate: string; error_message: string }>(
    `SELECT status, error_sqlstate, error_message FROM canon.ingestion_runs WHERE id = $1`,
    [running.id],
  );
  t.is(old!.status, 'FAILED');
  t.is(old!.error_sqlstate, 'CL003');
  t.regex(old!.error_message, new RegExp(`^abandoned: backend ${running.backend_pid} `));
  t.deepEqual(await canonFingerprint(db), await canonFingerprint(reference), 'the next run did all the work, once');
  t.deepEqual(await violations(db), []);
});
