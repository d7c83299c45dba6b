// canon.insert_missing_claims (step 7c): the missing claims of the scope's leads the stored
// state shows in TRIPS_NO_CLAIM, decided on their live chain, inserted as 'generated' at the
// rule's amounts; an existing claim of any status is never changed.
import test from 'ava';
import { insertClaims } from '../helpers/claims.js';
import { type TestDb, withDb } from '../helpers/db.js';
import { addDays, businessToday, tripsOnDays } from '../helpers/rows.js';
import { claimsOf, linkedLead } from '../helpers/scenario.js';
import { step, storeLeadState } from '../helpers/steps.js';

interface Stats {
  claims_generated: number;
  claims_generated_amount: number;
  claims_generated_by_milestone: Record<'M1' | 'M5' | 'M25', { count: number; amount: number }>;
  claimed_keys: string[];
}

const insertMissing = async (db: TestDb) => step<Stats>(db.pool, 'canon.insert_missing_claims(NULL, canon.business_today() - 30)');

test('a lead of the scope in TRIPS_NO_CLAIM gets its missing claims, generated at the rule\'s amounts, without marking its key', (t) =>
  withDb('missing_claims', async (db) => {
    const leadDate = addDays(await businessToday(db), -5);
    const lead = await linkedLead(db, leadDate, { trips: tripsOnDays(leadDate, [0, 1, 2, 3, 4]) });
    await storeLeadState(db);
    t.deepEqual(await insertMissing(db), {
      claims_generated: 2, claims_generated_amount: 60,
      claims_generated_by_milestone: { M1: { count: 1, amount: 25 }, M5: { count: 1, amount: 35 }, M25: { count: 0, amount: 0 } },
      claimed_keys: [lead.key],
    });
    t.deepEqual(await claimsOf(db, lead.key), [
      { milestone: 1, status: 'generated', amount_expected: '25.00', lead_date: leadDate, driver_id: lead.driverId },
      { milestone: 5, status: 'generated', amount_expected: '35.00', lead_date: leadDate, driver_id: lead.driverId },
    ]);
    t.deepEqual(await db.query(`SELECT lead_source_pk FROM canon_internal.cabinet_lead_state_dirty`), [], 'its own claims mark nothing');
  }));

test('an existing claim is kept whatever its status: only the missing milestone is inserted, and a second call inserts nothing', (t) =>
  withDb('missing_claims', async (db) => {
    const leadDate = addDays(await businessToday(db), -2);
    const lead = await linkedLead(db, leadDate, { trips: tripsOnDays(leadDate, [0, 1, 2, 3, 4]) });
    await insertClaims(db, lead.key, lead.personKey, lead.driverId, [{ milestone: 1, status: 'rejected' }]);
    await storeLeadState(db);
    t.like(await insertMissing(db), { claims_generated: 1, claims_generated_by_milestone: { M1: { count: 0 }, M5: { count: 1 } } });
    t.deepEqual((await claimsOf(db, lead.key)).map((c) => [c.milestone, c.status]), [[1, 'rejected'], [5, 'generated']]);
    t.deepEqual(await insertMissing(db), {
      claims_generated: 0, claims_generated_amount: 0,
      claims_generated_by_milestone: { M1: { count: 0, amount: 0 }, M5: { count: 0, amount: 0 }, M25: { count: 0, amount: 0 } },
      claimed_keys: [],
    });
  }));

test('no claim for a lead before the scope, nor for one whose trip rows were deleted since its state was stored', (t) =>
  withDb('missing_claims', async (db) => {
    const today = await businessToday(db);
    const old = await linkedLead(db, addDays(today, -40), { trips: tripsOnDays(addDays(today, -40), [0]) });
    const deleted = await linkedLead(db, addDays(today, -3), { trips: tripsOnDays(addDays(today, -3), [0]) });
    await storeLeadState(db);
    await db.query(`DELETE FROM public.summary_daily WHERE driver_id = $1`, [deleted.driverId]);
    t.like(await insertMissing(db), { claims_generated: 0, claimed_keys: [] });
    t.deepEqual(await claimsOf(db, old.key), []);
    t.deepEqual(await claimsOf(db, deleted.key), []);
  }));

test('two lead rows of one key get one set of claims, dated from the earliest row that reached the milestone', (t) =>
  withDb('missing_claims', async (db) => {
    const today = await businessToday(db);
    const first = await linkedLead(db, addDays(today, -6), { lead: { external_id: 'TWICE' }, trips: tripsOnDays(addDays(today, -6), [0, 1, 2, 3, 4, 5, 6]) });
    // the second row of the key, linked through the same key
    await db.query(`INSERT INTO public.module_ct_cabinet_leads (external_id, lead_created_at, first_name, last_name) VALUES ('TWICE', $1::date + time '09:00', 'Juan', 'Perez')`, [addDays(today, -4)]);
    await storeLeadState(db);
    t.like(await insertMissing(db), { claims_generated: 2, claimed_keys: ['TWICE'] });
    t.deepEqual((await claimsOf(db, 'TWICE')).map((c) => [c.milestone, c.lead_date]), [[1, first.leadDate], [5, first.leadDate]]);
  }));
