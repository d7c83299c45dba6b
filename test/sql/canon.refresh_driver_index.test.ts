// canon.refresh_driver_index (pipeline step 4): incremental and full refresh of the
// driver matching index, and the changed_at mark that decides whether unmatched leads
// are worth retrying.
import test from 'ava';
import { createTestDb, type TestDb } from '../helpers/db.js';
import { insertDriver } from '../helpers/rows.js';

async function withDb(fn: (db: TestDb) => Promise<void>): Promise<void> {
  const db = await createTestDb('driver_index');
  try {
    await fn(db);
  } finally {
    await db.drop();
  }
}

type Stats = {
  mode: string;
  drivers_scanned: number;
  drivers_reindexed: number;
  drivers_removed: number;
  index_changed: boolean;
};

async function refresh(db: TestDb): Promise<Stats> {
  const [r] = await db.query<{ s: Stats }>(`SELECT canon.refresh_driver_index(NULL) AS s`);
  return r!.s;
}

async function changedAt(db: TestDb): Promise<string | null> {
  const [r] = await db.query<{ c: string | null }>(`SELECT changed_at::text AS c FROM canon.driver_index_state`);
  return r?.c ?? null;
}

test('changed_at moves only when index rows are written or removed', (t) =>
  withDb(async (db) => {
    await insertDriver(db, { driver_id: 'd1', first_name: 'Juan', last_name: 'Perez', phone: '51977456321' });
    const full = await refresh(db);
    t.like(full, { mode: 'full', drivers_scanned: 1, drivers_reindexed: 1, index_changed: true });
    const first = await changedAt(db);
    t.truthy(first);

    const idle = await refresh(db);
    t.like(idle, { mode: 'incremental', drivers_reindexed: 0, index_changed: false });
    t.is(await changedAt(db), first);

    // A touched driver whose matching values are the same: scanned, not re-indexed.
    await db.query(`UPDATE public.drivers SET work_status = 'busy', updated_at = now() WHERE driver_id = 'd1'`);
    const touched = await refresh(db);
    t.like(touched, { drivers_scanned: 1, drivers_reindexed: 0, index_changed: false });
    t.is(await changedAt(db), first);
    // Looked at in that version: the hour of overlap does not read it again.
    t.like(await refresh(db), { drivers_scanned: 0, drivers_reindexed: 0 });

    await db.query(`UPDATE public.drivers SET phone = '51900000000', updated_at = now() WHERE driver_id = 'd1'`);
    const changed = await refresh(db);
    t.like(changed, { mode: 'incremental', drivers_reindexed: 1, index_changed: true });
    t.not(await changedAt(db), first);
    const [i] = await db.query<{ phone_norm: string }>(`SELECT phone_norm FROM canon.driver_index WHERE driver_id = 'd1'`);
    t.is(i!.phone_norm, '900000000');
  }));

test('incremental: new drivers, drivers without updated_at (created_at counts), newest row per driver_id', (t) =>
  withDb(async (db) => {
    await insertDriver(db, { driver_id: 'old', first_name: 'Ana', phone: '51911111111' });
    await refresh(db);
    await insertDriver(db, { driver_id: 'new', first_name: 'Rosa', phone: '51922222222' });
    await db.query(`INSERT INTO public.drivers (driver_id, park_id, first_name, phone, created_at, updated_at)
                    VALUES ('noupd', 'p', 'Luis', '51933333333', now(), NULL),
                           ('twice', 'p', 'Old', '51944444444', now() - interval '1 minute', now() - interval '1 minute'),
                           ('twice', 'p', 'New', '51955555555', now(), now())`);
    const s = await refresh(db);
    // 'old' is inside the hour of overlap behind the watermark but was indexed in the version
    // it has: not scanned again.
    t.like(s, { mode: 'incremental', drivers_scanned: 3, drivers_reindexed: 3, index_changed: true });
    const rows = await db.query<{ driver_id: string; phone_norm: string }>(
      `SELECT driver_id, phone_norm FROM canon.driver_index ORDER BY driver_id`);
    t.deepEqual(rows.map((r) => [r.driver_id, r.phone_norm]), [
      ['new', '922222222'], ['noupd', '933333333'], ['old', '911111111'], ['twice', '955555555']]);
  }));

test('the hour of overlap reads only row versions the last refresh could not see: a late commit with an older updated_at, a change in place; older changes without updated_at wait for the full refresh', (t) =>
  withDb(async (db) => {
    await insertDriver(db, { driver_id: 'now', first_name: 'Ana', phone: '51911111111' });
    await db.query(`INSERT INTO public.drivers (driver_id, park_id, first_name, phone, created_at, updated_at)
                    VALUES ('old', 'p', 'Luz', '51944444444', now() - interval '3 hours', now() - interval '3 hours')`);
    t.like(await refresh(db), { mode: 'full', drivers_reindexed: 2 });
    t.like(await refresh(db), { mode: 'incremental', drivers_scanned: 0 });
    // Committed after the refresh, stamped 20 minutes earlier (a long transaction upstream).
    await db.query(`INSERT INTO public.drivers (driver_id, park_id, first_name, phone, created_at, updated_at)
                    VALUES ('late', 'p', 'Rosa', '51922222222', now() - interval '20 minutes', now() - interval '20 minutes')`);
    t.like(await refresh(db), { mode: 'incremental', drivers_scanned: 1, drivers_reindexed: 1, index_changed: true });
    // Changed in place inside the hour, updated_at left as it was: a new row version, read.
    await db.query(`UPDATE public.drivers SET phone = '51933333333' WHERE driver_id = 'late'`);
    t.like(await refresh(db), { mode: 'incremental', drivers_scanned: 1, drivers_reindexed: 1 });
    // The same three hours back: outside the overlap, not seen incrementally ...
    await db.query(`UPDATE public.drivers SET phone = '51955555555' WHERE driver_id = 'old'`);
    t.like(await refresh(db), { mode: 'incremental', drivers_scanned: 0, drivers_reindexed: 0 });
    // ... but by the next full refresh (driver_index_full_refresh_hours).
    await db.query(`UPDATE canon.driver_index_state SET last_full_at = now() - interval '2 days'`);
    t.like(await refresh(db), { mode: 'full', drivers_reindexed: 1 });
    const rows = await db.query<{ driver_id: string; phone_norm: string }>(
      `SELECT driver_id, phone_norm FROM canon.driver_index WHERE driver_id IN ('late', 'old') ORDER BY driver_id`);
    t.deepEqual(rows.map((r) => [r.driver_id, r.phone_norm]), [['late', '933333333'], ['old', '955555555']]);
  }));

test('a driver_id with two rows: a late commit of its older row does not replace the newer one', (t) =>
  withDb(async (db) => {
    await db.query(`INSERT INTO public.drivers (driver_id, park_id, first_name, phone, created_at, updated_at)
                    VALUES ('twice', 'p', 'New', '51955555555', now(), now())`);
    await refresh(db);
    await db.query(`INSERT INTO public.drivers (driver_id, park_id, first_name, phone, created_at, updated_at)
                    VALUES ('twice', 'p', 'Old', '51944444444', now() - interval '10 minutes', now() - interval '10 minutes')`);
    t.like(await refresh(db), { mode: 'incremental', drivers_scanned: 1, drivers_reindexed: 0 });
    const [i] = await db.query<{ phone_norm: string }>(`SELECT phone_norm FROM canon.driver_index WHERE driver_id = 'twice'`);
    t.is(i!.phone_norm, '955555555');
  }));

test('a full refresh removes deleted drivers and marks the index changed', (t) =>
  withDb(async (db) => {
    await insertDriver(db, { driver_id: 'stay', first_name: 'Ana', phone: '51911111111' });
    await insertDriver(db, { driver_id: 'gone', first_name: 'Rosa', phone: '51922222222' });
    await refresh(db);
    await db.query(`DELETE FROM public.drivers WHERE driver_id = 'gone'`);
    t.like(await refresh(db), { mode: 'incremental', drivers_removed: 0, index_changed: false });
    await db.query(`UPDATE canon.driver_index_state SET last_full_at = now() - interval '2 days', changed_at = now() - interval '2 days'`);
    const full = await refresh(db);
    t.like(full, { mode: 'full', drivers_reindexed: 0, drivers_removed: 1, index_changed: true });
    const [c] = await db.query<{ recent: boolean }>(`SELECT changed_at > now() - interval '1 hour' AS recent FROM canon.driver_index_state`);
    t.true(c!.recent);
    t.deepEqual((await db.query<{ driver_id: string }>(`SELECT driver_id FROM canon.driver_index`)).map((r) => r.driver_id), ['stay']);
  }));

test('a few changed drivers among many probe the index by key: no sequential scan of driver_index or drivers', (t) =>
  withDb(async (db) => {
    await db.query(`INSERT INTO public.drivers (driver_id, park_id, first_name, phone, created_at, updated_at)
                    SELECT 'd' || g, 'p', 'Name' || g, (51900000000 + g)::text, now() - interval '3 days', now() - interval '3 days'
                    FROM generate_series(1, 20000) g`);
    await refresh(db);
    await insertDriver(db, { driver_id: 'recent', first_name: 'Ana', phone: '51911111111' }); // moves the watermark to now
    await refresh(db);
    await db.query(`ANALYZE public.drivers; ANALYZE canon.driver_index`);
    await db.query(`UPDATE public.drivers SET phone = '51977456321', updated_at = now() WHERE driver_id IN ('d7', 'd77', 'd777')`);
    const c = await db.connect();
    const seqScans = async () => {
      await c.query('SELECT pg_stat_force_next_flush()');
      await c.query('SELECT pg_stat_clear_snapshot()');
      const { rows } = await c.query<{ relname: string; seq_scan: string }>(
        `SELECT relname, seq_scan FROM pg_stat_all_tables WHERE relid IN ('canon.driver_index'::regclass, 'public.drivers'::regclass) ORDER BY relname`);
      return rows.map((r) => [r.relname, Number(r.seq_scan)]);
    };
    const before = await seqScans();
    const { rows: [r] } = await c.query<{ s: Stats }>(`SELECT canon.refresh_driver_index(NULL) AS s`);
    const after = await seqScans();
    t.like(r!.s, { mode: 'incremental', drivers_scanned: 3, drivers_reindexed: 3, index_changed: true });
    t.deepEqual(after, before);
  }));
