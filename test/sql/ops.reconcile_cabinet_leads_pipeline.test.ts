// The run protocol of SPEC 7 (steps 1, 2, 3, 9): RUNNING visible at once, SKIPPED under
// the lock, FAILED logged when a step raises, abandoned runs, dry runs, params.
// Each test gets its own database (withDb): runs and locks of one test must not see another's.
import test from 'ava';
import { type TestDb, withDb } from '../helpers/db.js';
import { callPipeline } from '../helpers/pipeline.js';
import { FAILPOINT_LOCK, waitFor } from '../helpers/locks.js';

const JOB_LOCK = `hashtext('cabinet_leads'), hashtext('reconcile_cabinet_leads_pipeline')`;

interface Run {
  id: number;
  status: string;
  dry_run: boolean;
  params: Record<string, unknown>;
  stats: Record<string, unknown>;
  error_message: string | null;
  error_sqlstate: string | null;
  source_tables: string[];
  backend_pid: number;
}

test('a completed run is logged with params, scope, source tables and per-step durations', (t) =>
  withDb('pipeline', async (db) => {
    const c = await db.connect();
    const run = await callPipeline<Run>(c, 'p_days_back => 7, p_limit => 10');
    t.is(run.status, 'COMPLETED');
    t.false(run.dry_run);
    t.deepEqual(run.source_tables, ['module_ct_cabinet_leads', 'drivers', 'summary_daily']);
    t.is(run.params['days_back'], 7);
    t.is(run.params['limit'], 10);
    const [row] = await db.query<{ from_ok: boolean; to_ok: boolean; completed: boolean }>(
      `SELECT scope_date_from = canon.business_today() - 7 AS from_ok, scope_date_to = canon.business_today() AS to_ok,
              completed_at IS NOT NULL AS completed
       FROM canon.ingestion_runs WHERE id = $1`,
      [run.id],
    );
    t.deepEqual(row, { from_ok: true, to_ok: true, completed: true });
    const steps = (run.stats['steps'] as { step: string; status: string; ms: number }[]).map((s) => s.step);
    t.deepEqual(steps.slice(0, 2), ['check_source_contract', 'refresh_driver_index']);
    const durations = run.stats['durations_ms'] as Record<string, number>;
    t.true(typeof durations['total'] === 'number' && durations['total'] >= 0);
    for (const s of steps) t.true(typeof durations[s] === 'number', `duration of ${s}`);
  }));

test('the RUNNING row is visible from another connection while the run is in progress', (t) =>
  withDb('pipeline', async (db) => {
    const holder = await db.connect();
    const runner = await db.connect();
    const observer = await db.connect();
    await holder.query(`SELECT pg_advisory_lock(${FAILPOINT_LOCK})`);
    await runner.query(`SET cabinet.failpoint = 'wait:after_match'`);
    const pending = callPipeline<Run>(runner);
    const seen = await waitFor(async () => {
      const rows = (await observer.query<{ id: number; status: string; backend_pid: number }>(
        `SELECT id, status, backend_pid FROM canon.ingestion_runs WHERE status = 'RUNNING'`,
      )).rows;
      return rows[0];
    }, 'a RUNNING row');
    t.is(seen.status, 'RUNNING');
    t.is(seen.backend_pid, (runner as unknown as { processID: number }).processID);
    await holder.query(`SELECT pg_advisory_unlock(${FAILPOINT_LOCK})`);
    const run = await pending;
    t.is(run.id, Number(seen.id));
    t.is(run.status, 'COMPLETED');
  }));

test('a second run while one holds the job lock is logged SKIPPED and does nothing', (t) =>
  withDb('pipeline', async (db) => {
    const holder = await db.connect();
    await holder.query(`SELECT pg_advisory_lock(${JOB_LOCK})`);
    const c = await db.connect();
    const run = await callPipeline<Run>(c);
    t.is(run.status, 'SKIPPED');
    t.is(run.stats['skipped_reason'], 'another run holds the job lock');
    t.false('steps' in run.stats);
    await holder.query(`SELECT pg_advisory_unlock(${JOB_LOCK})`);
    t.is((await callPipeline<Run>(c)).status, 'COMPLETED');
  }));

test('two runs started together: exactly one does the work, the other is SKIPPED', (t) =>
  withDb('pipeline', async (db) => {
    const holder = await db.connect();
    const a = await db.connect();
    const b = await db.connect();
    await holder.query(`SELECT pg_advisory_lock(${FAILPOINT_LOCK})`);
    await a.query(`SET cabinet.failpoint = 'wait:after_match'`);
    await b.query(`SET cabinet.failpoint = 'wait:after_match'`);
    const runs = Promise.all([callPipeline<Run>(a), callPipeline<Run>(b)]);
    // One of them is parked at the failpoint holding the job lock; the other skips.
    await waitFor(async () => {
      const rows = (await holder.query(`SELECT 1 FROM canon.ingestion_runs WHERE status = 'SKIPPED'`)).rows;
      return rows.length ? true : undefined;
    }, 'a SKIPPED run');
    await holder.query(`SELECT pg_advisory_unlock(${FAILPOINT_LOCK})`);
    const statuses = (await runs).map((r) => r.status).sort();
    t.deepEqual(statuses, ['COMPLETED', 'SKIPPED']);
  }));

test('a step that raises makes the run FAILED, logged with the error, and the CALL raises', (t) =>
  withDb('pipeline', async (db) => {
    const c = await db.connect();
    await c.query(`SET cabinet.failpoint = 'after_match'`);
    const err = await t.throwsAsync(callPipeline<Run>(c));
    t.regex(err!.message, /^run \d+ FAILED: failpoint "after_match" triggered/);
    const [run] = await db.query<Run>(`SELECT * FROM canon.ingestion_runs ORDER BY id DESC LIMIT 1`);
    t.is(run!.status, 'FAILED');
    t.is(run!.error_sqlstate, 'CL099');
    t.regex(run!.error_message!, /failpoint "after_match"/);
    t.is((run!.stats['error'] as Record<string, string>)['sqlstate'], 'CL099');
  }));

test('with p_raise_on_failure => false a failed run is returned instead of raised', (t) =>
  withDb('pipeline', async (db) => {
    const c = await db.connect();
    await c.query(`SET cabinet.failpoint = 'after_claims'`);
    const run = await callPipeline<Run>(c, 'p_raise_on_failure => false');
    t.is(run.status, 'FAILED');
    t.regex(run.error_message!, /after_claims/);
  }));

test('a RUNNING run whose backend was killed is marked FAILED (abandoned) by the next run', (t) =>
  withDb('pipeline', async (db) => {
    const holder = await db.connect();
    const victim = await db.connect();
    await holder.query(`SELECT pg_advisory_lock(${FAILPOINT_LOCK})`);
    await victim.query(`SET cabinet.failpoint = 'wait:after_refresh_driver_index'`);
    const pending = callPipeline<Run>(victim).catch((e: Error) => e);
    const running = await waitFor(async () => {
      const rows = (await holder.query<{ id: number; backend_pid: number }>(
        `SELECT id, backend_pid FROM canon.ingestion_runs WHERE status = 'RUNNING'`,
      )).rows;
      return rows[0];
    }, 'a RUNNING row');
    await holder.query(`SELECT pg_terminate_backend($1)`, [running.backend_pid]);
    t.true((await pending) instanceof Error);
    await holder.query(`SELECT pg_advisory_unlock(${FAILPOINT_LOCK})`);
    const [stuck] = await db.query<{ status: string }>(`SELECT status FROM canon.ingestion_runs WHERE id = $1`, [running.id]);
    t.is(stuck!.status, 'RUNNING', 'nothing can update the row of a killed backend');
    const c = await db.connect();
    const next = await callPipeline<Run>(c);
    t.is(next.status, 'COMPLETED');
    t.is(next.stats['abandoned_runs_marked'], 1);
    const [old] = await db.query<Run>(`SELECT * FROM canon.ingestion_runs WHERE id = $1`, [running.id]);
    t.is(old!.status, 'FAILED');
    t.regex(old!.error_message!, /^abandoned: backend \d+/);
  }));

test('a run cancelled by statement_timeout is logged FAILED, not left RUNNING', (t) =>
  withDb('pipeline', async (db) => {
    const holder = await db.connect();
    const c = await db.connect();
    await holder.query(`SELECT pg_advisory_lock(${FAILPOINT_LOCK})`);
    await c.query(`SET cabinet.failpoint = 'wait:after_match'`);
    // Long enough for the steps before the failpoint even on a loaded machine.
    await c.query(`SET statement_timeout = '3s'`);
    const err = await t.throwsAsync(callPipeline<Run>(c));
    t.regex(err!.message, /FAILED: canceling statement due to statement timeout/);
    const [run] = await db.query<Run>(`SELECT * FROM canon.ingestion_runs ORDER BY id DESC LIMIT 1`);
    t.is(run!.status, 'FAILED');
    t.is(run!.error_sqlstate, '57014');
  }));

test('a dry run is logged with dry_run = true and the same step list', (t) =>
  withDb('pipeline', async (db) => {
    const c = await db.connect();
    const dry = await callPipeline<Run>(c, 'p_dry_run => true');
    const wet = await callPipeline<Run>(c);
    t.is(dry.status, 'COMPLETED');
    t.true(dry.dry_run);
    const steps = (r: Run) => (r.stats['steps'] as { step: string }[]).map((s) => s.step);
    t.deepEqual(steps(dry), steps(wet));
  }));

test('bad parameters are refused with a message naming the value, and no run is logged', (t) =>
  withDb('pipeline', async (db) => {
    const c = await db.connect();
    const e1 = await t.throwsAsync(callPipeline<Run>(c, 'p_limit => -1'));
    t.regex(e1!.message, /invalid limit -1/);
    const e2 = await t.throwsAsync(callPipeline<Run>(c, 'p_days_back => NULL'));
    t.regex(e2!.message, /invalid days_back NULL/);
    const [n] = await db.query<{ n: string }>(`SELECT count(*) AS n FROM canon.ingestion_runs`);
    t.is(n!.n, '0');
  }));

test('the run-log query of the operations guide works verbatim', (t) =>
  withDb('pipeline', async (db) => {
    const c = await db.connect();
    await callPipeline<Run>(c);
    await callPipeline<Run>(c, 'p_dry_run => true');
    const rows = await db.query<{ status: string; dry_run: boolean }>(`SELECT * FROM canon.ingestion_runs
    WHERE source_tables::text LIKE '%module_ct_cabinet_leads%'
    ORDER BY created_at DESC LIMIT 10;`);
    t.deepEqual(rows.map((r) => [r.status, r.dry_run]), [['COMPLETED', true], ['COMPLETED', false]]);
  }));

test('a CALL from psql prints no NOTICE (temp tables dropped "if exists"), first run, later runs, dry runs and limbo-only runs alike', (t) =>
  withDb('pipeline', async (db) => {
    await db.query(`INSERT INTO public.drivers (driver_id, park_id, first_name, last_name, phone, car_number, hire_date)
                    VALUES ('d1', canon.setting('target_park_id'), 'Juan', 'Perez', '51977000001', 'ABC123', canon.business_today() - 3)`);
    await db.query(`INSERT INTO public.module_ct_cabinet_leads (external_id, lead_created_at, first_name, last_name, park_phone, asset_plate_number)
                    VALUES ('n1', canon.business_today() - 2, 'Juan', 'Perez', '977000001', NULL),
                           ('n2', canon.business_today() - 2, 'Rosa', 'Vega', '977000002', 'XYZ999')`);
    await db.query(`INSERT INTO public.summary_daily (driver_id, date_file, count_orders_completed) VALUES ('d1', to_char(canon.business_today() - 1, 'DD-MM-YYYY'), 3)`);
    const c = await db.connect(); // a new session, as psql opens: no temp schema yet
    const notices: string[] = [];
    c.on('notice', (n) => notices.push(`${n.message} (${(n.where ?? '').split('\n')[1] ?? n.where ?? ''})`));
    const runs = [await callPipeline<Run>(c), await callPipeline<Run>(c), await callPipeline<Run>(c, 'p_dry_run => true'), await callPipeline<Run>(c, 'p_only_limbo => true')];
    t.deepEqual(runs.map((r) => r.status), ['COMPLETED', 'COMPLETED', 'COMPLETED', 'COMPLETED']);
    t.deepEqual(notices, []);
    // The steps silence their own temp-table NOTICEs: a session's setting is left as it is.
    t.is((await c.query<{ v: string }>(`SELECT current_setting('client_min_messages') AS v`)).rows[0]!.v, 'notice');
    await c.query(`SET client_min_messages = log`);
    await callPipeline<Run>(c);
    t.deepEqual(notices, [], 'even at client_min_messages = log, no step prints its temp tables');
    t.false('steps_not_implemented' in runs[0]!.stats);
  }));
