// Step 8 of the pipeline: every COMPLETED (not dry) run stores its limbo counts per stage,
// overall and per lead week, equal to the limbo view; ops.v_limbo_history is the time
// series; the step evaluates and records the alerts, counting its own run as the last
// COMPLETED one; a dry or failed run keeps nothing.
import test from 'ava';
import { freshDb, type TestDb } from '../helpers/db.js';
import { callPipeline, runPipeline } from '../helpers/pipeline.js';
import { addDays, addTrips, businessToday, insertLead, tripsOnDays } from '../helpers/rows.js';
import { LIMBO_VIEW_WEEKS_SQL, linkedLead, linkPerson, SNAPSHOT_WEEKS_SQL } from '../helpers/scenario.js';

const STAGE_COLUMNS = ['limbo_no_identity', 'limbo_no_driver', 'limbo_no_trips_14d', 'limbo_trips_no_claim', 'limbo_ok'] as const;

/** Leads in every stage over three lead weeks. */
async function mixedLeads(db: TestDb): Promise<void> {
  const today = await businessToday(db);
  for (const days of [-3, -10, -17]) {
    const date = addDays(today, days);
    await insertLead(db, { lead_created_at: date, park_phone: null, asset_plate_number: null }); // NO_IDENTITY (MISSING_KEYS after a run)
    const noDriver = await insertLead(db, { lead_created_at: date });
    await linkPerson(db, [noDriver.key]); // NO_DRIVER
    await linkedLead(db, date); // NO_TRIPS_14D
    await linkedLead(db, date, { trips: tripsOnDays(date, [0, 1]) }); // OK after the run's claims
  }
}

/** The limbo view's counts per lead week, pivoted like the snapshot tables. */
async function liveWeeks(db: TestDb): Promise<Record<string, unknown>[]> {
  return db.query(`${LIMBO_VIEW_WEEKS_SQL} ORDER BY week_start`);
}

async function snapshotWeeks(db: TestDb, runId: number): Promise<Record<string, unknown>[]> {
  return db.query(`${SNAPSHOT_WEEKS_SQL} ORDER BY week_start`, [runId]);
}

test('a completed run stores its counts per lead week and overall, equal to the limbo view', async (t) => {
  const db = await freshDb(t, 'snapshot');
  await mixedLeads(db);
  const run = await runPipeline(db);
  t.is(run.status, 'COMPLETED', run.error_message ?? '');
  const live = await liveWeeks(db);
  t.is(live.length, 3);
  t.deepEqual(await snapshotWeeks(db, run.id), live);
  for (const w of live) t.deepEqual([w['limbo_no_identity'], w['limbo_no_driver'], w['limbo_no_trips_14d'], w['limbo_ok']], [1, 1, 1, 1]);

  const [overall] = await db.query<Record<string, number | boolean>>(
    `SELECT leads, leads_with_identity, leads_with_driver, ${STAGE_COLUMNS.join(', ')},
            business_date = canon.business_today() AS today, taken_at <= now() AS taken
     FROM ops.limbo_snapshots WHERE run_id = $1`,
    [run.id],
  );
  t.deepEqual(overall, {
    leads: 12, leads_with_identity: 9, leads_with_driver: 6,
    limbo_no_identity: 3, limbo_no_driver: 3, limbo_no_trips_14d: 3, limbo_trips_no_claim: 0, limbo_ok: 3,
    today: true, taken: true,
  });

  const snap = run.stats['snapshot'];
  t.false('implemented' in snap);
  t.is(snap.run_id, run.id);
  t.is(snap.leads, 12);
  t.deepEqual(snap.stages, { NO_IDENTITY: 3, NO_DRIVER: 3, NO_TRIPS_14D: 3, TRIPS_NO_CLAIM: 0, OK: 3 });
  t.deepEqual(snap.stages, run.stats['limbo_after'], 'the same counts as the run stats');
  t.is(snap.weeks_written, 3);
  t.is(snap.rows_written, 4);
  const step = (run.stats['steps'] as { step: string; status: string }[]).find((s) => s.step === 'snapshot_limbo');
  t.is(step?.status, 'done');
  t.false('steps_not_implemented' in run.stats);
});

test('a dry run and a failed run keep no snapshot and record no alert', async (t) => {
  const db = await freshDb(t, 'snapshot_dry');
  await mixedLeads(db);
  const c = await db.connect();
  const dry = await callPipeline(c, 'p_dry_run => true');
  t.is(dry.status, 'COMPLETED');
  t.is(dry.stats['snapshot'].rows_written, 4, 'the dry run computes the same stats');
  t.true(dry.stats['snapshot'].alerts_firing > 0);
  await c.query(`SET cabinet.failpoint = 'after_snapshot'`);
  const failed = await callPipeline(c, 'p_raise_on_failure => false');
  t.is(failed.status, 'FAILED');
  t.deepEqual(await db.query(`SELECT run_id FROM ops.limbo_snapshots`), []);
  t.deepEqual(await db.query(`SELECT run_id FROM ops.limbo_snapshot_weeks`), []);
  t.deepEqual(await db.query(`SELECT id FROM ops.alerts`), []);
});

test('ops.v_limbo_history: one row per completed run, oldest first, with the change since the previous snapshot', async (t) => {
  const db = await freshDb(t, 'snapshot_history');
  await mixedLeads(db);
  const first = await runPipeline(db);
  const today = await businessToday(db);
  for (let i = 0; i < 4; i++) await insertLead(db, { lead_created_at: addDays(today, -1), park_phone: null, asset_plate_number: null });
  const second = await runPipeline(db);
  await runPipeline(db, 'p_dry_run => true');
  const history = await db.query<Record<string, number | null>>(
    `SELECT run_id::int, leads, limbo_no_identity, limbo_no_identity_change, limbo_ok_change, leads_change,
            previous_run_id::int, pct_with_identity::float8
     FROM ops.v_limbo_history ORDER BY taken_at, run_id`,
  );
  t.deepEqual(history, [
    { run_id: first.id, leads: 12, limbo_no_identity: 3, limbo_no_identity_change: null, limbo_ok_change: null, leads_change: null, previous_run_id: null, pct_with_identity: 75 },
    { run_id: second.id, leads: 16, limbo_no_identity: 7, limbo_no_identity_change: 4, limbo_ok_change: 0, leads_change: 4, previous_run_id: first.id, pct_with_identity: 56.25 },
  ]);
});

test('step 8 records the firing alerts with the run id; the next run updates the same alert', async (t) => {
  const db = await freshDb(t, 'snapshot_alerts');
  const today = await businessToday(db);
  await db.query(
    `INSERT INTO public.module_ct_cabinet_leads (external_id, lead_created_at, first_name)
     SELECT 'NK-' || g, $1::date + time '09:00', 'Sin Datos' FROM generate_series(1, 101) g`,
    [addDays(today, -40)],
  );
  const first = await runPipeline(db);
  const fired = (first.stats['snapshot'].alerts as { rule_code: string; current_value: number; is_new: boolean }[]).map((a) => a.rule_code);
  t.true(fired.includes('NO_IDENTITY_ABOVE'));
  t.false(fired.includes('LAST_COMPLETED_RUN_STALE'), 'the run counts itself as the last COMPLETED run');
  t.false(fired.includes('LAST_RUN_FAILED'));
  t.is(first.stats['snapshot'].alerts_new, first.stats['snapshot'].alerts_firing);
  const second = await runPipeline(db);
  t.is(second.stats['snapshot'].alerts_new, 0);
  const [row] = await db.query<{ first_run_id: number; last_run_id: number; times_seen: number; current_value: number }>(
    `SELECT first_run_id::int, last_run_id::int, times_seen, current_value::int FROM ops.alerts
     WHERE rule_code = 'NO_IDENTITY_ABOVE' AND resolved_at IS NULL`,
  );
  t.deepEqual(row, { first_run_id: first.id, last_run_id: second.id, times_seen: 2, current_value: 101 });
});

test('a completed run resolves the LAST_RUN_FAILED and stale alerts recorded before it', async (t) => {
  const db = await freshDb(t, 'snapshot_resolve');
  await db.query(
    `INSERT INTO canon.ingestion_runs (job_name, status, source_tables, started_at, created_at, completed_at, error_message)
     VALUES ('reconcile_cabinet_leads_pipeline', 'FAILED', '["module_ct_cabinet_leads"]', now() - interval '3 hours',
             now() - interval '3 hours', now() - interval '3 hours', 'boom')`,
  );
  const before = await db.query<{ rule_code: string }>(`SELECT rule_code FROM ops.check_limbo_alerts() ORDER BY rule_code`);
  t.deepEqual(before.map((r) => r.rule_code), ['LAST_COMPLETED_RUN_STALE', 'LAST_RUN_FAILED']);
  const run = await runPipeline(db);
  t.is(run.status, 'COMPLETED');
  t.deepEqual(run.stats['snapshot'].alerts, []);
  const open = await db.query(`SELECT rule_code FROM ops.alerts WHERE resolved_at IS NULL`);
  t.deepEqual(open, []);
  const resolved = await db.query<{ rule_code: string }>(`SELECT rule_code FROM ops.alerts WHERE resolved_at IS NOT NULL ORDER BY rule_code`);
  t.deepEqual(resolved.map((r) => r.rule_code), ['LAST_COMPLETED_RUN_STALE', 'LAST_RUN_FAILED']);
});

test('calling it again for a run replaces that run\'s snapshot; a NULL run id is refused', async (t) => {
  const db = await freshDb(t, 'snapshot_again');
  const today = await businessToday(db);
  const run = await runPipeline(db);
  t.is(run.stats['snapshot'].leads, 0);
  t.is(run.stats['snapshot'].weeks_written, 0);
  const lead = await linkedLead(db, addDays(today, -2));
  await addTrips(db, lead.driverId, tripsOnDays(lead.leadDate, [0]));
  const [again] = await db.query<{ s: Record<string, any> }>(`SELECT ops.snapshot_limbo($1) AS s`, [run.id]);
  t.deepEqual(again!.s.stages, { NO_IDENTITY: 0, NO_DRIVER: 0, NO_TRIPS_14D: 0, TRIPS_NO_CLAIM: 1, OK: 0 });
  t.deepEqual(await db.query(`SELECT count(*)::int AS n FROM ops.limbo_snapshots`), [{ n: 1 }]);
  await t.throwsAsync(db.query(`SELECT ops.snapshot_limbo(NULL)`), { message: /p_run_id is NULL/ });
});
