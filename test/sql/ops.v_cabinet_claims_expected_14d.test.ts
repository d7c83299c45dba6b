// Expected claims (lead key x milestone) and the gap view: what should exist, and what is missing.
import test from 'ava';
import { freshDb } from '../helpers/db.js';
import { addDays, businessToday, insertLead, tripsOnDays } from '../helpers/rows.js';
import { generateClaims, linkedLead, linkPerson } from '../helpers/scenario.js';

interface ExpectedRow {
  milestone: number;
  expected: boolean;
  reason: string;
  amount: string;
  trips_threshold: number;
  claim_status: string | null;
}

test('one row per lead key and milestone, with expected and the reason', async (t) => {
  const db = await freshDb(t, 'expected');
  const today = await businessToday(db);
  const reached = await linkedLead(db, addDays(today, -20), { trips: tripsOnDays(addDays(today, -20), [0, 1, 2, 3, 4]) });
  const noIdentity = await insertLead(db, { lead_created_at: addDays(today, -2) });
  const noDriver = await insertLead(db, { lead_created_at: addDays(today, -2) });
  await linkPerson(db, [noDriver.key]);
  const q = (key: string) =>
    db.query<ExpectedRow>(
      `SELECT milestone, expected, reason, amount, trips_threshold, claim_status
       FROM ops.v_cabinet_claims_expected_14d WHERE lead_source_pk = $1 ORDER BY milestone`,
      [key],
    );
  t.deepEqual(await q(reached.key), [
    { milestone: 1, expected: true, reason: 'REACHED', amount: '25.00', trips_threshold: 1, claim_status: null },
    { milestone: 5, expected: true, reason: 'REACHED', amount: '35.00', trips_threshold: 5, claim_status: null },
    { milestone: 25, expected: false, reason: 'NOT_REACHED', amount: '100.00', trips_threshold: 25, claim_status: null },
  ]);
  t.deepEqual((await q(noIdentity.key)).map((r) => [r.expected, r.reason]), [[false, 'NO_IDENTITY'], [false, 'NO_IDENTITY'], [false, 'NO_IDENTITY']]);
  t.deepEqual((await q(noDriver.key)).map((r) => [r.expected, r.reason]), [[false, 'NO_DRIVER'], [false, 'NO_DRIVER'], [false, 'NO_DRIVER']]);

  const gap = await db.query(`SELECT lead_source_pk, milestone, amount, gap_reason FROM ops.v_cabinet_claims_gap_14d ORDER BY milestone`);
  t.deepEqual(gap, [
    { lead_source_pk: reached.key, milestone: 1, amount: '25.00', gap_reason: 'CLAIM_NOT_GENERATED' },
    { lead_source_pk: reached.key, milestone: 5, amount: '35.00', gap_reason: 'CLAIM_NOT_GENERATED' },
  ]);

  await generateClaims(db, addDays(today, -30));
  t.deepEqual((await q(reached.key)).map((r) => r.claim_status), ['generated', 'generated', null]);
  t.deepEqual(await db.query(`SELECT * FROM ops.v_cabinet_claims_gap_14d`), []);
});

test('a key shared by two lead rows is one set of expected claims', async (t) => {
  const db = await freshDb(t, 'expected_dup');
  const today = await businessToday(db);
  const lead = await linkedLead(db, addDays(today, -20), { trips: tripsOnDays(addDays(today, -20), [0]), lead: { external_id: 'DUP-1' } });
  await insertLead(db, { external_id: 'DUP-1', lead_created_at: addDays(today, -20) });
  // Keyed, as by a run's step 5: the key's two rows count as one key from then on (key_rows).
  await db.query(`SELECT canon.key_changed_leads(NULL)`);
  const rows = await db.query(`SELECT lead_id, milestone FROM ops.v_cabinet_claims_expected_14d WHERE lead_source_pk = 'DUP-1' ORDER BY milestone`);
  t.deepEqual(rows, [
    { lead_id: lead.id, milestone: 1 },
    { lead_id: lead.id, milestone: 5 },
    { lead_id: lead.id, milestone: 25 },
  ]);
});

test('amounts follow canon.claim_rules when a rule changes', async (t) => {
  const db = await freshDb(t, 'expected_rules');
  const today = await businessToday(db);
  const lead = await linkedLead(db, addDays(today, -20), { trips: tripsOnDays(addDays(today, -20), [0]) });
  await db.query(`UPDATE canon.claim_rules SET amount = 27.5 WHERE milestone = 1`);
  const [r] = await db.query(`SELECT amount FROM ops.v_cabinet_claims_expected_14d WHERE lead_source_pk = $1 AND milestone = 1`, [lead.key]);
  t.deepEqual(r, { amount: '27.50' });
  const [l] = await db.query(`SELECT expected_amount_14d FROM ops.v_cabinet_leads_limbo WHERE lead_source_pk = $1`, [lead.key]);
  t.deepEqual(l, { expected_amount_14d: '27.50' });
  await generateClaims(db, addDays(today, -30));
  const [c] = await db.query(`SELECT amount_expected FROM canon.claims_yango_cabinet_14d WHERE lead_source_pk = $1`, [lead.key]);
  t.deepEqual(c, { amount_expected: '27.50' });
});
