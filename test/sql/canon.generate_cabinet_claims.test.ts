// Step 7: claims generated per lead key and milestone, from the rules, never overwriting.
import test from 'ava';
import { freshDb } from '../helpers/db.js';
import { addDays, addTrips, businessToday, dmy, insertLead, tripsOnDays, uid } from '../helpers/rows.js';
import { claimsOf, generateClaims, linkedLead, linkPerson } from '../helpers/scenario.js';

test('generates M1 and M5 as generated, with the rule amounts, for 5 trips in the window', async (t) => {
  const db = await freshDb(t, 'claims_basic');
  const today = await businessToday(db);
  const lead = await linkedLead(db, addDays(today, -30), { trips: tripsOnDays(addDays(today, -30), [0, 1, 2, 3, 4]) });
  const stats = await generateClaims(db, addDays(today, -30));
  t.deepEqual(await claimsOf(db, lead.key), [
    { milestone: 1, status: 'generated', amount_expected: '25.00', lead_date: lead.leadDate, driver_id: lead.driverId },
    { milestone: 5, status: 'generated', amount_expected: '35.00', lead_date: lead.leadDate, driver_id: lead.driverId },
  ]);
  t.like(stats, {
    leads_in_scope: 1,
    leads_with_driver: 1,
    trip_rows_read: 5,
    claims_generated: 2,
    claims_generated_amount: 60,
    claims_generated_by_milestone: { M1: { count: 1, amount: 25 }, M5: { count: 1, amount: 35 }, M25: { count: 0, amount: 0 } },
  });
  t.false('implemented' in stats);
  const [meta] = await db.query<{ run_id: string | null; generated: boolean; person_ok: boolean }>(
    `SELECT run_id, generated_at IS NOT NULL AS generated, person_key = $2 AS person_ok
     FROM canon.claims_yango_cabinet_14d WHERE lead_source_pk = $1 AND milestone = 1`,
    [lead.key, lead.personKey],
  );
  t.deepEqual(meta, { run_id: null, generated: true, person_ok: true });
});

test('reaching 25 trips gives the three cumulative claims (S/ 160)', async (t) => {
  const db = await freshDb(t, 'claims_m25');
  const today = await businessToday(db);
  const lead = await linkedLead(db, addDays(today, -20), { trips: tripsOnDays(addDays(today, -20), [0, 1, 2, 3, 4], 5) });
  const stats = await generateClaims(db, addDays(today, -30));
  t.deepEqual((await claimsOf(db, lead.key)).map((c) => [c.milestone, c.amount_expected]), [[1, '25.00'], [5, '35.00'], [25, '100.00']]);
  t.is(stats.claims_generated_amount, 160);
});

test('a trip on day 13 counts and a trip on day 14 does not (half-open window)', async (t) => {
  const db = await freshDb(t, 'claims_window');
  const today = await businessToday(db);
  const leadDate = addDays(today, -40);
  const day13 = await linkedLead(db, leadDate, { trips: [...tripsOnDays(leadDate, [0, 1, 2, 3]), { dateFile: dmy(addDays(leadDate, 13)), trips: 1 }] });
  const day14 = await linkedLead(db, leadDate, { trips: [...tripsOnDays(leadDate, [0, 1, 2, 3]), { dateFile: addDays(leadDate, 14), trips: 1 }] });
  const dayBefore = await linkedLead(db, leadDate, { trips: [{ dateFile: addDays(leadDate, -1), trips: 9 }] });
  await generateClaims(db, addDays(today, -60));
  t.deepEqual((await claimsOf(db, day13.key)).map((c) => c.milestone), [1, 5]);
  t.deepEqual((await claimsOf(db, day14.key)).map((c) => c.milestone), [1]);
  t.deepEqual(await claimsOf(db, dayBefore.key), []);
});

test('rows of one day in both formats are summed', async (t) => {
  const db = await freshDb(t, 'claims_formats');
  const today = await businessToday(db);
  const leadDate = addDays(today, -20);
  const lead = await linkedLead(db, leadDate, {
    trips: [
      { dateFile: addDays(leadDate, 2), trips: 3 },
      { dateFile: dmy(addDays(leadDate, 2)), trips: 2 },
    ],
  });
  await generateClaims(db, addDays(today, -30));
  t.deepEqual((await claimsOf(db, lead.key)).map((c) => c.milestone), [1, 5]);
});

test('a second call inserts nothing and changes no row', async (t) => {
  const db = await freshDb(t, 'claims_idempotent');
  const today = await businessToday(db);
  const lead = await linkedLead(db, addDays(today, -20), { trips: tripsOnDays(addDays(today, -20), [0, 1, 2, 3, 4]) });
  await generateClaims(db, addDays(today, -30));
  const before = await db.query(`SELECT *, xmin::text AS version FROM canon.claims_yango_cabinet_14d ORDER BY 1, 2`);
  const stats = await generateClaims(db, addDays(today, -30));
  t.is(stats.claims_generated, 0);
  t.is(stats.claims_already_present, 2);
  t.deepEqual(await db.query(`SELECT *, xmin::text AS version FROM canon.claims_yango_cabinet_14d ORDER BY 1, 2`), before, lead.key);
});

test('a paid or rejected claim is never touched (status and amount unchanged)', async (t) => {
  const db = await freshDb(t, 'claims_paid');
  const today = await businessToday(db);
  const lead = await linkedLead(db, addDays(today, -20), { trips: tripsOnDays(addDays(today, -20), [0, 1, 2, 3, 4]) });
  await db.query(
    `INSERT INTO canon.claims_yango_cabinet_14d (lead_source_pk, milestone, lead_date, amount_expected, status, paid_at)
     VALUES ($1, 1, $2, 20, 'paid', now() - interval '1 day'), ($1, 5, $2, 35, 'rejected', NULL)`,
    [lead.key, lead.leadDate],
  );
  const stats = await generateClaims(db, addDays(today, -30));
  t.deepEqual((await claimsOf(db, lead.key)).map((c) => [c.milestone, c.status, c.amount_expected]), [
    [1, 'paid', '20.00'],
    [5, 'rejected', '35.00'],
  ]);
  t.is(stats.claims_generated, 0);
  t.is(stats.claims_skipped_paid_or_rejected, 2);
});

test('each lead of one driver gets its own claims', async (t) => {
  const db = await freshDb(t, 'claims_two_leads');
  const today = await businessToday(db);
  const a = await insertLead(db, { lead_created_at: addDays(today, -25) });
  const b = await insertLead(db, { lead_created_at: addDays(today, -5) });
  const driverId = uid('D');
  await linkPerson(db, [a.key, b.key], [{ driverId }]);
  await addTrips(db, driverId, [...tripsOnDays(addDays(today, -25), [0]), ...tripsOnDays(addDays(today, -5), [0, 1, 2, 3, 4])]);
  await generateClaims(db, addDays(today, -30));
  t.deepEqual((await claimsOf(db, a.key)).map((c) => [c.milestone, c.lead_date]), [[1, addDays(today, -25)]]);
  t.deepEqual((await claimsOf(db, b.key)).map((c) => [c.milestone, c.lead_date]), [[1, addDays(today, -5)], [5, addDays(today, -5)]]);
});

test('two lead rows with the same external_id get one set of claims, keyed by the key', async (t) => {
  const db = await freshDb(t, 'claims_dup_key');
  const today = await businessToday(db);
  const externalId = uid('X');
  const first = await insertLead(db, { external_id: externalId, lead_created_at: addDays(today, -20) });
  const second = await insertLead(db, { external_id: ` ${externalId} `, lead_created_at: addDays(today, -20) });
  t.is(first.key, second.key);
  const driverId = uid('D');
  await linkPerson(db, [first.key], [{ driverId }]);
  await addTrips(db, driverId, tripsOnDays(addDays(today, -20), [0, 1, 2, 3, 4]));
  const stats = await generateClaims(db, addDays(today, -30));
  t.deepEqual((await claimsOf(db, first.key)).map((c) => c.milestone), [1, 5]);
  t.is(stats.leads_in_scope, 2);
  t.is(stats.claims_generated, 2);
});

test('leaves leads before the scope, without identity or without driver alone', async (t) => {
  const db = await freshDb(t, 'claims_scope');
  const today = await businessToday(db);
  const old = await linkedLead(db, addDays(today, -45), { trips: tripsOnDays(addDays(today, -45), [0, 1]) });
  const noIdentity = await insertLead(db, { lead_created_at: addDays(today, -10) });
  const noDriver = await insertLead(db, { lead_created_at: addDays(today, -10) });
  await linkPerson(db, [noDriver.key]);
  const stats = await generateClaims(db, addDays(today, -30));
  t.is(stats.claims_generated, 0);
  t.is(stats.leads_in_scope, 2);
  t.is(stats.leads_with_driver, 0);
  for (const k of [old.key, noIdentity.key, noDriver.key]) t.deepEqual(await claimsOf(db, k), []);
});

test('thresholds, amounts and the window come from canon.claim_rules', async (t) => {
  const db = await freshDb(t, 'claims_rules');
  const today = await businessToday(db);
  await db.query(`UPDATE canon.claim_rules SET amount = 40, trips_threshold = 3 WHERE milestone = 5`);
  await db.query(`UPDATE canon.claim_rules SET window_days = 7`);
  const leadDate = addDays(today, -20);
  const lead = await linkedLead(db, leadDate, { trips: tripsOnDays(leadDate, [0, 1, 6, 7, 8]) });
  const stats = await generateClaims(db, addDays(today, -30));
  t.deepEqual((await claimsOf(db, lead.key)).map((c) => [c.milestone, c.amount_expected]), [[1, '25.00'], [5, '40.00']]);
  t.is(stats.claims_generated_amount, 65);
  t.is(stats.trip_rows_read, 3);
});

test('a lead takes the rules valid on its lead date', async (t) => {
  const db = await freshDb(t, 'claims_rule_dates');
  const today = await businessToday(db);
  const change = addDays(today, -15);
  await db.query(
    `BEGIN;
     UPDATE canon.claim_rules SET valid_to = '${change}' WHERE milestone = 1;
     INSERT INTO canon.claim_rules (milestone, trips_threshold, amount, currency, window_days, valid_from) VALUES (1, 1, 30, 'PEN', 14, '${change}');
     COMMIT;`,
  );
  const before = await linkedLead(db, addDays(change, -1), { trips: tripsOnDays(addDays(change, -1), [0]) });
  const after = await linkedLead(db, change, { trips: tripsOnDays(change, [0]) });
  await generateClaims(db, addDays(today, -30));
  t.is((await claimsOf(db, before.key))[0]?.amount_expected, '25.00');
  t.is((await claimsOf(db, after.key))[0]?.amount_expected, '30.00');
});
