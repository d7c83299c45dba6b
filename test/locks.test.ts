// src/locks.ts: the TypeScript side of bounded lock waits. A session bound keeps a shorter
// lock_timeout the session asked for; the per-statement Queryable of the worker's alert
// check fails on a locked table within the bound and leaves the pooled connection as it was.
import test from 'ava';
import pg from 'pg';
import { boundLockWaits, boundedQueryable, LOCK_TIMEOUT_MS } from '../src/locks.js';
import { freshDb } from './helpers/db.js';

test('the session bound is 30 s, unless the session asked for less', async (t) => {
  const db = await freshDb(t, 'locks_session');
  for (const [asked, inForce] of [['0', '30s'], ['5min', '30s'], ['2s', '2s']] as const) {
    const c = await db.connect();
    await c.query(`SET lock_timeout = '${asked}'`);
    await boundLockWaits(c, 'session');
    const r = await c.query<{ lock_timeout: string }>(`SHOW lock_timeout`);
    t.is(r.rows[0]!.lock_timeout, inForce, `asked ${asked}`);
  }
  t.is(LOCK_TIMEOUT_MS, 30_000);
});

test('a bounded statement on a locked table fails with 55P03 within the bound; the pooled connection keeps its own lock_timeout', async (t) => {
  const db = await freshDb(t, 'locks_queryable');
  const pool = new pg.Pool({ connectionString: db.url, max: 1, options: '-c lock_timeout=1s' });
  t.teardown(() => pool.end());
  const q = boundedQueryable(async (fn) => {
    const c = await pool.connect();
    try {
      return await fn(c);
    } finally {
      c.release();
    }
  });
  const locker = await db.connect();
  await locker.query(`BEGIN; LOCK TABLE canon.settings IN ACCESS EXCLUSIVE MODE`);
  const started = Date.now();
  await t.throwsAsync(q.query(`SELECT canon.setting('business_timezone')`), { code: '55P03' });
  t.true(Date.now() - started < 10_000);
  await locker.query('ROLLBACK');
  const ok = await q.query<{ v: string }>(`SELECT canon.setting('business_timezone') AS v`);
  t.is(ok.rows[0]!.v, 'America/Lima');
  const after = await pool.query<{ lock_timeout: string; in_tx: boolean }>(`SELECT current_setting('lock_timeout') AS lock_timeout, now() <> statement_timestamp() AS in_tx`);
  t.deepEqual(after.rows[0], { lock_timeout: '1s', in_tx: false });
});
