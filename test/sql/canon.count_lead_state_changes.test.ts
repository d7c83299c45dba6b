// The counters of the stored lead state (canon_internal.cabinet_lead_state_counts, kept by the
// statement trigger canon.count_lead_state_changes): equal to the rows after inserts,
// updates that move a lead between counters, updates that do not, deletes and a
// truncate, whoever writes; and what the pipeline reads from them (step 7's scope
// figures, the snapshot's week counts) equals a count over the rows and the limbo view.
import test from 'ava';
import { freshDb, type TestDb } from '../helpers/db.js';
import { runPipeline } from '../helpers/pipeline.js';
import { addDays, businessToday, insertLead, tripsOnDays } from '../helpers/rows.js';
import { LIMBO_VIEW_WEEKS_SQL, linkedLead, SNAPSHOT_WEEKS_SQL } from '../helpers/scenario.js';

/** Counter rows as text, sorted: "date stage identity driver trips rule = n". */
async function counters(db: TestDb): Promise<string[]> {
  const rows = await db.query<{ c: string }>(`
    SELECT format('%s %s %s %s %s %s = %s', lead_date, limbo_stage, with_identity::text, with_driver::text, with_trips::text, with_rule::text, leads) AS c
    FROM canon_internal.cabinet_lead_state_counts ORDER BY 1`);
  return rows.map((r) => r.c);
}

/** The same, counted from the stored rows. */
async function counted(db: TestDb): Promise<string[]> {
  const rows = await db.query<{ c: string }>(`
    SELECT format('%s %s %s %s %s %s = %s', lead_date, limbo_stage, (person_key IS NOT NULL)::text, (driver_id IS NOT NULL)::text,
                  (trips_in_window > 0)::text, (window_days IS NOT NULL)::text, count(*)) AS c
    FROM canon_internal.cabinet_lead_state
    GROUP BY lead_date, limbo_stage, person_key IS NOT NULL, driver_id IS NOT NULL, trips_in_window > 0, window_days IS NOT NULL
    ORDER BY 1`);
  return rows.map((r) => r.c);
}

const stateRow = (id: number, date: string, stage: string) => `
  (${id}, 'K${id}', DATE '${date}', NULL, NULL, 14, DATE '${date}' + 14, 0, 0, 'PEN',
   1, 25, false, 5, 35, false, 25, 100, false, 0, false, false, false, '${stage}')`;

test('the counters follow every insert, update, delete and truncate of the stored state', async (t) => {
  const db = await freshDb(t, 'lead_state_counts');
  const cols = `(lead_id, lead_source_pk, lead_date, person_key, driver_id, window_days, window_end, trips_in_window,
                 trip_rows_in_window, currency, m1_trips_threshold, m1_amount, reached_m1, m5_trips_threshold, m5_amount,
                 reached_m5, m25_trips_threshold, m25_amount, reached_m25, expected_amount, has_claim_m1, has_claim_m5,
                 has_claim_m25, limbo_stage)`;
  await db.query(`INSERT INTO canon_internal.cabinet_lead_state ${cols} VALUES
    ${stateRow(1, '2026-01-05', 'NO_IDENTITY')}, ${stateRow(2, '2026-01-05', 'NO_IDENTITY')}, ${stateRow(3, '2026-01-06', 'NO_IDENTITY')}`);
  t.deepEqual(await counters(db), [
    '2026-01-05 NO_IDENTITY false false false true = 2',
    '2026-01-06 NO_IDENTITY false false false true = 1',
  ]);
  // A lead moves: one counter down, another up; an update of nothing counted changes nothing.
  await db.query(`UPDATE canon_internal.cabinet_lead_state SET limbo_stage = 'NO_TRIPS_14D', driver_id = 'D1', person_key = gen_random_uuid() WHERE lead_id = 2`);
  await db.query(`UPDATE canon_internal.cabinet_lead_state SET evaluated_at = now() - interval '1 day'`);
  t.deepEqual(await counters(db), [
    '2026-01-05 NO_IDENTITY false false false true = 1',
    '2026-01-05 NO_TRIPS_14D true true false true = 1',
    '2026-01-06 NO_IDENTITY false false false true = 1',
  ]);
  t.deepEqual(await counters(db), await counted(db));
  // An upsert (as canon.refresh_lead_state writes): inserted and updated rows both counted.
  await db.query(`INSERT INTO canon_internal.cabinet_lead_state AS s ${cols} VALUES ${stateRow(3, '2026-01-07', 'NO_IDENTITY')}, ${stateRow(4, '2026-01-07', 'NO_IDENTITY')}
    ON CONFLICT (lead_id) DO UPDATE SET lead_date = excluded.lead_date`);
  t.deepEqual(await counters(db), await counted(db));
  t.is((await counters(db)).length, 3, 'a counter that reaches zero is removed');
  await db.query(`DELETE FROM canon_internal.cabinet_lead_state WHERE lead_id IN (1, 4)`);
  t.deepEqual(await counters(db), ['2026-01-05 NO_TRIPS_14D true true false true = 1', '2026-01-07 NO_IDENTITY false false false true = 1']);
  await db.query(`TRUNCATE canon_internal.cabinet_lead_state`);
  t.deepEqual(await counters(db), []);
  const [inv] = await db.query<{ violations: string }>(`SELECT violations FROM ops.check_invariants() WHERE invariant = 'LEAD_STATE_COUNTS'`);
  t.is(Number(inv!.violations), 0);
});

test('step 7 and the snapshot read the counters: the scope figures and week counts equal the rows and the view', async (t) => {
  const db = await freshDb(t, 'lead_state_counts_run');
  const today = await businessToday(db);
  await linkedLead(db, addDays(today, -20), { trips: tripsOnDays(addDays(today, -20), [0, 1, 2, 3, 4, 5]) });
  await linkedLead(db, addDays(today, -9), { trips: tripsOnDays(addDays(today, -9), [1]) });
  await linkedLead(db, addDays(today, -2));
  await insertLead(db, { lead_created_at: addDays(today, -1), park_phone: '977000111' });
  await insertLead(db, { lead_created_at: addDays(today, -40), park_phone: '977000112' });
  const run = await runPipeline(db, 'p_days_back => 30');
  t.is(run.status, 'COMPLETED', run.error_message ?? '');
  t.deepEqual(await counters(db), await counted(db));
  const [scope] = await db.query<Record<string, string>>(`
    SELECT count(*) AS leads, count(*) FILTER (WHERE person_key IS NOT NULL) AS with_identity,
           count(*) FILTER (WHERE driver_id IS NOT NULL) AS with_driver, count(*) FILTER (WHERE trips_in_window > 0) AS with_trips
    FROM canon_internal.cabinet_lead_state WHERE lead_date >= canon.business_today() - 30`);
  const claims = run.stats['claims'] as Record<string, number>;
  t.is(claims['leads_in_scope'], Number(scope!['leads']));
  t.is(claims['leads_in_scope'], 4, 'the lead 40 days old is stored but out of the scope');
  t.is(claims['leads_with_identity'], Number(scope!['with_identity']));
  t.is(claims['leads_with_driver'], Number(scope!['with_driver']));
  t.is(claims['leads_with_trips'], 2);
  const snap = await db.query<Record<string, number>>(`${SNAPSHOT_WEEKS_SQL} ORDER BY week_start`, [run.id]);
  const view = await db.query<Record<string, number>>(`${LIMBO_VIEW_WEEKS_SQL} ORDER BY week_start`);
  t.deepEqual(snap, view);
  t.is(snap.reduce((n, w) => n + w.leads!, 0), 5);
  // A lead row added after the run is not stored yet: the live week counts include it.
  await insertLead(db, { lead_created_at: today, park_phone: '977000113' });
  const [live] = await db.query<{ n: number }>(`SELECT sum(leads)::int AS n FROM ops.limbo_week_counts()`);
  t.is(live!.n, 6);
});

/** Counter rows that differ from their live definition (canon.v_cabinet_lead_state_counted), both ways. */
async function counterDrift(db: TestDb): Promise<number> {
  const [r] = await db.query<{ n: number }>(`
    SELECT ((SELECT count(*) FROM (SELECT * FROM canon_internal.cabinet_lead_state_counts EXCEPT SELECT * FROM canon.v_cabinet_lead_state_counted) a)
          + (SELECT count(*) FROM (SELECT * FROM canon.v_cabinet_lead_state_counted EXCEPT SELECT * FROM canon_internal.cabinet_lead_state_counts) b))::int AS n`);
  return r!.n;
}

test('the funnel columns of the counters (window, milestones, claims, trips and amounts) follow every write, also one that moves no counter', async (t) => {
  const db = await freshDb(t, 'lead_state_counts_funnel');
  const cols = `(lead_id, lead_source_pk, lead_date, person_key, driver_id, window_days, window_end, trips_in_window,
                 trip_rows_in_window, currency, m1_trips_threshold, m1_amount, reached_m1, m5_trips_threshold, m5_amount,
                 reached_m5, m25_trips_threshold, m25_amount, reached_m25, expected_amount, has_claim_m1, has_claim_m5,
                 has_claim_m25, limbo_stage)`;
  await db.query(`INSERT INTO canon_internal.cabinet_lead_state ${cols} VALUES
    ${stateRow(1, '2026-01-05', 'NO_IDENTITY')}, ${stateRow(2, '2026-01-05', 'NO_IDENTITY')},
    (3, 'K3', DATE '2026-01-05', NULL, NULL, NULL, NULL, 0, 0, NULL, NULL, NULL, false, NULL, NULL, false, NULL, NULL, false, 0, false, false, false, 'NO_IDENTITY')`);
  t.is(await counterDrift(db), 0);
  const [noRule] = await db.query<{ window_days: number; with_rule: boolean }>(
    `SELECT window_days, with_rule FROM canon_internal.cabinet_lead_state_counts WHERE NOT with_rule`);
  t.deepEqual(noRule, { window_days: 0, with_rule: false }, 'a row without a claim rule is counted under window_days 0');
  // Lead 2 reaches M1 and M5 with 6 trips and gets its M1 claim: a counter of its own.
  await db.query(`UPDATE canon_internal.cabinet_lead_state SET person_key = gen_random_uuid(), driver_id = 'D2', trips_in_window = 6,
                    reached_m1 = true, reached_m5 = true, has_claim_m1 = true, limbo_stage = 'TRIPS_NO_CLAIM' WHERE lead_id = 2`);
  t.is(await counterDrift(db), 0);
  // 6 trips become 7 and the M5 amount changes: no lead moves, the sums do.
  await db.query(`UPDATE canon_internal.cabinet_lead_state SET trips_in_window = 7, m5_amount = 40 WHERE lead_id = 2`);
  t.is(await counterDrift(db), 0);
  const [sums] = await db.query<{ leads: string; trips: string; m1_amount: string; m5_amount: string }>(
    `SELECT leads, trips, m1_amount, m5_amount FROM canon_internal.cabinet_lead_state_counts WHERE reached_m5`);
  t.deepEqual(sums, { leads: '1', trips: '7', m1_amount: '25.00', m5_amount: '40.00' });
  await db.query(`DELETE FROM canon_internal.cabinet_lead_state WHERE lead_id = 1`);
  t.is(await counterDrift(db), 0);
  // A sum written behind the trigger's back is named by the check, and recounted.
  await db.query(`BEGIN; SET LOCAL session_replication_role = replica;
                  UPDATE canon_internal.cabinet_lead_state SET trips_in_window = 9 WHERE lead_id = 2; COMMIT`);
  const [inv] = await db.query<{ violations: string; examples: string[] }>(
    `SELECT violations, examples FROM ops.check_invariants() WHERE invariant = 'LEAD_STATE_COUNTS'`);
  t.is(Number(inv!.violations), 1);
  t.regex(inv!.examples[0]!, /^2026-01-05 TRIPS_NO_CLAIM identity=true driver=true trips=true rule=true: counted 1, stored 1 \(milestones, claims, window, trips, amounts or paid claims differ\)$/);
  await db.query(`SELECT ops.recount_lead_state_counts()`);
  t.is(await counterDrift(db), 0);
});
