import test from 'ava';
import { createTestDb, type TestDb } from '../helpers/db.js';
import { addTrips, uid } from '../helpers/rows.js';

let db: TestDb;
test.before(async () => {
  db = await createTestDb('driver_daily_trips');
});
test.after.always(() => db.drop());

test('sums several rows of one driver and day, whatever their date format', async (t) => {
  const d = uid('D');
  await addTrips(db, d, [
    { dateFile: '05-03-2026', trips: 3 },
    { dateFile: '2026-03-05', trips: 2 },
    { dateFile: ' 2026-03-05 ', trips: 1 },
    { dateFile: '06-03-2026', trips: 4 },
  ]);
  const rows = await db.query(`SELECT trip_date, trips::int, source_rows FROM canon.v_driver_daily_trips WHERE driver_id = $1 ORDER BY 1`, [d]);
  t.deepEqual(rows, [
    { trip_date: '2026-03-05', trips: 6, source_rows: 3 },
    { trip_date: '2026-03-06', trips: 4, source_rows: 1 },
  ]);
});

test('leaves out rows without a parseable day (they are in ops.v_trip_rows_unparseable)', async (t) => {
  const d = uid('D');
  await addTrips(db, d, [
    { dateFile: '31-02-2026', trips: 3 },
    { dateFile: 'yesterday', trips: 2 },
  ]);
  t.deepEqual(await db.query(`SELECT * FROM canon.v_driver_daily_trips WHERE driver_id = $1`, [d]), []);
  const [r] = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ops.v_trip_rows_unparseable WHERE driver_id = $1`, [d]);
  t.is(r!.n, 2);
});
