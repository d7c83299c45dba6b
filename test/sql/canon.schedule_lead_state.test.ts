// canon.schedule_lead_state (step 7a): the lead rows whose stored state is to be evaluated
// again, each with the first reason that put it there, in pg_temp.lead_state_todo: marks,
// trip rows written or gone, the daily sweep, a change of the claim rules, only-limbo.
import test from 'ava';
import { type TestDb, withDb } from '../helpers/db.js';
import { addDays, addTrips, businessToday, insertLead, tripsOnDays } from '../helpers/rows.js';
import { generateClaims, linkedLead, linkPerson } from '../helpers/scenario.js';
import { inTransaction, step } from '../helpers/steps.js';

interface Stats {
  trips: { read: string; whole_read_reason: string | null; rows_may_be_gone: boolean; drivers: number };
  reasons: Record<string, number>;
}

/** One schedule (scope: the last 30 days) and its to-do list, lead_id -> reason. */
async function schedule(db: TestDb, opts: { sweep?: boolean; onlyLimbo?: boolean } = {}): Promise<{ stats: Stats; todo: Record<number, string> }> {
  return inTransaction(db, async (c) => {
    const stats = await step<Stats>(c, 'canon.schedule_lead_state(NULL, canon.business_today() - 30, $1, $2)', [opts.onlyLimbo ?? false, opts.sweep ?? false]);
    const rows = (await c.query<{ lead_id: number; reason: string }>(`SELECT lead_id, reason FROM pg_temp.lead_state_todo`)).rows;
    return { stats, todo: Object.fromEntries(rows.map((r) => [r.lead_id, r.reason])) };
  });
}

/** Step 7 run once by hand (a sweep): every lead stored, every mark cleared, trips looked at. */
const settle = async (db: TestDb) => generateClaims(db, addDays(await businessToday(db), -30));

test('after a run, with nothing new, an incremental schedule has nothing to do', (t) =>
  withDb('schedule_state', async (db) => {
    const today = await businessToday(db);
    await linkedLead(db, addDays(today, -3), { trips: tripsOnDays(addDays(today, -3), [0]) });
    await insertLead(db);
    await settle(db);
    const idle = await schedule(db);
    t.like(idle.stats, { trips: { read: 'appended_pages', rows_may_be_gone: false, drivers: 0 }, reasons: {} });
    t.deepEqual(idle.todo, {});
  }));

test('the first look at the trip rows schedules every stored lead with a driver, trip_rows_gone', (t) =>
  withDb('schedule_state', async (db) => {
    const today = await businessToday(db);
    const withDriver = await linkedLead(db, addDays(today, -3), { trips: tripsOnDays(addDays(today, -3), [0]) });
    const without = await insertLead(db);
    await db.query(`SELECT canon.refresh_lead_state(NULL, $1::integer[])`, [[withDriver.id, without.id]]);
    await db.query(`DELETE FROM canon_internal.cabinet_lead_state_dirty`);
    const first = await schedule(db);
    t.like(first.stats, { trips: { read: 'none', whole_read_reason: 'first_read', rows_may_be_gone: true }, reasons: { trip_rows_gone: 1 } });
    t.deepEqual(first.todo, { [withDriver.id]: 'trip_rows_gone' });
  }));

test('a lead row marked since is scheduled, and new trip rows schedule their driver\'s leads even before the scope; the marks stay for the caller to clear', (t) =>
  withDb('schedule_state', async (db) => {
    const today = await businessToday(db);
    await linkedLead(db, addDays(today, -3));
    const old = await linkedLead(db, addDays(today, -60));
    await settle(db);
    const added = await insertLead(db);
    await db.query(`SELECT canon.key_changed_leads(NULL)`);
    await addTrips(db, old.driverId, tripsOnDays(old.leadDate, [1]));
    const s = await schedule(db);
    t.like(s.stats, { trips: { read: 'appended_pages', drivers: 1 } });
    t.deepEqual(s.stats.reasons, { lead_or_links_or_claims_changed: 1, trips_written: 1 });
    t.deepEqual(s.todo, { [added.id]: 'lead_or_links_or_claims_changed', [old.id]: 'trips_written' });
    t.deepEqual(await db.query(`SELECT lead_id FROM canon_internal.cabinet_lead_state_pending`), [{ lead_id: added.id }]);
  }));

test('a sweep schedules every lead of the scope, and lead rows of any date never evaluated or gone; every stored lead after a change of the claim rules', (t) =>
  withDb('schedule_state', async (db) => {
    const today = await businessToday(db);
    const inScope = await insertLead(db);
    const gone = await insertLead(db);
    const old = await insertLead(db, { lead_created_at: addDays(today, -60) });
    await settle(db);
    const newOld = await insertLead(db, { lead_created_at: addDays(today, -60) }); // not keyed: no mark
    await db.query(`DELETE FROM public.module_ct_cabinet_leads WHERE id = $1`, [gone.id]);
    const sweep = await schedule(db, { sweep: true });
    t.deepEqual(sweep.stats.reasons, { sweep_scope: 1, sweep_membership: 2 });
    t.deepEqual(sweep.todo, { [inScope.id]: 'sweep_scope', [gone.id]: 'sweep_membership', [newOld.id]: 'sweep_membership' });

    await db.query(`UPDATE canon_internal.cabinet_lead_state_meta SET full_refresh_needed = true`);
    t.deepEqual((await schedule(db)).todo, {}, 'the rules change waits for a sweep');
    const rules = await schedule(db, { sweep: true });
    t.deepEqual(rules.stats.reasons, { sweep_scope: 1, sweep_membership: 2, claim_rules_changed: 1 });
    t.is(rules.todo[old.id], 'claim_rules_changed');
  }));

test('with p_only_limbo the scope\'s NO_DRIVER leads are scheduled, not those before the scope', (t) =>
  withDb('schedule_state', async (db) => {
    const today = await businessToday(db);
    const noDriver = await insertLead(db);
    const oldNoDriver = await insertLead(db, { lead_created_at: addDays(today, -60) });
    await insertLead(db); // NO_IDENTITY
    await linkPerson(db, [noDriver.key]);
    await linkPerson(db, [oldNoDriver.key]);
    await settle(db);
    const limbo = await schedule(db, { onlyLimbo: true });
    t.deepEqual(limbo.stats.reasons, { only_limbo: 1 });
    t.deepEqual(limbo.todo, { [noDriver.id]: 'only_limbo' });
  }));
