// The limbo view: one row per lead, the first stage that applies, claims of THIS lead.
import test from 'ava';
import { createTestDb, freshDb, type TestDb } from '../helpers/db.js';
import { addDays, addTrips, businessToday, insertLead, tripsOnDays, uid } from '../helpers/rows.js';
import { generateClaims, limboRow, limboRows, linkedLead, linkPerson } from '../helpers/scenario.js';

let db: TestDb;
let today: string;
test.before(async () => {
  db = await createTestDb('limbo');
  today = await businessToday(db);
});
test.after.always(() => db.drop());

async function addUnmatched(key: string, reason: string, candidates: object[] = [], status = 'OPEN'): Promise<void> {
  await db.query(
    `INSERT INTO canon.identity_unmatched (source_table, source_pk, reason_code, candidates, status)
     VALUES ('module_ct_cabinet_leads', $1, $2, $3::jsonb, $4)`,
    [key, reason, JSON.stringify(candidates), status],
  );
}

test('a lead never evaluated is NO_IDENTITY and says the next run will match it', async (t) => {
  const lead = await insertLead(db, { lead_created_at: addDays(today, -2) });
  const row = await limboRow(db, lead.key);
  t.is(row.limbo_stage, 'NO_IDENTITY');
  t.is(row.reason_code, null);
  t.is(row.person_key, null);
  t.is(row.trips_14d, '0');
  t.regex(row.limbo_reason_detail, new RegExp(`^Lead ${lead.key} has no identity: not evaluated yet; the next run matches it`));
});

test('an unmatched lead is NO_IDENTITY with its reason_code and the missing data in the detail', async (t) => {
  const ambiguous = await insertLead(db, { lead_created_at: addDays(today, -2), asset_plate_number: 'ABC123' });
  await addUnmatched(ambiguous.key, 'AMBIGUOUS', [{ driver_id: 'drv-a' }, { driver_id: 'drv-b' }]);
  const missing = await insertLead(db, { lead_created_at: addDays(today, -2) });
  await addUnmatched(missing.key, 'MISSING_KEYS');
  const ignored = await insertLead(db, { lead_created_at: addDays(today, -2) });
  await addUnmatched(ignored.key, 'NO_CANDIDATES', [], 'IGNORED');

  const a = await limboRow(db, ambiguous.key);
  t.like(a, { limbo_stage: 'NO_IDENTITY', reason_code: 'AMBIGUOUS' });
  t.regex(a.limbo_reason_detail, new RegExp(`^Lead ${ambiguous.key} has no identity: AMBIGUOUS \\(2 candidate drivers: drv-a, drv-b, for plate ABC123`));
  const m = await limboRow(db, missing.key);
  t.like(m, { limbo_stage: 'NO_IDENTITY', reason_code: 'MISSING_KEYS' });
  t.regex(m.limbo_reason_detail, /no phone, plate or license/);
  const i = await limboRow(db, ignored.key);
  t.like(i, { limbo_stage: 'NO_IDENTITY', reason_code: 'NO_CANDIDATES' });
  t.regex(i.limbo_reason_detail, /IGNORED by hand/);
});

test('a person without a driver is NO_DRIVER', async (t) => {
  const lead = await insertLead(db, { lead_created_at: addDays(today, -2) });
  const personKey = await linkPerson(db, [lead.key]);
  const row = await limboRow(db, lead.key);
  t.like(row, { limbo_stage: 'NO_DRIVER', person_key: personKey, driver_id: null, trips_14d: '0', reason_code: null });
  t.regex(row.limbo_reason_detail, new RegExp(`^Lead ${lead.key} is linked to person ${personKey}, who has no driver link`));
});

test('a driver without trips in the window is NO_TRIPS_14D, OPEN while today < window end', async (t) => {
  const open = await linkedLead(db, addDays(today, -13));
  const closed = await linkedLead(db, addDays(today, -14), { trips: [{ dateFile: today, trips: 3 }] });
  const o = await limboRow(db, open.key);
  t.like(o, { limbo_stage: 'NO_TRIPS_14D', window_status: 'OPEN', window_end_14d: addDays(today, 1), driver_id: open.driverId });
  t.regex(o.limbo_reason_detail, /no trips yet .* window open for 1 more day/);
  const c = await limboRow(db, closed.key);
  t.like(c, { limbo_stage: 'NO_TRIPS_14D', window_status: 'CLOSED', window_end_14d: today, trips_14d: '0' });
  t.regex(c.limbo_reason_detail, /window is closed/);
});

test('a reached milestone without its claim is TRIPS_NO_CLAIM until claims are generated, then OK', async (t) => {
  const leadDate = addDays(today, -20);
  const lead = await linkedLead(db, leadDate, { trips: tripsOnDays(leadDate, [0, 1, 2, 3, 13, 14]) });
  const before = await limboRow(db, lead.key);
  t.like(before, {
    limbo_stage: 'TRIPS_NO_CLAIM',
    trips_14d: '5',
    reached_m1_14d: true,
    reached_m5_14d: true,
    reached_m25_14d: false,
    expected_amount_14d: '60.00',
    has_claim_m1: false,
    has_claim_m5: false,
  });
  t.regex(before.limbo_reason_detail, /reached M1, M5 with 5 trips .* has no claim for M1, M5/);
  // Only this lead's claims: a per-test database is not needed, generation is per key.
  await db.query(
    `INSERT INTO canon.claims_yango_cabinet_14d (lead_source_pk, milestone, lead_date, amount_expected, status)
     VALUES ($1, 1, $2, 25, 'generated')`,
    [lead.key, leadDate],
  );
  const half = await limboRow(db, lead.key);
  t.like(half, { limbo_stage: 'TRIPS_NO_CLAIM', has_claim_m1: true, has_claim_m5: false });
  t.regex(half.limbo_reason_detail, /has no claim for M5;/);
  await db.query(
    `INSERT INTO canon.claims_yango_cabinet_14d (lead_source_pk, milestone, lead_date, amount_expected, status)
     VALUES ($1, 5, $2, 35, 'rejected')`,
    [lead.key, leadDate],
  );
  t.like(await limboRow(db, lead.key), { limbo_stage: 'OK', has_claim_m1: true, has_claim_m5: true, has_claim_m25: false });
});

test('a claim of another lead of the same driver never satisfies this one', async (t) => {
  const a = await insertLead(db, { lead_created_at: addDays(today, -25) });
  const b = await insertLead(db, { lead_created_at: addDays(today, -10) });
  const driverId = uid('D');
  await linkPerson(db, [a.key, b.key], [{ driverId }]);
  await addTrips(db, driverId, [...tripsOnDays(addDays(today, -25), [0]), ...tripsOnDays(addDays(today, -10), [0])]);
  await db.query(
    `INSERT INTO canon.claims_yango_cabinet_14d (lead_source_pk, milestone, person_key, driver_id, lead_date, amount_expected, status)
     SELECT $1, 1, person_key, $2, $3, 25, 'paid' FROM canon.identity_links WHERE source_pk = $1`,
    [a.key, driverId, addDays(today, -25)],
  );
  t.like(await limboRow(db, a.key), { limbo_stage: 'OK', has_claim_m1: true });
  t.like(await limboRow(db, b.key), { limbo_stage: 'TRIPS_NO_CLAIM', has_claim_m1: false, driver_id: driverId });
});

test('one row per lead with lead_created_at; a lead without it is absent', async (t) => {
  const dated = await insertLead(db, { lead_created_at: addDays(today, -3) });
  const undated = await insertLead(db, { lead_created_at: null });
  t.is((await limboRows(db, dated.key)).length, 1);
  t.deepEqual(await limboRows(db, undated.key), []);
  const [r] = await db.query<{ leads: number; rows: number; ids: number }>(
    `SELECT (SELECT count(*)::int FROM public.module_ct_cabinet_leads WHERE lead_created_at IS NOT NULL) AS leads,
            (SELECT count(*)::int FROM ops.v_cabinet_leads_limbo) AS rows,
            (SELECT count(DISTINCT lead_id)::int FROM ops.v_cabinet_leads_limbo) AS ids`,
  );
  t.is(r!.rows, r!.leads);
  t.is(r!.ids, r!.leads);
});

test('two rows sharing a lead key both appear, with the same key-based data', async (t) => {
  const externalId = uid('X');
  const first = await insertLead(db, { external_id: externalId, lead_created_at: addDays(today, -20) });
  const second = await insertLead(db, { external_id: externalId, lead_created_at: addDays(today, -20), first_name: 'Otro' });
  const driverId = uid('D');
  const personKey = await linkPerson(db, [first.key], [{ driverId }]);
  await addTrips(db, driverId, tripsOnDays(addDays(today, -20), [0, 1]));
  const rows = await limboRows(db, first.key);
  t.deepEqual(rows.map((r) => r.lead_id), [first.id, second.id]);
  for (const r of rows) t.like(r, { person_key: personKey, driver_id: driverId, trips_14d: '2', limbo_stage: 'TRIPS_NO_CLAIM' });
});

test('lead_name is trimmed with single spaces; week_start is the ISO Monday; window_end is lead_date + 14', async (t) => {
  const lead = await insertLead(db, { lead_created_at: '2026-03-08 23:59:59', first_name: '  Ana ', middle_name: null, last_name: 'María   del  Campo ' });
  const row = await limboRow(db, lead.key);
  t.like(row, { lead_name: 'Ana María del Campo', lead_date: '2026-03-08', week_start: '2026-03-02', window_end_14d: '2026-03-22' });
});

test('the SPEC query works as written and its counts add up to the leads', async (t) => {
  const own = await freshDb(t, 'limbo_spec_query');
  const d = await businessToday(own);
  await insertLead(own, { lead_created_at: addDays(d, -1) });
  await insertLead(own, { lead_created_at: addDays(d, -1) });
  await linkedLead(own, addDays(d, -20), { trips: tripsOnDays(addDays(d, -20), [0]) });
  await linkedLead(own, addDays(d, -3));
  const rows = await own.query<{ limbo_stage: string; count: string }>(
    `SELECT limbo_stage, COUNT(*) AS count FROM ops.v_cabinet_leads_limbo
GROUP BY limbo_stage ORDER BY count DESC;`,
  );
  t.deepEqual(rows[0], { limbo_stage: 'NO_IDENTITY', count: '2' });
  t.deepEqual(rows.slice(1).map((r) => [r.limbo_stage, r.count]).sort(), [['NO_TRIPS_14D', '1'], ['TRIPS_NO_CLAIM', '1']]);
  await generateClaims(own, addDays(d, -30));
  const after = await own.query<{ limbo_stage: string; count: string }>(
    `SELECT limbo_stage, COUNT(*) AS count FROM ops.v_cabinet_leads_limbo GROUP BY limbo_stage ORDER BY count DESC;`,
  );
  t.deepEqual(after.map((r) => [r.limbo_stage, r.count]).sort(), [['NO_IDENTITY', '2'], ['NO_TRIPS_14D', '1'], ['OK', '1']]);
});
