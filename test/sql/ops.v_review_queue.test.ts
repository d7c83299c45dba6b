// ops.v_review_queue: the leads a person must decide (AMBIGUOUS, CONFLICT, WEAK_MATCH_ONLY,
// SHARED_KEY), one row per lead key, most money at stake first, then the oldest, with the
// candidates side by side (driver, park, phone, plate, hire date, rule, score, why not linked).
import test from 'ava';
import { createTestDb, type TestDb } from '../helpers/db.js';
import { runPipeline } from '../helpers/pipeline.js';
import { addDays, addTrips, businessToday, insertDriver, insertLead, TARGET_PARK, tripsOnDays } from '../helpers/rows.js';

interface Candidate {
  driver_id: string;
  driver_name: string | null;
  park_id: string;
  phone: string | null;
  plate: string | null;
  hire_date: string | null;
  rule: string;
  score: number;
  name_similarity: number;
  kept: boolean;
  reject_reason: string | null;
  why_not_linked: string;
  trips_in_window: number;
  amount_in_window: number;
}

interface Row {
  review_rank: string;
  lead_source_pk: string;
  reason_code: string;
  money_at_stake: string;
  age_days: number;
  lead_name: string;
  candidates: Candidate[];
}

let db: TestDb;
let rows: Row[];

test.before(async () => {
  db = await createTestDb('review_queue');
  const today = await businessToday(db);
  const at = (days: number) => `${addDays(today, -days)} 10:00`;
  // AMBIGUOUS: two shift drivers of one plate with the same-looking name; "a" drove 6 trips
  await insertDriver(db, { driver_id: 'a', first_name: 'Ana', last_name: 'Lopez', car_number: 'SHF001', phone: '51911000001' });
  await insertDriver(db, { driver_id: 'b', first_name: 'Ana', last_name: 'Lopes', car_number: 'SHF001' });
  await insertLead(db, { external_id: 'AMB', first_name: 'Ana', last_name: 'López', asset_plate_number: 'shf-001', lead_created_at: at(10) });
  await addTrips(db, 'a', tripsOnDays(addDays(today, -10), [0, 1, 2, 3, 4, 5]));
  // CONFLICT: the phone is a relative's driver row, the plate and name the lead's own; "own" drove 25+
  await insertDriver(db, { driver_id: 'relative', first_name: 'Pedro', last_name: 'Quispe Rojas', phone: '51922000002', car_number: 'REL002' });
  await insertDriver(db, { driver_id: 'own', first_name: 'Luis', last_name: 'Quispe Rojas', car_number: 'OWN003', phone: '51933000003' });
  await insertLead(db, { external_id: 'CON', first_name: 'Luis', last_name: 'Quispe Rojas', park_phone: '922000002', asset_plate_number: 'OWN003', lead_created_at: at(5) });
  await addTrips(db, 'own', tripsOnDays(addDays(today, -5), [0, 1, 2, 3, 4], 6));
  // WEAK_MATCH_ONLY: the plate's driver is someone else by name; the oldest lead, nothing at stake
  await insertDriver(db, { driver_id: 'owner', first_name: 'Carmen', last_name: 'Salas', car_number: 'WEA004', hire_date: '2024-03-01' });
  await insertLead(db, { external_id: 'WEAK', first_name: 'Jorge', last_name: 'Tello', asset_plate_number: 'WEA004', lead_created_at: at(20) });
  // NO_CANDIDATES and an IGNORED AMBIGUOUS lead: nobody has to decide them
  await insertLead(db, { external_id: 'NONE', first_name: 'Rosa', last_name: 'Vega', park_phone: '944000004', lead_created_at: at(3) });
  await insertLead(db, { external_id: 'IGN', first_name: 'Ana', last_name: 'Lopez', asset_plate_number: 'SHF001', lead_created_at: at(4) });
  // the same lead key twice (a re-export): one row
  await insertLead(db, { external_id: 'CON', first_name: 'Luis', last_name: 'Quispe Rojas', park_phone: '922000002', asset_plate_number: 'OWN003', lead_created_at: at(5) });
  const run = await runPipeline(db);
  if (run.status !== 'COMPLETED') throw new Error(`run ${run.status}: ${run.error_message}`);
  await db.query(`SELECT ops.ignore_lead('IGN', 'test: decided elsewhere')`);
  rows = await db.query<Row>(`SELECT * FROM ops.v_review_queue ORDER BY review_rank`);
});
test.after.always(() => db.drop());

test('one row per lead waiting for a person, most money at stake first, then the oldest', (t) => {
  t.deepEqual(
    rows.map((r) => [r.review_rank, r.lead_source_pk, r.reason_code, r.money_at_stake]),
    [
      ['1', 'CON', 'CONFLICT', '160.00'],
      ['2', 'AMB', 'AMBIGUOUS', '60.00'],
      ['3', 'WEAK', 'WEAK_MATCH_ONLY', '0.00'],
    ],
  );
  t.is(rows[2]!.age_days, 20);
  t.is(rows[0]!.lead_name, 'Luis Quispe Rojas');
});

test('candidates side by side: driver, park, phone, plate, hire date, rule, score and why each was not linked', (t) => {
  const con = rows.find((r) => r.lead_source_pk === 'CON')!;
  const byDriver = Object.fromEntries(con.candidates.map((c) => [c.driver_id, c]));
  t.like(byDriver['relative'], { driver_name: 'Pedro Quispe Rojas', park_id: TARGET_PARK, phone: '51922000002', plate: 'REL002', rule: 'R1_PHONE_EXACT', kept: true,
                                 why_not_linked: 'another rule points to another driver', amount_in_window: 0 });
  t.like(byDriver['own'], { driver_name: 'Luis Quispe Rojas', plate: 'OWN003', rule: 'R3_PLATE_EXACT_NAME_SIMILAR', kept: true, trips_in_window: 30, amount_in_window: 160 });
  t.is(Number(byDriver['relative']!.score), 95);
  const weak = rows.find((r) => r.lead_source_pk === 'WEAK')!;
  t.is(weak.candidates.length, 1);
  t.like(weak.candidates[0], { driver_id: 'owner', driver_name: 'Carmen Salas', hire_date: '2024-03-01', kept: false, reject_reason: 'NAME_NOT_SIMILAR' });
  t.regex(weak.candidates[0]!.why_not_linked, /^the plate is the same, the name is not similar enough \(0(\.\d+)?, below 0\.66\)$/);
  const amb = rows.find((r) => r.lead_source_pk === 'AMB')!;
  t.deepEqual(amb.candidates.map((c) => [c.driver_id, c.why_not_linked]).sort(), [
    ['a', 'fits as well as another driver of the same rule'],
    ['b', 'fits as well as another driver of the same rule'],
  ]);
});

test('a lead decided by a person leaves the queue', async (t) => {
  const own = await createTestDb('review_queue_resolve');
  t.teardown(() => own.drop());
  await insertDriver(own, { driver_id: 'a', first_name: 'Ana', last_name: 'Lopez', car_number: 'SHF001' });
  await insertDriver(own, { driver_id: 'b', first_name: 'Ana', last_name: 'Lopes', car_number: 'SHF001' });
  await insertLead(own, { external_id: 'AMB', first_name: 'Ana', last_name: 'López', asset_plate_number: 'SHF001' });
  await runPipeline(own);
  t.is((await own.query(`SELECT 1 FROM ops.v_review_queue`)).length, 1);
  await own.query(`SELECT ops.resolve_lead('AMB', 'a', 'test: called her')`);
  t.is((await own.query(`SELECT 1 FROM ops.v_review_queue`)).length, 0);
});
