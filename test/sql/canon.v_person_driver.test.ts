// One driver per person, the same in every view and in the claims (predecessor defect 10).
import test from 'ava';
import { freshDb } from '../helpers/db.js';
import { addDays, addTrips, businessToday, insertLead, tripsOnDays, uid } from '../helpers/rows.js';
import { addDriverLink, claimsOf, generateClaims, limboRow, linkPerson } from '../helpers/scenario.js';

test('picks the most recently linked driver, then the smallest driver_id on a tie', async (t) => {
  const db = await freshDb(t, 'person_driver');
  const lead = await insertLead(db, { lead_created_at: addDays(await businessToday(db), -2) });
  const personKey = await linkPerson(db, [lead.key], [
    { driverId: 'drv-old', linkedAt: '2026-01-01 10:00+00' },
    { driverId: 'drv-new', linkedAt: '2026-02-01 10:00+00' },
  ]);
  t.deepEqual(await db.query(`SELECT driver_id FROM canon.v_person_driver WHERE person_key = $1`, [personKey]), [{ driver_id: 'drv-new' }]);
  await addDriverLink(db, personKey, { driverId: 'drv-b', linkedAt: '2026-03-01 10:00+00' });
  await addDriverLink(db, personKey, { driverId: 'drv-a', linkedAt: '2026-03-01 10:00+00' });
  t.deepEqual(await db.query(`SELECT driver_id FROM canon.v_person_driver WHERE person_key = $1`, [personKey]), [{ driver_id: 'drv-a' }]);
  const [n] = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM canon.v_person_driver`);
  t.is(n!.n, 1);
});

test('every view and the claims take the same driver for a person with two drivers', async (t) => {
  const db = await freshDb(t, 'person_driver_views');
  const today = await businessToday(db);
  const leadDate = addDays(today, -20);
  const lead = await insertLead(db, { lead_created_at: leadDate });
  const older = uid('D');
  const newer = uid('D');
  await linkPerson(db, [lead.key], [
    { driverId: older, linkedAt: '2026-01-01 10:00+00' },
    { driverId: newer, linkedAt: '2026-01-02 10:00+00' },
  ]);
  // The older driver has the trips of 5 days, the newer one of 1: only the newer counts.
  await addTrips(db, older, tripsOnDays(leadDate, [0, 1, 2, 3, 4]));
  await addTrips(db, newer, tripsOnDays(leadDate, [0]));
  t.like(await limboRow(db, lead.key), { driver_id: newer, trips_14d: '1', limbo_stage: 'TRIPS_NO_CLAIM' });
  const expected = await db.query(`SELECT DISTINCT driver_id, trips_14d::int FROM ops.v_cabinet_claims_expected_14d WHERE lead_source_pk = $1`, [lead.key]);
  t.deepEqual(expected, [{ driver_id: newer, trips_14d: 1 }]);
  const gap = await db.query(`SELECT driver_id, milestone FROM ops.v_cabinet_claims_gap_14d WHERE lead_source_pk = $1`, [lead.key]);
  t.deepEqual(gap, [{ driver_id: newer, milestone: 1 }]);
  await generateClaims(db, addDays(today, -30));
  t.deepEqual((await claimsOf(db, lead.key)).map((c) => [c.milestone, c.driver_id]), [[1, newer]]);
});
