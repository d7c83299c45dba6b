// canon.trip_drivers_changed (step 7a, through canon.schedule_lead_state): the drivers with
// trip rows written into public.summary_daily since the last look, in
// pg_temp.trip_drivers_changed, and what it read and why (docs/change-detection.md).
import test from 'ava';
import { type TestDb, withDb } from '../helpers/db.js';
import { addTrips, businessToday } from '../helpers/rows.js';
import { inTransaction, step } from '../helpers/steps.js';

interface Trips {
  read: 'none' | 'appended_pages' | 'whole_table';
  whole_read_reason: string | null;
  rows_may_be_gone: boolean | null;
  rows_read: number;
  rows_new_in_appended_pages: number;
  drivers: number;
}

/** One look, and the drivers it put in pg_temp.trip_drivers_changed. */
async function look(db: TestDb): Promise<{ stats: Trips; drivers: string[] }> {
  return inTransaction(db, async (c) => {
    const stats = await step<Trips>(c, 'canon.trip_drivers_changed(NULL)');
    const drivers = (await c.query<{ driver_id: string }>(`SELECT driver_id FROM pg_temp.trip_drivers_changed ORDER BY 1`)).rows;
    return { stats, drivers: drivers.map((d) => d.driver_id) };
  });
}

test('the first look reads nothing and says rows may be gone (the caller re-reads every lead with a driver)', (t) =>
  withDb('trip_drivers', async (db) => {
    await addTrips(db, 'd1', [{ dateFile: await businessToday(db), trips: 3 }]);
    const first = await look(db);
    t.deepEqual(first.stats, { read: 'none', whole_read_reason: 'first_read', rows_may_be_gone: true, rows_read: 0, rows_new_in_appended_pages: 0, drivers: 0 });
    t.deepEqual(first.drivers, []);
    const [s] = await db.query<{ read: boolean; full: boolean }>(
      `SELECT read_at IS NOT NULL AS read, full_read_at IS NOT NULL AS full FROM canon_internal.source_scan_state WHERE source_table = 'summary_daily'`);
    t.deepEqual(s, { read: true, full: true });
  }));

test('trip rows appended since the last look give their drivers, once each, and rows_may_be_gone false', (t) =>
  withDb('trip_drivers', async (db) => {
    const today = await businessToday(db);
    await addTrips(db, 'old', [{ dateFile: today, trips: 1 }]);
    await look(db);
    await addTrips(db, 'd1', [{ dateFile: today, trips: 2 }, { dateFile: today, trips: 1 }]);
    await addTrips(db, 'd2', [{ dateFile: today, trips: 4 }]);
    await addTrips(db, null, [{ dateFile: today, trips: 9 }]); // a row without driver names none
    const appended = await look(db);
    t.like(appended.stats, { read: 'appended_pages', whole_read_reason: null, rows_may_be_gone: false, rows_new_in_appended_pages: 4, drivers: 2 });
    t.deepEqual(appended.drivers, ['d1', 'd2']);
  }));

test('a second look with nothing written finds no driver and reads the appended pages only', (t) =>
  withDb('trip_drivers', async (db) => {
    await addTrips(db, 'd1', [{ dateFile: await businessToday(db), trips: 1 }]);
    await look(db);
    await look(db);
    const idle = await look(db);
    t.like(idle.stats, { read: 'appended_pages', whole_read_reason: null, rows_may_be_gone: false, rows_new_in_appended_pages: 0, drivers: 0 });
    t.deepEqual(idle.drivers, []);
  }));

test('a trip row updated in place makes the next look read the whole table, rows may be gone', (t) =>
  withDb('trip_drivers', async (db) => {
    const today = await businessToday(db);
    await addTrips(db, 'd1', [{ dateFile: today, trips: 1 }]);
    await addTrips(db, 'd2', [{ dateFile: today, trips: 1 }]);
    await look(db);
    await db.query(`WITH u AS (UPDATE public.summary_daily SET count_orders_completed = 5 WHERE driver_id = 'd2' RETURNING 1)
                    SELECT count(*), pg_stat_force_next_flush() FROM u`);
    const updated = await look(db);
    t.like(updated.stats, { read: 'whole_table', whole_read_reason: 'rows_updated_or_deleted', rows_may_be_gone: true, drivers: 1 });
    t.deepEqual(updated.drivers, ['d2'], 'only the row version written since the last whole read');
    t.like((await look(db)).stats, { read: 'appended_pages', rows_may_be_gone: false, drivers: 0 });
  }));

test('a whole read that is only periodic says rows_may_be_gone false', (t) =>
  withDb('trip_drivers', async (db) => {
    await addTrips(db, 'd1', [{ dateFile: await businessToday(db), trips: 1 }]);
    await look(db);
    await db.query(`UPDATE canon_internal.source_scan_state SET full_read_at = now() - interval '25 hours' WHERE source_table = 'summary_daily'`);
    const periodic = await look(db);
    t.like(periodic.stats, { read: 'whole_table', whole_read_reason: 'periodic', rows_may_be_gone: false, drivers: 0 });
  }));
