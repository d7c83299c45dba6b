import test from 'ava';
import { createTestDb, freshDb, type TestDb } from '../helpers/db.js';
import { addDays, addTrips, businessToday, uid } from '../helpers/rows.js';
import { generateClaims, linkedLead } from '../helpers/scenario.js';

let db: TestDb;
test.before(async () => {
  db = await createTestDb('trip_rows_unparseable');
});
test.after.always(() => db.drop());

test('lists every trip row that counts for no driver and day, with its reason', async (t) => {
  const d = uid('D');
  await addTrips(db, d, [
    { dateFile: '31-02-2026', trips: 3 },
    { dateFile: '2026-13-01', trips: 1 },
    { dateFile: '05/03/2026', trips: 2 },
    { dateFile: '', trips: 1 },
    { dateFile: null, trips: 1 },
    { dateFile: '05-03-2026', trips: 7 },
  ]);
  const rows = await db.query(
    `SELECT date_file, count_orders_completed, reason FROM ops.v_trip_rows_unparseable WHERE driver_id = $1 ORDER BY reason, date_file`,
    [d],
  );
  t.deepEqual(rows, [
    { date_file: '2026-13-01', count_orders_completed: 1, reason: 'IMPOSSIBLE_DATE' },
    { date_file: '31-02-2026', count_orders_completed: 3, reason: 'IMPOSSIBLE_DATE' },
    { date_file: '', count_orders_completed: 1, reason: 'MISSING_DATE' },
    { date_file: null, count_orders_completed: 1, reason: 'MISSING_DATE' },
    { date_file: '05/03/2026', count_orders_completed: 2, reason: 'UNKNOWN_DATE_FORMAT' },
  ]);
});

test('lists rows without a driver_id, even with a good date', async (t) => {
  const marker = 900_000 + Math.floor(Math.random() * 99_999);
  await addTrips(db, null, [{ dateFile: '05-03-2026', trips: marker }]);
  const rows = await db.query(`SELECT reason FROM ops.v_trip_rows_unparseable WHERE count_orders_completed = $1`, [marker]);
  t.deepEqual(rows, [{ reason: 'MISSING_DRIVER_ID' }]);
});

test('claim generation counts the unparseable rows of the drivers in scope in its stats', async (t) => {
  const own = await freshDb(t, 'unparseable_stats');
  const today = await businessToday(own);
  const lead = await linkedLead(own, addDays(today, -20), {
    trips: [
      { dateFile: addDays(today, -20), trips: 1 },
      { dateFile: '31-02-2026', trips: 4 },
      { dateFile: 'garbage', trips: 4 },
    ],
  });
  const stats = await generateClaims(own, addDays(today, -30));
  t.is(stats.trip_rows_unparseable_scope_drivers, 2);
  t.is(stats.trip_rows_read, 1);
  t.is(stats.claims_generated, 1, lead.key);
});
