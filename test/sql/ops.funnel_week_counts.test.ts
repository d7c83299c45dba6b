// The weekly funnel (ops.v_cabinet_14d_funnel_weekly, counted by ops.funnel_week_counts from
// the stored state's counters) equals, column for column, the aggregates of the views it
// summarises (ops.v_cabinet_leads_limbo per lead row, ops.v_cabinet_claims_expected_14d per
// key and milestone, FROM_VIEWS below: the funnel's definition before the counters), at
// every moment: after a run, and while claims, links and lead rows change behind the stored
// state's back (paid in psql, deleted, inserted, unlinked, re-dated, re-keyed, committed
// under a low id, a second row of a key, a lead row deleted, a claim rule changed).
import test from 'ava';
import { freshDb, type TestDb } from '../helpers/db.js';
import { runPipeline } from '../helpers/pipeline.js';
import { addDays, businessToday, insertLead, tripsOnDays, uid } from '../helpers/rows.js';
import { linkedLead, linkPerson } from '../helpers/scenario.js';
import { seedDemo, violations } from '../reliability/support.js';

/** The funnel as a pass over the two views computes it. */
const FROM_VIEWS = `
  WITH leads AS (
    SELECT l.week_start,
           count(*) AS leads,
           count(*) FILTER (WHERE l.person_key IS NOT NULL) AS leads_with_identity,
           count(*) FILTER (WHERE l.driver_id IS NOT NULL) AS leads_with_driver,
           count(*) FILTER (WHERE l.trips_14d > 0) AS leads_with_trips_14d,
           count(*) FILTER (WHERE l.window_status = 'OPEN') AS leads_window_open,
           count(*) FILTER (WHERE l.reached_m1_14d) AS reached_m1_14d,
           count(*) FILTER (WHERE l.reached_m5_14d) AS reached_m5_14d,
           count(*) FILTER (WHERE l.reached_m25_14d) AS reached_m25_14d,
           coalesce(sum(l.trips_14d), 0) AS trips_14d,
           count(*) FILTER (WHERE l.limbo_stage = 'NO_IDENTITY') AS limbo_no_identity,
           count(*) FILTER (WHERE l.limbo_stage = 'NO_DRIVER') AS limbo_no_driver,
           count(*) FILTER (WHERE l.limbo_stage = 'NO_TRIPS_14D') AS limbo_no_trips_14d,
           count(*) FILTER (WHERE l.limbo_stage = 'TRIPS_NO_CLAIM') AS limbo_trips_no_claim,
           count(*) FILTER (WHERE l.limbo_stage = 'OK') AS limbo_ok
    FROM ops.v_cabinet_leads_limbo l
    GROUP BY l.week_start
  ),
  claims AS (
    SELECT e.week_start,
           count(*) FILTER (WHERE e.expected) AS claims_expected,
           coalesce(sum(e.amount) FILTER (WHERE e.expected), 0) AS claims_expected_amount,
           count(*) FILTER (WHERE e.expected AND e.claim_status IS NOT NULL) AS claims_present,
           coalesce(sum(e.amount) FILTER (WHERE e.expected AND e.claim_status IS NOT NULL), 0) AS claims_present_amount,
           count(*) FILTER (WHERE e.expected AND e.claim_status IS NULL) AS claims_missing,
           coalesce(sum(e.amount) FILTER (WHERE e.expected AND e.claim_status IS NULL), 0) AS claims_missing_amount,
           count(*) FILTER (WHERE e.claim_status = 'paid') AS claims_paid,
           coalesce(sum(e.claim_amount) FILTER (WHERE e.claim_status = 'paid'), 0) AS claims_paid_amount
    FROM ops.v_cabinet_claims_expected_14d e
    GROUP BY e.week_start
  )
  SELECT w.week_start,
         coalesce(l.leads, 0) AS leads, coalesce(l.leads_with_identity, 0) AS leads_with_identity,
         coalesce(l.leads_with_driver, 0) AS leads_with_driver, coalesce(l.leads_with_trips_14d, 0) AS leads_with_trips_14d,
         coalesce(l.leads_window_open, 0) AS leads_window_open, coalesce(l.reached_m1_14d, 0) AS reached_m1_14d,
         coalesce(l.reached_m5_14d, 0) AS reached_m5_14d, coalesce(l.reached_m25_14d, 0) AS reached_m25_14d,
         coalesce(l.trips_14d, 0) AS trips_14d,
         coalesce(c.claims_expected, 0) AS claims_expected, coalesce(c.claims_expected_amount, 0) AS claims_expected_amount,
         coalesce(c.claims_present, 0) AS claims_present, coalesce(c.claims_present_amount, 0) AS claims_present_amount,
         coalesce(c.claims_missing, 0) AS claims_missing, coalesce(c.claims_missing_amount, 0) AS claims_missing_amount,
         coalesce(c.claims_paid, 0) AS claims_paid, coalesce(c.claims_paid_amount, 0) AS claims_paid_amount,
         coalesce(l.limbo_no_identity, 0) AS limbo_no_identity, coalesce(l.limbo_no_driver, 0) AS limbo_no_driver,
         coalesce(l.limbo_no_trips_14d, 0) AS limbo_no_trips_14d, coalesce(l.limbo_trips_no_claim, 0) AS limbo_trips_no_claim,
         coalesce(l.limbo_ok, 0) AS limbo_ok,
         round(100.0 * l.leads_with_identity / nullif(l.leads, 0), 2) AS pct_with_identity,
         round(100.0 * l.leads_with_driver / nullif(l.leads, 0), 2) AS pct_with_driver,
         round(100.0 * l.leads_with_trips_14d / nullif(l.leads, 0), 2) AS pct_with_trips_14d,
         round(100.0 * l.limbo_ok / nullif(l.leads, 0), 2) AS pct_ok,
         round(100.0 * c.claims_present / nullif(c.claims_expected, 0), 2) AS pct_claims_present
  FROM (SELECT week_start FROM leads UNION SELECT week_start FROM claims) w
  LEFT JOIN leads l ON l.week_start = w.week_start
  LEFT JOIN claims c ON c.week_start = w.week_start`;

/** The funnel and the views agree, every column as text (amounts with their scale). */
async function agrees(t: { deepEqual(a: unknown, b: unknown, m?: string): void }, db: TestDb, moment: string): Promise<void> {
  const funnel = await db.query(`SELECT * FROM ops.v_cabinet_14d_funnel_weekly ORDER BY week_start`);
  const views = await db.query(`${FROM_VIEWS} ORDER BY week_start`);
  t.deepEqual(funnel, views, moment);
}

/** How many lead rows the funnel counts apart from the counters (0 right after a run). */
async function apart(db: TestDb): Promise<number> {
  const [r] = await db.query<{ n: number }>(`SELECT cardinality(canon.lead_ids_maybe_not_current(true)) AS n`);
  return r!.n;
}

async function run(db: TestDb): Promise<void> {
  const r = await runPipeline(db, 'p_days_back => 40, p_limit => 5000');
  if (r.status !== 'COMPLETED') throw new Error(`run ${r.id} ${r.status}: ${r.error_message}`);
}

test('the funnel equals the views after a run and while claims, links and lead rows change behind the stored state', async (t) => {
  const db = await freshDb(t, 'funnel_counts');
  const today = await businessToday(db);
  await seedDemo(db, { seed: 17, leads: 300, drivers: 600, tripDays: 30 });
  // Beside the demo: a lead past M5 in each of three weeks, and a key held by two dated
  // rows (its claims count once).
  const m5 = [];
  for (const back of [4, 11, 18]) {
    m5.push(await linkedLead(db, addDays(today, -back), { trips: tripsOnDays(addDays(today, -back), [0, 1, 2], 2) }));
  }
  const shared = await linkedLead(db, addDays(today, -9), { trips: tripsOnDays(addDays(today, -9), [0]) });
  await insertLead(db, { external_id: shared.key, lead_created_at: addDays(today, -8) });
  await run(db);
  t.is(await apart(db), 0, 'right after a run every lead is counted from the counters');
  await agrees(t, db, 'after a run');
  const [counts] = await db.query<{ claims: number; shared: number }>(`
    SELECT (SELECT count(*)::int FROM canon.claims_yango_cabinet_14d) AS claims,
           (SELECT count(*)::int FROM canon_internal.cabinet_lead_state WHERE key_rows > 1) AS shared`);
  t.true(counts!.claims > 10, 'the run generated claims');
  t.true(counts!.shared >= 2, 'a key is shared by two stored rows');

  // Finance pays claims in psql (a status change marks nothing): counted as paid at once.
  await db.query(`UPDATE canon.claims_yango_cabinet_14d SET status = 'paid', paid_at = now()
                  WHERE (lead_source_pk, milestone) IN (SELECT lead_source_pk, milestone FROM canon.claims_yango_cabinet_14d
                                                        ORDER BY lead_source_pk, milestone LIMIT 12)
                     OR lead_source_pk = $1`, [shared.key]);
  t.is(await apart(db), 0);
  await agrees(t, db, 'claims paid in psql');

  // A claim deleted and one inserted by hand, a lead unlinked: their keys are dirty.
  await db.query(`DELETE FROM canon.claims_yango_cabinet_14d WHERE lead_source_pk = $1 AND milestone = 5`, [m5[0]!.key]);
  await db.query(`INSERT INTO canon.claims_yango_cabinet_14d (lead_source_pk, milestone, lead_date, amount_expected, status)
                  SELECT lead_source_pk, 1, lead_date, 25, 'generated' FROM canon_internal.cabinet_lead_state
                  WHERE limbo_stage = 'NO_TRIPS_14D' ORDER BY lead_id LIMIT 1`);
  await db.query(`DELETE FROM canon.identity_links WHERE source_table = 'module_ct_cabinet_leads' AND source_pk = $1`, [m5[1]!.key]);
  await agrees(t, db, 'a claim deleted, a claim inserted, a lead unlinked in psql');

  // Lead rows changed upstream: one with a paid claim re-dated into another week, one re-keyed.
  await db.query(`UPDATE public.module_ct_cabinet_leads SET lead_created_at = lead_created_at - interval '7 days' WHERE id = $1`, [m5[2]!.id]);
  await db.query(`UPDATE public.module_ct_cabinet_leads SET external_id = $2 WHERE id = $1`, [m5[0]!.id, uid('REKEYED')]);
  t.true((await apart(db)) >= 2);
  await agrees(t, db, 'lead rows re-dated and re-keyed in place');

  // A lead committed under a low id by a writer held open across a run, and a second row
  // of a claimed key committed after the run (not keyed yet: shown as a key of its own).
  const writer = await db.connect();
  await writer.query('BEGIN');
  await writer.query(`INSERT INTO public.module_ct_cabinet_leads (external_id, lead_created_at, first_name, last_name, park_phone)
                      VALUES ($1, $2::date + time '09:00', 'Ana', 'Lopez', '977123123')`, [uid('LATE'), addDays(today, -3)]);
  await insertLead(db, { lead_created_at: addDays(today, -3) });
  await run(db);
  await writer.query('COMMIT');
  await writer.end();
  await insertLead(db, { external_id: m5[1]!.key, lead_created_at: addDays(today, -10) });
  await agrees(t, db, 'a lead committed out of order and a second row of a key, after the run');
  await run(db);
  t.is(await apart(db), 0);
  await agrees(t, db, 'after the next run');

  // A lead row deleted (the counters no longer add up: every row counted apart), then a claim rule changed.
  await db.query(`DELETE FROM public.module_ct_cabinet_leads WHERE id = $1`, [shared.id]);
  await agrees(t, db, 'a lead row deleted');
  await db.query(`UPDATE canon.claim_rules SET amount = 40 WHERE milestone = 5`);
  await agrees(t, db, 'a claim rule changed');
  await run(db);
  await agrees(t, db, 'after the last run');
  t.deepEqual(await violations(db), []);
});

test('a reader sees the same funnel as the owner', async (t) => {
  const db = await freshDb(t, 'funnel_reader');
  const today = await businessToday(db);
  await linkedLead(db, addDays(today, -4), { trips: tripsOnDays(addDays(today, -4), [0]) });
  await linkPerson(db, [(await insertLead(db, { lead_created_at: addDays(today, -4) })).key]);
  await run(db);
  const owner = await db.query(`SELECT * FROM ops.v_cabinet_14d_funnel_weekly ORDER BY week_start`);
  const c = await db.connect();
  try {
    await c.query('BEGIN');
    await c.query('SET LOCAL ROLE cabinet_leads_reader');
    const reader = (await c.query(`SELECT * FROM ops.v_cabinet_14d_funnel_weekly ORDER BY week_start`)).rows;
    await c.query('ROLLBACK');
    t.deepEqual(reader, owner);
    t.is(reader.length, 1);
  } finally {
    await c.end();
  }
});
