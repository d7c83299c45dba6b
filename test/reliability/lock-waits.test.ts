// Lock waits are bounded and logged (issue 14, item 8): a session holding a lock on
// canon.settings or canon.ingestion_runs (`BEGIN; LOCK ... IN ACCESS EXCLUSIVE MODE;` in
// psql) makes `reconcile` and `import-leads`, run as real processes, give up within the
// lock timeout (the session's, here 2 s, or 30 s) instead of waiting for the 900 s
// statement timeout: exit 1, a message naming the lock and its holder, and a FAILED run
// row (or, when canon.ingestion_runs itself is locked, none, or one the next run marks).
import path from 'node:path';
import test from 'ava';
import type pg from 'pg';
import { PROJECT_ROOT } from '../../src/config.js';
import { errorLine, runCli } from '../helpers/cli.js';
import { freshDb, type TestDb } from '../helpers/db.js';
import { FAILPOINT_LOCK, startProcess, violations, waitFor } from './support.js';

/** A lock_timeout shorter than the 30 s default keeps the tests fast; the product must honour it. */
const SHORT = { PGOPTIONS: '-c lock_timeout=2s', LOG_LEVEL: 'warn' };
const CSV = path.join(PROJECT_ROOT, 'test', 'fixtures', 'import', 'already.csv');
const IMPORT_LOCK = `hashtext('cabinet_leads'), hashtext('import_cabinet_leads')`;

/** A second session that holds an ACCESS EXCLUSIVE lock on the table until ROLLBACK, as someone in psql would. */
async function holdLock(db: TestDb, table: string): Promise<pg.Client> {
  const c = await db.connect();
  await c.query('BEGIN');
  await c.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
  return c;
}

interface Run {
  id: string;
  job_name: string;
  status: string;
  error_sqlstate: string | null;
  error_message: string | null;
  completed: boolean;
  context: string | null;
}

async function runs(db: TestDb): Promise<Run[]> {
  return db.query<Run>(
    `SELECT id::text, job_name, status, error_sqlstate, error_message, completed_at IS NOT NULL AS completed,
            stats->'error'->>'context' AS context
     FROM canon.ingestion_runs ORDER BY id`,
  );
}

const HELD_BY = (table: string) => new RegExp(`held by ${table.replace('.', '\\.')} AccessExclusiveLock by pid \\d+( \\(.*\\))?, idle in transaction for \\d+ s \\(docs/operations\\.md`);

test('canon.settings locked: reconcile gives up after the session\'s lock_timeout with a FAILED run naming the wait and its holder; the next run completes', async (t) => {
  const db = await freshDb(t, 'lock_settings');
  const locker = await holdLock(db, 'canon.settings');
  const r = await runCli(['reconcile'], { DATABASE_URL: db.url, ...SHORT });
  await locker.query('ROLLBACK');
  t.is(r.code, 1, r.stderr);
  t.regex(errorLine(r), /^cabinet-leads: error: run \d+ failed: canceling statement due to lock timeout; /);
  t.regex(errorLine(r), HELD_BY('canon.settings'));
  // 2 s for the run, 2 s for its alert check (which needs the settings too), never 30 s.
  t.true(r.ms < 15_000, `took ${r.ms} ms`);
  const [failed, ...rest] = await runs(db);
  t.deepEqual(rest, []);
  t.like(failed, { status: 'FAILED', error_sqlstate: '55P03', error_message: 'canceling statement due to lock timeout', completed: true });
  t.regex(failed!.context ?? '', /canon\.setting\(text\)/);

  const next = await runCli(['reconcile'], { DATABASE_URL: db.url });
  t.is(next.code, 0, next.stderr);
  t.deepEqual((await runs(db)).map((x) => x.status), ['FAILED', 'COMPLETED']);
  t.deepEqual(await violations(db), []);
});

test('canon.ingestion_runs locked: reconcile exits 1 within the lock_timeout naming the table and its holder; nothing is logged and the next run completes', async (t) => {
  const db = await freshDb(t, 'lock_runs');
  const locker = await holdLock(db, 'canon.ingestion_runs');
  const r = await runCli(['reconcile'], { DATABASE_URL: db.url, ...SHORT });
  await locker.query('ROLLBACK');
  t.is(r.code, 1, r.stderr);
  t.regex(errorLine(r), /^cabinet-leads: error: run failed, not logged: canceling statement due to lock timeout on canon\.ingestion_runs /);
  t.regex(errorLine(r), HELD_BY('canon.ingestion_runs'));
  t.true(r.ms < 15_000, `took ${r.ms} ms`);
  t.deepEqual(await runs(db), []);

  const next = await runCli(['reconcile'], { DATABASE_URL: db.url });
  t.is(next.code, 0, next.stderr);
  t.deepEqual((await runs(db)).map((x) => x.status), ['COMPLETED']);
  t.deepEqual(await violations(db), []);
});

test('canon.ingestion_runs locked while a run works: the run gives up at its end, stays RUNNING, and the next run marks it FAILED', async (t) => {
  const db = await freshDb(t, 'lock_runs_mid');
  const holder = await db.connect();
  await holder.query(`SELECT pg_advisory_lock(${FAILPOINT_LOCK})`);
  const run = startProcess('reconcile', ['reconcile'], {
    DATABASE_URL: db.url, LOG_LEVEL: 'warn', PGOPTIONS: '-c lock_timeout=2s -c cabinet.failpoint=wait:after_match',
  });
  // Parked at the failpoint, after its RUNNING row was committed.
  await waitFor(async () => {
    const [w] = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_locks l JOIN canon.ingestion_runs r ON r.backend_pid = l.pid AND r.status = 'RUNNING'
       WHERE l.locktype = 'advisory' AND NOT l.granted`);
    return w!.n === 1 ? true : undefined;
  }, 'the run to park at the failpoint');
  const locker = await holdLock(db, 'canon.ingestion_runs');
  await holder.query(`SELECT pg_advisory_unlock(${FAILPOINT_LOCK})`);
  const code = await run.exit;
  await locker.query('ROLLBACK');
  t.is(code, 1, run.stderr.join('\n'));
  t.regex(run.stderr.filter((l) => !l.startsWith('{')).pop() ?? '', /run failed, not logged: canceling statement due to lock timeout on canon\.ingestion_runs/);
  t.deepEqual((await runs(db)).map((x) => x.status), ['RUNNING']);

  const next = await runCli(['reconcile'], { DATABASE_URL: db.url });
  t.is(next.code, 0, next.stderr);
  const after = await runs(db);
  t.deepEqual(after.map((x) => [x.status, x.error_sqlstate]), [['FAILED', 'CL003'], ['COMPLETED', null]]);
  t.deepEqual(await violations(db), []);
});

test('called from psql with no lock_timeout of its own, a run gives up on a locked canon.settings after 30 s, not the 900 s statement timeout', async (t) => {
  t.timeout(90_000);
  const db = await freshDb(t, 'lock_default');
  const locker = await holdLock(db, 'canon.settings');
  const c = await db.connect();
  await c.query(`SET statement_timeout = '900s'`);
  const started = Date.now();
  const res = await c.query<{ run: { status: string; error_sqlstate: string } }>(
    `CALL ops.reconcile_cabinet_leads_pipeline(p_raise_on_failure => false, run => NULL)`,
  );
  const ms = Date.now() - started;
  await locker.query('ROLLBACK');
  t.like(res.rows[0]!.run, { status: 'FAILED', error_sqlstate: '55P03' });
  t.true(ms >= 29_000 && ms < 45_000, `gave up after ${ms} ms`);
  const after = await c.query<{ lock_timeout: string }>(`SHOW lock_timeout`);
  t.is(after.rows[0]!.lock_timeout, '0', 'the session keeps its own setting');
});

test('canon.ingestion_runs locked: import-leads exits 1 within the lock_timeout, loads nothing and names the holder', async (t) => {
  const db = await freshDb(t, 'lock_import');
  const locker = await holdLock(db, 'canon.ingestion_runs');
  const r = await runCli(['import-leads', CSV], { DATABASE_URL: db.url, ...SHORT });
  await locker.query('ROLLBACK');
  t.is(r.code, 1, r.stderr);
  t.regex(errorLine(r), /^cabinet-leads: error: import-leads: nothing was loaded: canceling statement due to lock timeout; /);
  t.regex(errorLine(r), HELD_BY('canon.ingestion_runs'));
  // 2 s for the import, 2 s for the attempt to log it FAILED.
  t.true(r.ms < 15_000, `took ${r.ms} ms`);
  const [n] = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM public.module_ct_cabinet_leads`);
  t.is(n!.n, 0);
  t.deepEqual(await runs(db), []);

  const again = await runCli(['import-leads', CSV], { DATABASE_URL: db.url, LOG_LEVEL: 'warn' });
  t.is(again.code, 0, again.stderr);
  t.deepEqual((await runs(db)).map((x) => [x.job_name, x.status]), [['import_cabinet_leads', 'COMPLETED']]);
});

test('public.module_ct_cabinet_leads locked by an upstream writer: import-leads gives up within the lock_timeout and logs the import FAILED', async (t) => {
  const db = await freshDb(t, 'lock_import_leads');
  const locker = await holdLock(db, 'public.module_ct_cabinet_leads');
  const r = await runCli(['import-leads', CSV], { DATABASE_URL: db.url, ...SHORT });
  await locker.query('ROLLBACK');
  t.is(r.code, 1, r.stderr);
  t.regex(errorLine(r), HELD_BY('public.module_ct_cabinet_leads'));
  t.true(r.ms < 15_000, `took ${r.ms} ms`);
  t.deepEqual((await runs(db)).map((x) => [x.job_name, x.status, x.error_message]), [
    ['import_cabinet_leads', 'FAILED', 'canceling statement due to lock timeout'],
  ]);
});

test('canon.settings locked: import-leads does not need it and loads', async (t) => {
  const db = await freshDb(t, 'lock_import_settings');
  const locker = await holdLock(db, 'canon.settings');
  try {
    const r = await runCli(['import-leads', CSV], { DATABASE_URL: db.url, ...SHORT });
    t.is(r.code, 0, r.stderr);
  } finally {
    await locker.query('ROLLBACK');
  }
  t.deepEqual((await runs(db)).map((x) => x.status), ['COMPLETED']);
});

test('an import queued behind another import waits for it longer than the lock_timeout (queueing is not a stuck lock), then loads', async (t) => {
  const db = await freshDb(t, 'lock_import_queue');
  const other = await db.connect();
  await other.query(`SELECT pg_advisory_lock(${IMPORT_LOCK})`);
  const imp = startProcess('import', ['import-leads', CSV], { DATABASE_URL: db.url, LOG_LEVEL: 'warn', PGOPTIONS: '-c lock_timeout=1s' });
  // Still waiting on the import lock after three times its lock_timeout.
  await waitFor(async () => {
    if (imp.exited) throw new Error(`the import exited while queued: ${imp.stderr.join('\n')}`);
    const [w] = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity a
       WHERE a.datname = current_database() AND a.wait_event_type = 'Lock' AND a.wait_event = 'advisory'
         AND a.query_start < now() - interval '3 seconds'`);
    return w!.n === 1 ? true : undefined;
  }, 'the import to wait 3 s for the import lock');
  await other.query(`SELECT pg_advisory_unlock(${IMPORT_LOCK})`);
  t.is(await imp.exit, 0, imp.stderr.join('\n'));
  t.deepEqual((await runs(db)).map((x) => x.status), ['COMPLETED']);
});

test('canon.settings locked: doctor gives up within the lock_timeout with exit 2 (an error, not a verdict) naming the holder', async (t) => {
  const db = await freshDb(t, 'lock_doctor');
  const locker = await holdLock(db, 'canon.settings');
  const r = await runCli(['doctor'], { DATABASE_URL: db.url, ...SHORT });
  await locker.query('ROLLBACK');
  t.is(r.code, 2, r.stderr);
  t.regex(errorLine(r), /^cabinet-leads: error: doctor: the check failed: canceling statement due to lock timeout; /);
  t.regex(errorLine(r), HELD_BY('canon.settings'));
  t.true(r.ms < 15_000, `took ${r.ms} ms`);
});
