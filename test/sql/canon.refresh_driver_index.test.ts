// canon.refresh_driver_index (pipeline step 4): incremental and full refresh of the
// driver matching index, and the changed_at mark that decides whether unmatched leads
// are worth retrying.
import test from 'ava';
import { type TestDb, withDb } from '../helpers/db.js';
import { insertDriver } from '../helpers/rows.js';

type Stats = {
  mode: string;
  drivers_scanned: number;
  drivers_with_future_timestamp: number;
  drivers_without_timestamp: number;
  drivers_reindexed: number;
  drivers_removed: number;
  index_changed: boolean;
  first_build_bulk: boolean;
  indexes_created: number;
};

/** The definition of every index of canon_internal.driver_index, by name. */
async function indexDefinitions(db: TestDb): Promise<Record<string, string>> {
  const rows = await db.query<{ indexname: string; indexdef: string }>(
    `SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'canon_internal' AND tablename = 'driver_index' ORDER BY indexname`);
  return Object.fromEntries(rows.map((r) => [r.indexname, r.indexdef]));
}

async function refresh(db: TestDb): Promise<Stats> {
  const [r] = await db.query<{ s: Stats }>(`SELECT canon.refresh_driver_index(NULL) AS s`);
  return r!.s;
}

async function changedAt(db: TestDb): Promise<string | null> {
  const [r] = await db.query<{ c: string | null }>(`SELECT changed_at::text AS c FROM canon_internal.driver_index_state`);
  return r?.c ?? null;
}

test('changed_at moves only when index rows are written or removed', (t) =>
  withDb('driver_index', async (db) => {
    await insertDriver(db, { driver_id: 'd1', first_name: 'Juan', last_name: 'Perez', phone: '51977456321' });
    const full = await refresh(db);
    t.like(full, { mode: 'full', drivers_scanned: 1, drivers_reindexed: 1, index_changed: true });
    const first = await changedAt(db);
    t.truthy(first);

    const idle = await refresh(db);
    t.like(idle, { mode: 'incremental', drivers_reindexed: 0, index_changed: false });
    t.is(await changedAt(db), first);

    // A touched driver whose matching values are the same: read again, not re-indexed.
    await db.query(`UPDATE public.drivers SET work_status = 'busy', updated_at = now() WHERE driver_id = 'd1'`);
    const touched = await refresh(db);
    t.like(touched, { drivers_scanned: 1, drivers_reindexed: 0, index_changed: false });
    t.is(await changedAt(db), first);

    await db.query(`UPDATE public.drivers SET phone = '51900000000', updated_at = now() WHERE driver_id = 'd1'`);
    const changed = await refresh(db);
    t.like(changed, { mode: 'incremental', drivers_reindexed: 1, index_changed: true });
    t.not(await changedAt(db), first);
    const [i] = await db.query<{ phone_norm: string }>(`SELECT phone_norm FROM canon_internal.driver_index WHERE driver_id = 'd1'`);
    t.is(i!.phone_norm, '900000000');
  }));

test('incremental: new drivers, drivers without updated_at (created_at counts), newest row per driver_id', (t) =>
  withDb('driver_index', async (db) => {
    await insertDriver(db, { driver_id: 'old', first_name: 'Ana', phone: '51911111111' });
    await refresh(db);
    await insertDriver(db, { driver_id: 'new', first_name: 'Rosa', phone: '51922222222' });
    await db.query(`INSERT INTO public.drivers (driver_id, park_id, first_name, phone, created_at, updated_at)
                    VALUES ('noupd', 'p', 'Luis', '51933333333', now(), NULL),
                           ('twice', 'p', 'Old', '51944444444', now() - interval '1 minute', now() - interval '1 minute'),
                           ('twice', 'p', 'New', '51955555555', now(), now())`);
    const s = await refresh(db);
    t.like(s, { mode: 'incremental', drivers_reindexed: 3, index_changed: true });
    const rows = await db.query<{ driver_id: string; phone_norm: string }>(
      `SELECT driver_id, phone_norm FROM canon_internal.driver_index ORDER BY driver_id`);
    t.deepEqual(rows.map((r) => [r.driver_id, r.phone_norm]), [
      ['new', '922222222'], ['noupd', '933333333'], ['old', '911111111'], ['twice', '955555555']]);
  }));

test('every driver row written since the last read is read by the next run, whatever its timestamps: a late commit stamped hours earlier, a change in place, updated_at in 2099, no timestamp at all', (t) =>
  withDb('driver_index', async (db) => {
    await insertDriver(db, { driver_id: 'now', first_name: 'Ana', phone: '51911111111' });
    await db.query(`INSERT INTO public.drivers (driver_id, park_id, first_name, phone, created_at, updated_at)
                    VALUES ('old', 'p', 'Luz', '51944444444', now() - interval '3 hours', now() - interval '3 hours')`);
    t.like(await refresh(db), { mode: 'full', drivers_reindexed: 2 });
    // Committed after the refresh, stamped five hours earlier (a long transaction upstream).
    await db.query(`INSERT INTO public.drivers (driver_id, park_id, first_name, phone, created_at, updated_at)
                    VALUES ('late', 'p', 'Rosa', '51922222222', now() - interval '5 hours', now() - interval '5 hours')`);
    t.like(await refresh(db), { mode: 'incremental', drivers_reindexed: 1, index_changed: true });
    // Changed in place, updated_at left three hours back.
    await db.query(`UPDATE public.drivers SET phone = '51955555555' WHERE driver_id = 'old'`);
    t.like(await refresh(db), { mode: 'incremental', drivers_reindexed: 1 });
    // A driver from the future blinds nothing; one without timestamps is read all the same.
    await db.query(`INSERT INTO public.drivers (driver_id, park_id, first_name, phone, created_at, updated_at)
                    VALUES ('future', 'p', 'Eva', '51966666666', '2099-01-01', '2099-01-01'),
                           ('untimed', 'p', 'Noe', '51977777777', NULL, NULL)`);
    t.like(await refresh(db), { mode: 'incremental', drivers_reindexed: 2, drivers_with_future_timestamp: 1, drivers_without_timestamp: 1 });
    await insertDriver(db, { driver_id: 'after', first_name: 'Ivo', phone: '51988888888' });
    t.like(await refresh(db), { mode: 'incremental', drivers_reindexed: 1 });
    const rows = await db.query<{ driver_id: string; phone_norm: string }>(
      `SELECT driver_id, phone_norm FROM canon_internal.driver_index WHERE driver_id IN ('late', 'old', 'future', 'untimed', 'after') ORDER BY driver_id`);
    t.deepEqual(rows.map((r) => [r.driver_id, r.phone_norm]), [
      ['after', '988888888'], ['future', '966666666'], ['late', '922222222'], ['old', '955555555'], ['untimed', '977777777']]);
    const odd = await db.query<{ driver_id: string; why: string }>(`SELECT driver_id, why FROM ops.v_drivers_odd_timestamps ORDER BY driver_id`);
    t.deepEqual(odd.map((r) => [r.driver_id, r.why]), [['future', 'FUTURE_TIMESTAMP'], ['untimed', 'NO_TIMESTAMP']]);
  }));

test('a driver row written in a subtransaction that commits after a refresh read is read by the next one', (t) =>
  withDb('driver_index', async (db) => {
    await insertDriver(db, { driver_id: 'first', first_name: 'Ana', phone: '51911111111' });
    await refresh(db);
    const writer = await db.connect();
    await writer.query('BEGIN');
    await writer.query(`INSERT INTO public.module_ct_cabinet_leads (external_id, lead_created_at) VALUES ('xid', now())`); // the parent's xid
    await writer.query('SAVEPOINT s');
    await writer.query(`INSERT INTO public.drivers (driver_id, park_id, first_name, phone) VALUES ('sub', 'p', 'Sol', '51933333333')`);
    await writer.query('RELEASE SAVEPOINT s');
    await refresh(db); // reads while the writer is open: does not see 'sub'
    await writer.query('COMMIT');
    t.like(await refresh(db), { mode: 'incremental', drivers_reindexed: 1 });
    t.deepEqual(await db.query(`SELECT phone_norm FROM canon_internal.driver_index WHERE driver_id = 'sub'`), [{ phone_norm: '933333333' }]);
  }));

test('a driver_id with two rows: a late commit of its older row does not replace the newer one', (t) =>
  withDb('driver_index', async (db) => {
    await db.query(`INSERT INTO public.drivers (driver_id, park_id, first_name, phone, created_at, updated_at)
                    VALUES ('twice', 'p', 'New', '51955555555', now(), now())`);
    await refresh(db);
    await db.query(`INSERT INTO public.drivers (driver_id, park_id, first_name, phone, created_at, updated_at)
                    VALUES ('twice', 'p', 'Old', '51944444444', now() - interval '10 minutes', now() - interval '10 minutes')`);
    t.like(await refresh(db), { mode: 'incremental', drivers_reindexed: 0 });
    const [i] = await db.query<{ phone_norm: string }>(`SELECT phone_norm FROM canon_internal.driver_index WHERE driver_id = 'twice'`);
    t.is(i!.phone_norm, '955555555');
  }));

test('a full refresh removes deleted drivers and marks the index changed', (t) =>
  withDb('driver_index', async (db) => {
    await insertDriver(db, { driver_id: 'stay', first_name: 'Ana', phone: '51911111111' });
    await insertDriver(db, { driver_id: 'gone', first_name: 'Rosa', phone: '51922222222' });
    await refresh(db);
    await db.query(`DELETE FROM public.drivers WHERE driver_id = 'gone'`);
    t.like(await refresh(db), { mode: 'incremental', drivers_removed: 0, index_changed: false });
    await db.query(`UPDATE canon_internal.driver_index_state SET last_full_at = now() - interval '2 days', changed_at = now() - interval '2 days'`);
    const full = await refresh(db);
    t.like(full, { mode: 'full', drivers_reindexed: 0, drivers_removed: 1, index_changed: true });
    const [c] = await db.query<{ recent: boolean }>(`SELECT changed_at > now() - interval '1 hour' AS recent FROM canon_internal.driver_index_state`);
    t.true(c!.recent);
    t.deepEqual((await db.query<{ driver_id: string }>(`SELECT driver_id FROM canon_internal.driver_index`)).map((r) => r.driver_id), ['stay']);
  }));

test('a few changed drivers among many probe the index by key: one pass over the drivers, no sequential scan of driver_index', (t) =>
  withDb('driver_index', async (db) => {
    await db.query(`INSERT INTO public.drivers (driver_id, park_id, first_name, phone, created_at, updated_at)
                    SELECT 'd' || g, 'p', 'Name' || g, (51900000000 + g)::text, now() - interval '3 days', now() - interval '3 days'
                    FROM generate_series(1, 20000) g`);
    await refresh(db);
    await refresh(db);
    await db.query(`ANALYZE public.drivers; ANALYZE canon_internal.driver_index`);
    const c = await db.connect();
    // Written long enough before the run for the statistics to say so (as between two runs).
    await c.query(`UPDATE public.drivers SET phone = '51977456321', updated_at = now() WHERE driver_id IN ('d7', 'd77', 'd777')`);
    const seqScans = async () => {
      await c.query('SELECT pg_stat_force_next_flush()');
      await c.query('SELECT pg_stat_clear_snapshot()');
      const { rows } = await c.query<{ relname: string; seq_scan: string }>(
        `SELECT relname, seq_scan FROM pg_stat_all_tables WHERE relid IN ('canon_internal.driver_index'::regclass, 'public.drivers'::regclass) ORDER BY relname`);
      return rows.map((r) => [r.relname, Number(r.seq_scan)]);
    };
    const before = await seqScans();
    const { rows: [r] } = await c.query<{ s: Stats }>(`SELECT canon.refresh_driver_index(NULL) AS s`);
    const after = await seqScans();
    t.like(r!.s, { mode: 'incremental', drivers_reindexed: 3, index_changed: true, odd_timestamps: 'TRACKED' });
    // drivers: the one pass that finds what was written, their rows then read by the
    // upstream index on driver_id; the driver index only probed
    const [drivers, index] = [after.find((a) => a[0] === 'drivers')!, after.find((a) => a[0] === 'driver_index')!];
    t.is(Number(index[1]), Number(before.find((b) => b[0] === 'driver_index')![1]));
    t.is(Number(drivers[1]) - Number(before.find((b) => b[0] === 'drivers')![1]), 1);
  }));

/** One refresh's odd-timestamp figures: [future, without timestamp, how counted]. */
async function odd(db: TestDb): Promise<[number, number, string]> {
  const [r] = await db.query<{ s: Stats & { odd_timestamps: string } }>(`SELECT canon.refresh_driver_index(NULL) AS s`);
  return [r!.s.drivers_with_future_timestamp, r!.s.drivers_without_timestamp, r!.s.odd_timestamps];
}

async function oddDrift(db: TestDb): Promise<string[]> {
  return (await db.query<{ example: string }>(`SELECT example FROM canon.driver_odd_counts_drift()`)).map((r) => r.example);
}

test('odd timestamps are counted from the odd versions of the last count and the versions written since: deletes, updates, new rows and the clock move the counts', (t) =>
  withDb('driver_index_odd_counts', async (db) => {
    await db.query(`INSERT INTO public.drivers (driver_id, park_id, first_name, phone, created_at, updated_at)
                    VALUES ('future', 'p', 'Eva', '51966666666', '2099-01-01', '2099-01-01'),
                           ('untimed', 'p', 'Noe', '51977777777', NULL, NULL),
                           ('plain', 'p', 'Ana', '51988888888', now(), now())`);
    t.deepEqual(await odd(db), [1, 1, 'COUNTED'], 'the full refresh counts every row');
    t.deepEqual(await odd(db), [1, 1, 'TRACKED'], 'nothing written: the same counts, from the two versions tracked');
    await db.query(`DELETE FROM public.drivers WHERE driver_id = 'future'`);
    t.deepEqual(await odd(db), [0, 1, 'TRACKED'], 'a deleted version is no longer there');
    await db.query(`UPDATE public.drivers SET updated_at = '2099-06-01' WHERE driver_id = 'plain'`);
    t.deepEqual(await odd(db), [1, 1, 'TRACKED'], 'only updated_at changed: a new row version');
    await db.query(`UPDATE public.drivers SET updated_at = now(), created_at = now() WHERE driver_id = 'untimed'`);
    t.deepEqual(await odd(db), [1, 0, 'TRACKED'], 'the untimed row stamped: its new version is not odd, its old one is gone');
    await db.query(`INSERT INTO public.drivers (driver_id, park_id, first_name, phone, created_at, updated_at)
                    VALUES ('quiet', 'p', 'Luz', '51955555555', NULL, NULL)`);
    t.deepEqual(await odd(db), [1, 1, 'TRACKED']);
    // A row dated a few hours past the threshold stops being future as the clock moves on,
    // with nothing written: here the business clock jumps 19 hours (Lima to Kiritimati) and back.
    await db.query(`UPDATE public.drivers SET updated_at = (now() AT TIME ZONE 'America/Lima') + interval '1 day 5 hours' WHERE driver_id = 'plain'`);
    t.deepEqual(await odd(db), [1, 1, 'TRACKED']);
    await db.query(`UPDATE canon.settings SET value = 'Pacific/Kiritimati' WHERE key = 'business_timezone'`);
    t.deepEqual(await odd(db), [0, 1, 'TRACKED'], 'the threshold passed the row');
    await db.query(`UPDATE canon.settings SET value = 'America/Lima' WHERE key = 'business_timezone'`);
    t.deepEqual(await odd(db), [1, 1, 'COUNTED'], 'the threshold moved back: every row counted again');
    t.deepEqual(await odd(db), [1, 1, 'TRACKED']);
    t.deepEqual(await oddDrift(db), []);
  }));

test('odd timestamps: a slot freed by DELETE and VACUUM and reused by another row is not the version counted, a frozen version still is, and a rewritten table is counted again', (t) =>
  withDb('driver_index_odd_counts', async (db) => {
    await db.query(`ALTER TABLE public.drivers SET (autovacuum_enabled = off)`);
    await db.query(`INSERT INTO public.drivers (driver_id, park_id, first_name, phone, created_at, updated_at)
                    VALUES ('future', 'p', 'Eva', '51966666666', '2099-01-01', '2099-01-01'),
                           ('untimed', 'p', 'Noe', '51977777777', NULL, NULL)`);
    t.deepEqual(await odd(db), [1, 1, 'COUNTED']);
    const slot = async (id: string) =>
      (await db.query<{ c: string }>(`SELECT ctid::text AS c FROM public.drivers WHERE driver_id = $1`, [id]))[0]?.c;
    const futureSlot = await slot('future');
    // the future row deleted and vacuumed away; a plain row takes its slot in the same page
    await db.query(`DELETE FROM public.drivers WHERE driver_id = 'future'`);
    await db.query(`VACUUM public.drivers`);
    await db.query(`INSERT INTO public.drivers (driver_id, park_id, first_name, phone, created_at, updated_at)
                    VALUES ('reuser', 'p', 'Ana', '51988888888', now(), now())`);
    t.is(await slot('reuser'), futureSlot, 'the new row sits where the counted version was');
    t.deepEqual(await odd(db), [0, 1, 'TRACKED'], 'another version in the slot: not counted as the old one');
    t.deepEqual(await oddDrift(db), []);
    // a frozen version keeps its xmin: still the version counted
    await db.query(`VACUUM (FREEZE) public.drivers`);
    t.deepEqual(await odd(db), [0, 1, 'TRACKED']);
    // VACUUM FULL moves every row (ctids change, xmins stay): every row counted again
    await db.query(`UPDATE public.drivers SET updated_at = '2099-02-02' WHERE driver_id = 'reuser'`);
    t.deepEqual(await odd(db), [1, 1, 'TRACKED']);
    await db.query(`VACUUM FULL public.drivers`);
    t.deepEqual(await odd(db), [1, 1, 'COUNTED'], 'the table was rewritten');
    t.deepEqual(await odd(db), [1, 1, 'TRACKED']);
    t.deepEqual(await oddDrift(db), []);
  }));

test('odd timestamps: a writer open across a refresh (a future row inserted, a tracked one deleted) is counted by the next refresh after its commit', (t) =>
  withDb('driver_index_odd_counts', async (db) => {
    await db.query(`INSERT INTO public.drivers (driver_id, park_id, first_name, phone, created_at, updated_at)
                    VALUES ('untimed', 'p', 'Noe', '51977777777', NULL, NULL)`);
    t.deepEqual(await odd(db), [0, 1, 'COUNTED']);
    const w = await db.connect();
    try {
      await w.query('BEGIN');
      await w.query(`INSERT INTO public.drivers (driver_id, park_id, first_name, phone, created_at, updated_at)
                     VALUES ('late', 'p', 'Eva', '51966666666', '2099-01-01', '2099-01-01')`);
      await w.query(`DELETE FROM public.drivers WHERE driver_id = 'untimed'`);
      t.deepEqual(await odd(db), [0, 1, 'TRACKED'], 'not committed yet: the counts as they were');
      await w.query('COMMIT');
    } finally {
      await w.end();
    }
    t.deepEqual(await odd(db), [1, 0, 'TRACKED'], 'committed after the read: counted by the next refresh');
    t.deepEqual(await oddDrift(db), []);
  }));

test('doctor names a tracked odd version removed by hand: the next run would not count it', (t) =>
  withDb('driver_index_odd_counts', async (db) => {
    await db.query(`INSERT INTO public.drivers (driver_id, park_id, first_name, phone, created_at, updated_at)
                    VALUES ('future', 'p', 'Eva', '51966666666', '2099-01-01', '2099-01-01'),
                           ('plain', 'p', 'Ana', '51988888888', now(), now())`);
    t.deepEqual(await odd(db), [1, 0, 'COUNTED']);
    t.deepEqual(await oddDrift(db), []);
    await db.query(`UPDATE canon_internal.driver_index_state SET odd_versions = '{}', odd_version_xmins = '{}'`);
    t.deepEqual(await oddDrift(db), ['odd driver timestamps: the next run would count 0 future and 0 without timestamp, counted now 1 and 0']);
    await db.query(`SELECT ops.repair_caches()`);
    t.deepEqual(await oddDrift(db), []);
    t.deepEqual(await odd(db), [1, 0, 'COUNTED'], 'repaired: the next run counts every row');
  }));

test('the first build fills the empty index and creates its secondary indexes after the rows, each as the migration made it', (t) =>
  withDb('driver_index', async (db) => {
    const migrated = await indexDefinitions(db);
    const listed = await db.query<{ index_name: string }>(`SELECT index_name FROM canon.driver_index_secondary_indexes() ORDER BY 1`);
    t.deepEqual(listed.map((r) => r.index_name), Object.keys(migrated).filter((n) => n !== 'driver_index_pkey').sort(), 'the list names every index but the key');
    for (let i = 0; i < 30; i++) await insertDriver(db, { driver_id: `d${i}`, first_name: 'Ana', last_name: `Rojas${i}`, phone: `5191111${String(i).padStart(4, '0')}`, car_number: `ABC${100 + i}` });
    t.like(await refresh(db), { mode: 'full', drivers_reindexed: 30, first_build_bulk: true, indexes_created: 6 });
    t.deepEqual(await indexDefinitions(db), migrated);
    // the indexes hold the rows: the near-plate GIN finds ABC105 from ABC1O5's keys
    const probe = await db.connect();
    try {
      await probe.query('SET enable_seqscan = off');
      const near = await probe.query<{ ids: string[] }>(
        `SELECT array_agg(driver_id ORDER BY driver_id) AS ids FROM canon_internal.driver_index
         WHERE canon.plate_edit_hashes(plate_norm) && canon.plate_edit_hashes('ABC1O5') AND plate_norm IS NOT NULL`);
      t.deepEqual(near.rows[0]!.ids, ['d15', 'd25', 'd5'], 'ABC115, ABC125 and ABC105: each one character from ABC1O5');
    } finally {
      await probe.end();
    }
    // a later build inserts row by row into the indexed table
    await insertDriver(db, { driver_id: 'late', first_name: 'Sol', phone: '51922222222' });
    t.like(await refresh(db), { mode: 'incremental', drivers_reindexed: 1, first_build_bulk: false, indexes_created: 0 });
  }));

test('a first build while another session reads the index does not wait for it: rows go in with the indexes in place', (t) =>
  withDb('driver_index', async (db) => {
    const migrated = await indexDefinitions(db);
    await insertDriver(db, { driver_id: 'd1', first_name: 'Ana', phone: '51911111111' });
    const reader = await db.connect();
    try {
      await reader.query('BEGIN');
      await reader.query('SELECT count(*) FROM canon_internal.driver_index');
      t.like(await refresh(db), { mode: 'full', drivers_reindexed: 1, first_build_bulk: false, indexes_created: 0 });
      await reader.query('COMMIT');
    } finally {
      await reader.end();
    }
    t.deepEqual(await indexDefinitions(db), migrated);
  }));

test('an index of the driver index dropped by hand is created again by the next build', (t) =>
  withDb('driver_index', async (db) => {
    const migrated = await indexDefinitions(db);
    await insertDriver(db, { driver_id: 'd1', first_name: 'Ana', phone: '51911111111' });
    await refresh(db);
    await db.query('DROP INDEX canon_internal.driver_index_plate_edit_keys_idx');
    t.like(await refresh(db), { indexes_created: 1 });
    t.deepEqual(await indexDefinitions(db), migrated);
  }));
