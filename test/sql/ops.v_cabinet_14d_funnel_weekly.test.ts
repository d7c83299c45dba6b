// The weekly funnel agrees with the limbo view, the expected claims and ops.limbo_stage_counts().
import test from 'ava';
import { freshDb, type TestDb } from '../helpers/db.js';
import { addDays, addTrips, businessToday, insertLead, tripsOnDays, uid } from '../helpers/rows.js';
import { generateClaims, linkedLead, linkPerson } from '../helpers/scenario.js';

const STAGES = ['NO_IDENTITY', 'NO_DRIVER', 'NO_TRIPS_14D', 'TRIPS_NO_CLAIM', 'OK'] as const;

/** One lead in every stage, over two weeks, plus a duplicated key and a paid claim. */
async function everyStage(db: TestDb): Promise<string> {
  const today = await businessToday(db);
  for (const back of [3, 10]) {
    const day = addDays(today, -back);
    await insertLead(db, { lead_created_at: day });
    const noDriver = await insertLead(db, { lead_created_at: day });
    await linkPerson(db, [noDriver.key]);
    await linkedLead(db, day);
    await linkedLead(db, day, { trips: tripsOnDays(day, [0, 1, 2, 3, 4]) });
    const ok = await linkedLead(db, day, { trips: tripsOnDays(day, [0]), lead: { external_id: uid('DUP') } });
    await insertLead(db, { external_id: ok.key, lead_created_at: day });
    await db.query(
      `INSERT INTO canon.claims_yango_cabinet_14d (lead_source_pk, milestone, lead_date, amount_expected, status, paid_at)
       VALUES ($1, 1, $2, 25, 'paid', now())`,
      [ok.key, day],
    );
  }
  const d = uid('D');
  await addTrips(db, d, [{ dateFile: '31-02-2026', trips: 1 }]);
  // Keyed, as by a run's step 5: a key's rows count as one key from then on (key_rows).
  await db.query(`SELECT canon.key_changed_leads(NULL)`);
  return today;
}

test('stage counts agree between the limbo view, the funnel and ops.limbo_stage_counts()', async (t) => {
  const db = await freshDb(t, 'funnel_agree');
  const today = await everyStage(db);
  for (const phase of ['before', 'after'] as const) {
    if (phase === 'after') await generateClaims(db, addDays(today, -30));
    const fromView = Object.fromEntries(STAGES.map((s) => [s, 0])) as Record<string, number>;
    for (const r of await db.query<{ limbo_stage: string; n: number }>(
      `SELECT limbo_stage, count(*)::int AS n FROM ops.v_cabinet_leads_limbo GROUP BY 1`,
    )) fromView[r.limbo_stage] = r.n;
    const [counts] = await db.query<{ c: Record<string, number> }>(`SELECT ops.limbo_stage_counts() AS c`);
    t.deepEqual(counts!.c, fromView, phase);
    const [f] = await db.query<Record<string, number>>(
      `SELECT sum(limbo_no_identity)::int AS "NO_IDENTITY", sum(limbo_no_driver)::int AS "NO_DRIVER",
              sum(limbo_no_trips_14d)::int AS "NO_TRIPS_14D", sum(limbo_trips_no_claim)::int AS "TRIPS_NO_CLAIM",
              sum(limbo_ok)::int AS "OK"
       FROM ops.v_cabinet_14d_funnel_weekly`,
    );
    t.deepEqual(f, fromView, phase);
  }
});

test('per week: stages add up to leads, and claims expected = present + missing, amounts too', async (t) => {
  const db = await freshDb(t, 'funnel_weeks');
  const today = await everyStage(db);
  const weeks = await db.query<Record<string, string | number>>(`SELECT * FROM ops.v_cabinet_14d_funnel_weekly ORDER BY week_start`);
  const limbo = await db.query<{ week_start: string; n: number; identity: number; driver: number; trips: number; m1: number; m5: number }>(
    `SELECT week_start, count(*)::int AS n, count(person_key)::int AS identity, count(driver_id)::int AS driver,
            count(*) FILTER (WHERE trips_14d > 0)::int AS trips,
            count(*) FILTER (WHERE reached_m1_14d)::int AS m1, count(*) FILTER (WHERE reached_m5_14d)::int AS m5
     FROM ops.v_cabinet_leads_limbo GROUP BY 1 ORDER BY 1`,
  );
  t.deepEqual(
    weeks.map((w) => w.week_start),
    limbo.map((l) => l.week_start),
  );
  for (const [i, w] of weeks.entries()) {
    const l = limbo[i]!;
    t.like(w, {
      leads: String(l.n),
      leads_with_identity: String(l.identity),
      leads_with_driver: String(l.driver),
      leads_with_trips_14d: String(l.trips),
      reached_m1_14d: String(l.m1),
      reached_m5_14d: String(l.m5),
    });
    const stages = ['limbo_no_identity', 'limbo_no_driver', 'limbo_no_trips_14d', 'limbo_trips_no_claim', 'limbo_ok'];
    t.is(stages.reduce((s, k) => s + Number(w[k]), 0), l.n);
    t.is(Number(w.claims_expected), Number(w.claims_present) + Number(w.claims_missing));
    t.is(Number(w.claims_expected_amount), Number(w.claims_present_amount) + Number(w.claims_missing_amount));
  }
  // Each week of everyStage: 6 lead rows, 5 with identity, 4 with driver, 3 with trips;
  // claims expected: M1 + M5 of the TRIPS_NO_CLAIM lead and M1 of the OK lead (one key, two rows).
  t.like(weeks.at(-1), {
    leads: '6',
    leads_with_identity: '5',
    leads_with_driver: '4',
    leads_with_trips_14d: '3',
    claims_expected: '3',
    claims_expected_amount: '85.00',
    claims_present: '1',
    claims_present_amount: '25.00',
    claims_missing: '2',
    claims_missing_amount: '60.00',
    claims_paid: '1',
    limbo_no_identity: '1',
    limbo_no_driver: '1',
    limbo_no_trips_14d: '1',
    limbo_trips_no_claim: '1',
    limbo_ok: '2',
    pct_with_identity: '83.33',
  });
  await generateClaims(db, addDays(today, -30));
  const [after] = await db.query(`SELECT claims_missing, claims_present, limbo_trips_no_claim FROM ops.v_cabinet_14d_funnel_weekly ORDER BY week_start DESC LIMIT 1`);
  t.deepEqual(after, { claims_missing: '0', claims_present: '3', limbo_trips_no_claim: '0' });
});
