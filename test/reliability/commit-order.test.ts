// Correct under every commit order (issue 14, items 1-4): what a run reads of the upstream
// tables does not depend on ids, pages or timestamps, only on what committed since the last
// read. Each test writes the way a second writer really does (a transaction held open while
// others commit, a subtransaction, a page freed by DELETE + VACUUM, an update in place, odd
// timestamps), then checks the next run and the views, and that doctor finds nothing.
import test from 'ava';
import { freshDb, type TestDb } from '../helpers/db.js';
import { runPipeline } from '../helpers/pipeline.js';
import { addDays, addTrips, businessToday, dmy, insertLead, tripsOnDays, uid } from '../helpers/rows.js';
import { claimsOf, limboRow, linkedLead, stateDrift } from '../helpers/scenario.js';
import { violations } from './support.js';

async function run(db: TestDb): Promise<Record<string, any>> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const r = await runPipeline(db);
  if (r.status !== 'COMPLETED') throw new Error(`run ${r.id} ${r.status}: ${r.error_message}`);
  return r.stats;
}

async function addDriver(db: TestDb, driverId: string, phone: string, extra = ''): Promise<void> {
  await db.query(
    `INSERT INTO public.drivers (driver_id, park_id, first_name, last_name, phone, hire_date, created_at, updated_at)
     VALUES ($1, '08e20910d81d42658d4334d3f6d10ac0', 'Juan', 'Perez', $2, canon.business_today() - 10 ${extra})`,
    [driverId, phone],
  );
}

async function linkedDriver(db: TestDb, leadKey: string): Promise<string | null> {
  const [r] = await db.query<{ driver_id: string | null }>(
    `SELECT pd.driver_id FROM canon.identity_links l JOIN canon.v_person_driver pd ON pd.person_key = l.person_key
     WHERE l.source_table = 'module_ct_cabinet_leads' AND l.source_pk = $1`,
    [leadKey],
  );
  return r?.driver_id ?? null;
}

test('a lead committed after a higher id was read (two writers) is in the view at once and keyed, matched and stored by the next run', async (t) => {
  const db = await freshDb(t, 'order_leads');
  const today = await businessToday(db);
  await addDriver(db, 'DRV-A', '51977000001', `, now(), now()`);
  // Writer A inserts its lead and keeps its transaction open (an import, an upstream sync).
  const a = await db.connect();
  await a.query('BEGIN');
  const [{ id: idA, key: keyA }] = (await a.query<{ id: number; key: string }>(
    `INSERT INTO public.module_ct_cabinet_leads (external_id, lead_created_at, first_name, last_name, park_phone)
     VALUES ('ORDER-A', $1::date + time '09:00', 'Juan', 'Perez', '977000001') RETURNING id, canon.lead_source_pk(external_id, id) AS key`,
    [addDays(today, -2)],
  )).rows as [{ id: number; key: string }];
  // Writer B inserts and commits a lead with a higher id; a run reads it.
  const b = await insertLead(db, { external_id: 'ORDER-B', lead_created_at: addDays(today, -2) });
  t.true(b.id > idA);
  await run(db);
  await a.query('COMMIT');
  await a.end();
  // In the view at once, evaluated live; one row per dated lead.
  t.like(await limboRow(db, keyA), { lead_id: idA, limbo_stage: 'NO_IDENTITY' });
  const stats = await run(db);
  t.is(stats['match']['lead_keys']['lead_rows_written'], 1);
  t.is(await linkedDriver(db, keyA), 'DRV-A');
  t.like(await limboRow(db, keyA), { lead_id: idA, driver_id: 'DRV-A', limbo_stage: 'NO_TRIPS_14D' });
  const [stored] = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM canon_internal.cabinet_lead_state WHERE lead_id = $1`, [idA]);
  t.is(stored!.n, 1);
  t.is(await stateDrift(db), 0);
  t.deepEqual(await violations(db), []);
});

test('a lead written in a subtransaction of a transaction open across a run is read by the next run', async (t) => {
  const db = await freshDb(t, 'order_subxact');
  const today = await businessToday(db);
  await addDriver(db, 'DRV-S', '51977000002', `, now(), now()`);
  await insertLead(db, { lead_created_at: addDays(today, -3) });
  await run(db);
  const w = await db.connect();
  await w.query('BEGIN');
  await w.query(`INSERT INTO public.drivers (driver_id, park_id, phone) VALUES ('unrelated', 'p', '51900000009')`); // the parent's xid first
  await w.query('SAVEPOINT s');
  await w.query(
    `INSERT INTO public.module_ct_cabinet_leads (external_id, lead_created_at, first_name, last_name, park_phone)
     VALUES ('SUB-1', $1::date + time '09:00', 'Juan', 'Perez', '977000002')`,
    [addDays(today, -1)],
  );
  await w.query('RELEASE SAVEPOINT s');
  await run(db); // reads while the writer is still open
  await w.query('COMMIT');
  await w.end();
  await run(db);
  t.is(await linkedDriver(db, 'SUB-1'), 'DRV-S');
  t.deepEqual(await violations(db), []);
});

test('a lead corrected in place (its phone) is keyed again and its unmatched lead retried and linked by the next run', async (t) => {
  const db = await freshDb(t, 'order_update_lead');
  const today = await businessToday(db);
  await addDriver(db, 'DRV-U', '51977000003', `, now() - interval '3 days', now() - interval '3 days'`);
  const lead = await insertLead(db, { external_id: 'FIX-1', lead_created_at: addDays(today, -2), park_phone: '977999999' });
  await run(db);
  t.like(await limboRow(db, lead.key), { limbo_stage: 'NO_IDENTITY', reason_code: 'NO_CANDIDATES' });
  await db.query(`UPDATE public.module_ct_cabinet_leads SET park_phone = '977000003' WHERE id = $1`, [lead.id]);
  await run(db);
  t.is(await linkedDriver(db, lead.key), 'DRV-U');
  t.deepEqual(await violations(db), []);
});

test('a lead re-keyed or re-dated upstream shows under its new key and date at once; the next run stores it so', async (t) => {
  const db = await freshDb(t, 'order_rekey');
  const today = await businessToday(db);
  const lead = await insertLead(db, { external_id: 'OLD-KEY', lead_created_at: addDays(today, -5) });
  await run(db);
  await db.query(`UPDATE public.module_ct_cabinet_leads SET external_id = 'NEW-KEY', lead_created_at = $2::date + time '08:00' WHERE id = $1`,
    [lead.id, addDays(today, -4)]);
  t.like(await limboRow(db, 'NEW-KEY'), { lead_id: lead.id, lead_date: addDays(today, -4) });
  t.deepEqual(await db.query(`SELECT lead_id FROM ops.v_cabinet_leads_limbo WHERE lead_source_pk = 'OLD-KEY'`), []);
  await run(db);
  t.deepEqual(await db.query(`SELECT lead_source_pk, lead_date::text FROM canon_internal.cabinet_lead_state WHERE lead_id = $1`, [lead.id]),
    [{ lead_source_pk: 'NEW-KEY', lead_date: addDays(today, -4) }]);
  t.is(await stateDrift(db), 0);
  t.deepEqual(await violations(db), []);
});

test('trip rows written into pages freed by DELETE + VACUUM reach the state and the claims by the next run', async (t) => {
  const db = await freshDb(t, 'order_reused_pages');
  const today = await businessToday(db);
  const leadDate = addDays(today, -20);
  const lead = await linkedLead(db, leadDate);
  // Other drivers' history fills pages; a cleanup deletes most of it; VACUUM frees the space.
  await db.query(`INSERT INTO public.summary_daily (driver_id, date_file, count_orders_completed, sum_work_time_seconds)
                  SELECT 'filler-' || g, to_char(current_date - 200, 'YYYY-MM-DD'), 1, 60 FROM generate_series(1, 20000) g`);
  await run(db);
  await db.query(`WITH d AS (DELETE FROM public.summary_daily WHERE driver_id LIKE 'filler-%' AND driver_id <> 'filler-20000' RETURNING 1)
                  SELECT count(*), pg_stat_force_next_flush() FROM d`);
  await run(db); // sees the deletes
  await db.query(`VACUUM public.summary_daily`);
  const [before] = await db.query<{ blocks: number }>(`SELECT (pg_relation_size('public.summary_daily') / 8192)::int AS blocks`);
  await addTrips(db, lead.driverId, tripsOnDays(leadDate, [0, 1, 2, 3, 4]));
  // The new rows went into the freed pages, not after the table's end.
  const [where] = await db.query<{ max_block: number }>(
    `SELECT max((ctid::text::point)[0])::int AS max_block FROM public.summary_daily WHERE driver_id = $1`, [lead.driverId]);
  t.true(where!.max_block < before!.blocks - 1, `rows in block ${where!.max_block}, table of ${before!.blocks} blocks`);
  const stats = await run(db);
  t.like(stats['claims']['lead_state']['trips'], { read: 'whole_table', whole_read_reason: 'inserts_elsewhere' });
  t.like(await limboRow(db, lead.key), { limbo_stage: 'OK', trips_14d: '5', has_claim_m1: true, has_claim_m5: true });
  t.deepEqual((await claimsOf(db, lead.key)).map((c) => c.milestone), [1, 5]);
  t.is(await stateDrift(db), 0);
  t.deepEqual(await violations(db), []);
});

test('a trip row updated in place (its count corrected) reaches the state and the claims by the next run', async (t) => {
  const db = await freshDb(t, 'order_trip_update');
  const today = await businessToday(db);
  const leadDate = addDays(today, -25); // window closed long ago, still in days_back
  const lead = await linkedLead(db, leadDate, { trips: [{ dateFile: dmy(addDays(leadDate, 3)), trips: 1 }] });
  await run(db);
  t.like(await limboRow(db, lead.key), { limbo_stage: 'OK', trips_14d: '1' });
  await db.query(`WITH u AS (UPDATE public.summary_daily SET count_orders_completed = 5 WHERE driver_id = $1 RETURNING 1)
                  SELECT count(*), pg_stat_force_next_flush() FROM u`, [lead.driverId]);
  const stats = await run(db);
  t.like(stats['claims']['lead_state']['trips'], { read: 'whole_table', whole_read_reason: 'rows_updated_or_deleted' });
  t.like(await limboRow(db, lead.key), { limbo_stage: 'OK', trips_14d: '5', has_claim_m5: true });
  t.is(await stateDrift(db), 0);
});

test('a trip row deleted upstream leaves the state by the next run; a claim already generated stays', async (t) => {
  const db = await freshDb(t, 'order_trip_delete');
  const today = await businessToday(db);
  const leadDate = addDays(today, -6);
  const lead = await linkedLead(db, leadDate, { trips: tripsOnDays(leadDate, [0, 1]) });
  await run(db);
  t.like(await limboRow(db, lead.key), { trips_14d: '2', has_claim_m1: true });
  await db.query(`WITH d AS (DELETE FROM public.summary_daily WHERE driver_id = $1 RETURNING 1)
                  SELECT count(*), pg_stat_force_next_flush() FROM d`, [lead.driverId]);
  const stats = await run(db);
  t.like(stats['claims']['lead_state']['trips'], { rows_may_be_gone: true });
  t.like(await limboRow(db, lead.key), { trips_14d: '0', reached_m1_14d: false, has_claim_m1: true });
  t.deepEqual((await claimsOf(db, lead.key)).map((c) => c.milestone), [1]);
  t.is(await stateDrift(db), 0);
});

test('a claim is decided on the lead\'s live trips: a stored state left stale by a deleted trip earns no claim', async (t) => {
  const db = await freshDb(t, 'order_claim_live');
  const today = await businessToday(db);
  const leadDate = addDays(today, -3);
  const lead = await linkedLead(db, leadDate, { trips: tripsOnDays(leadDate, [0]) });
  await run(db);
  // The M1 claim is deleted in psql (marked) and the trip row too, with its statistics not yet
  // published: the stored state still says 1 trip.
  await db.query(`DELETE FROM canon.claims_yango_cabinet_14d WHERE lead_source_pk = $1`, [lead.key]);
  await db.query(`DELETE FROM public.summary_daily WHERE driver_id = $1`, [lead.driverId]);
  await run(db);
  t.deepEqual(await claimsOf(db, lead.key), []);
  t.like(await limboRow(db, lead.key), { trips_14d: '0', limbo_stage: 'NO_TRIPS_14D' });
});

test('drivers: one updated in 2099 hides no later driver; one without timestamps is indexed; both are counted and listed', async (t) => {
  const db = await freshDb(t, 'order_drivers');
  const today = await businessToday(db);
  await addDriver(db, 'FUTURE', '51977000010', `, '2099-01-01', '2099-01-01'`);
  await addDriver(db, 'UNTIMED', '51977000011', `, NULL, NULL`);
  const first = await run(db);
  t.like(first['driver_index'], { drivers_with_future_timestamp: 1, drivers_without_timestamp: 1 });
  await addDriver(db, 'LATER', '51977000012', `, now(), now()`);
  await addDriver(db, 'LATER-NULL', '51977000013', `, NULL, NULL`);
  for (const [key, phone] of [['L-LATER', '977000012'], ['L-NULL', '977000013'], ['L-UNTIMED', '977000011']] as const) {
    await insertLead(db, { external_id: key, lead_created_at: addDays(today, -1), park_phone: phone });
  }
  const next = await run(db);
  t.like(next['driver_index'], { mode: 'incremental', drivers_with_future_timestamp: 1, drivers_without_timestamp: 2 });
  t.is(await linkedDriver(db, 'L-LATER'), 'LATER');
  t.is(await linkedDriver(db, 'L-NULL'), 'LATER-NULL');
  t.is(await linkedDriver(db, 'L-UNTIMED'), 'UNTIMED');
  const odd = await db.query<{ driver_id: string; why: string }>(`SELECT driver_id, why FROM ops.v_drivers_odd_timestamps ORDER BY 1`);
  t.deepEqual(odd.map((o) => `${o.driver_id} ${o.why}`), ['FUTURE FUTURE_TIMESTAMP', 'LATER-NULL NO_TIMESTAMP', 'UNTIMED NO_TIMESTAMP']);
  t.deepEqual(await violations(db), []);
});

test('the limbo view says what the tables say: a claim deleted or a link removed in psql shows at once', async (t) => {
  const db = await freshDb(t, 'order_view');
  const today = await businessToday(db);
  const leadDate = addDays(today, -4);
  const claimed = await linkedLead(db, leadDate, { trips: tripsOnDays(leadDate, [0]) });
  const linked = await linkedLead(db, leadDate);
  await run(db);
  t.like(await limboRow(db, claimed.key), { limbo_stage: 'OK', has_claim_m1: true });
  await db.query(`DELETE FROM canon.claims_yango_cabinet_14d WHERE lead_source_pk = $1`, [claimed.key]);
  t.like(await limboRow(db, claimed.key), { limbo_stage: 'TRIPS_NO_CLAIM', has_claim_m1: false });
  await db.query(`DELETE FROM canon.identity_links WHERE source_pk = $1`, [linked.key]);
  t.like(await limboRow(db, linked.key), { limbo_stage: 'NO_IDENTITY', person_key: null, driver_id: null });
  // The snapshot-free counts agree with the view at every moment.
  const [counts] = await db.query<{ view: number; live: number }>(
    `SELECT (SELECT count(*) FROM ops.v_cabinet_leads_limbo WHERE limbo_stage = 'TRIPS_NO_CLAIM')::int AS view,
            (SELECT sum(limbo_trips_no_claim) FROM ops.limbo_week_counts())::int AS live`);
  t.is(counts!.live, counts!.view);
  await run(db);
  t.like(await limboRow(db, claimed.key), { limbo_stage: 'OK', has_claim_m1: true });
  t.is(await stateDrift(db), 0);
  t.deepEqual(await violations(db), []);
});

test('a lead whose lead_created_at is infinity is undated: in no limbo row, counted, and the report query does not fail', async (t) => {
  const db = await freshDb(t, 'order_infinity');
  await insertLead(db, { external_id: uid('INF'), lead_created_at: 'infinity' });
  await insertLead(db, { external_id: uid('NINF'), lead_created_at: '-infinity' });
  const stats = await run(db);
  t.is(stats['match']['leads_without_lead_created_at'], 2);
  t.deepEqual(await db.query(`SELECT count(*)::int AS n FROM ops.v_cabinet_leads_limbo`), [{ n: 0 }]);
  t.deepEqual(await db.query(`SELECT count(*)::int AS n FROM ops.v_cabinet_14d_funnel_weekly`), [{ n: 0 }]);
  t.deepEqual(await violations(db), []);
});
