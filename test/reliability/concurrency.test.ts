// Concurrency (issue 8, scenario 1): three worker processes and a CLI run started
// together against one database. The job lock lets exactly one of them do the work; the
// others are logged SKIPPED; the data equals what one run alone produces.
import test from 'ava';
import { createTestDb } from '../helpers/db.js';
import { runPipeline } from '../helpers/pipeline.js';
import {
  FAILPOINT_LOCK,
  canonFingerprint,
  emptyCrontab,
  runs,
  seedDemo,
  startProcess,
  startWorker,
  stopProcess,
  violations,
  waitFor,
  waitForLog,
  type Proc,
} from './support.js';

const SEED = 81;

test('three workers and a CLI run started together: exactly one run does the work, the others are SKIPPED, and the data equals a single run', async (t) => {
  t.timeout(150_000);
  const db = await createTestDb('rel_concurrency');
  const reference = await createTestDb('rel_concurrency_ref');
  t.teardown(() => Promise.all([db.drop(), reference.drop()]));
  await Promise.all([seedDemo(db, { seed: SEED }), seedDemo(reference, { seed: SEED })]);
  const single = await runPipeline(reference, 'p_days_back => 30, p_limit => 2000');
  t.is(single.status, 'COMPLETED');

  // The run that gets the job lock parks after its match step (linking done, nothing
  // committed) until the test lets it go: every other run is started while it holds the lock.
  const holder = await db.connect();
  await holder.query(`SELECT pg_advisory_lock(${FAILPOINT_LOCK})`);
  const env = { PGOPTIONS: '-c cabinet.failpoint=wait:after_match' };
  const crontab = emptyCrontab();
  const workers: Proc[] = [1, 2, 3].map((i) => startWorker(`worker ${i}`, db.url, crontab, env));
  let cli: Proc | undefined;
  try {
    await Promise.all(workers.map((w) => waitForLog(w, '"worker started"')));
    // Three ad-hoc jobs on no queue, so that free workers take them at once.
    await db.query(
      `SELECT graphile_worker.add_job('reconcile_cabinet_leads_pipeline', '{"days_back": 30, "limit": 2000}'::json, max_attempts => 1)
       FROM generate_series(1, 3)`,
    );
    cli = startProcess('cli', ['reconcile', '--days-back', '30', '--limit', '2000', '--json'], { DATABASE_URL: db.url, ...env });

    const during = await waitFor(async () => {
      const r = await runs(db);
      return r.length === 4 && r.filter((x) => x.status === 'SKIPPED').length === 3 ? r : undefined;
    }, 'one run parked and three SKIPPED');
    t.is(during.filter((r) => r.status === 'RUNNING').length, 1);
    await holder.query(`SELECT pg_advisory_unlock(${FAILPOINT_LOCK})`);

    t.is(await cli.exit, 0, cli.stderr.join('\n'));
    const after = await waitFor(async () => {
      const r = await runs(db);
      const [jobs] = await db.query<{ n: string }>(`SELECT count(*) AS n FROM graphile_worker.jobs`);
      return r.every((x) => x.status !== 'RUNNING') && jobs!.n === '0' ? r : undefined;
    }, 'every run finished and every job done');

    t.deepEqual(after.map((r) => r.status).sort(), ['COMPLETED', 'SKIPPED', 'SKIPPED', 'SKIPPED']);
    t.deepEqual(after.map((r) => r.trigger).sort(), ['cli', 'worker', 'worker', 'worker']);
    const done = after.find((r) => r.status === 'COMPLETED')!;
    for (const r of after.filter((x) => x.status === 'SKIPPED')) {
      t.is(r.stats['skipped_reason'], 'another run holds the job lock');
      // The run holding the lock, plus any other contender whose RUNNING row was not yet SKIPPED.
      t.true((r.stats['running_run_ids'] as number[]).includes(Number(done.id)));
    }
    for (const k of ['leads_selected', 'leads_evaluated', 'newly_linked', 'new_persons', 'unmatched']) {
      t.is(done.stats['match'][k], single.stats['match'][k], `match.${k}`);
    }
    t.is(done.stats['claims']['claims_generated'], single.stats['claims']['claims_generated']);
    t.true(single.stats['match']['newly_linked'] > 50, `the data set links leads (${single.stats['match']['newly_linked']})`);
    t.deepEqual(await canonFingerprint(db), await canonFingerprint(reference));
    t.log(`run ${done.id} did the work (${done.trigger}); worker runs by process: ${JSON.stringify(after.filter((r) => r.trigger === 'worker').map((r) => r.client_pid))}`);

    t.true(workers.every((w) => !w.exited), 'every worker is still up');
    t.false(workers.some((w) => w.stderr.some((l) => /"level":(50|60)/.test(l))), 'no worker logged an error');
  } finally {
    await holder.query(`SELECT pg_advisory_unlock_all()`).catch(() => {});
    if (cli) await stopProcess(cli);
    const codes = await Promise.all(workers.map((w) => stopProcess(w)));
    t.deepEqual(codes, [0, 0, 0], 'workers stop gracefully');
  }
  t.deepEqual(await violations(db), []);
});
