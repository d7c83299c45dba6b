// canon.bound_lock_timeout: lock waits of the transaction end after 30 s, or sooner when
// the session asked for less; never longer, whatever the session asked; SET LOCAL, so the
// session's own value is back after the transaction.
import test from 'ava';
import { freshDb } from '../helpers/db.js';

for (const [session, inForce] of [['0', '30s'], ['10min', '30s'], ['30s', '30s'], ['2s', '2s'], ['150ms', '150ms']] as const) {
  test(`a session with lock_timeout = ${session} waits at most ${inForce} inside the transaction, and keeps ${session} after it`, async (t) => {
    const db = await freshDb(t, 'bound_lock');
    const c = await db.connect();
    await c.query(`SET lock_timeout = '${session}'`);
    await c.query('BEGIN');
    const r = await c.query<{ v: string }>(`SELECT canon.bound_lock_timeout() AS v`);
    const shown = await c.query<{ lock_timeout: string }>(`SHOW lock_timeout`);
    await c.query('COMMIT');
    const after = await c.query<{ lock_timeout: string }>(`SHOW lock_timeout`);
    t.is(r.rows[0]!.v, inForce);
    t.is(shown.rows[0]!.lock_timeout, inForce);
    t.is(after.rows[0]!.lock_timeout, session);
  });
}
