// canon.mark_retries_due (step 4b): which OPEN unmatched leads a driver index change makes
// due for a retry (canon.identity_unmatched.retry_due), and the check's own bookkeeping
// (driver_index_state.retry_checked_at, the lost keys it prunes).
import test from 'ava';
import { type TestDb, withDb } from '../helpers/db.js';
import { insertDriver, insertLead } from '../helpers/rows.js';
import { insertUnmatched, step } from '../helpers/steps.js';

interface Stats {
  retry_check: 'all_open' | 'changed_keys' | 'no_change';
  retries_marked_due: number;
  retry_changed_keys: number | null;
  driver_index_changed_at: string | null;
}

const markRetries = (db: TestDb) => step<Stats>(db.pool, 'canon.mark_retries_due(NULL)');

async function dueKeys(db: TestDb): Promise<string[]> {
  const rows = await db.query<{ source_pk: string }>(`SELECT source_pk FROM canon.identity_unmatched WHERE retry_due ORDER BY source_pk`);
  return rows.map((r) => r.source_pk);
}

/** Leads keyed (step 5a) and left OPEN, not due: as after their last attempt. */
async function openLeads(db: TestDb, leads: { external_id: string; park_phone?: string; asset_plate_number?: string }[]): Promise<void> {
  for (const l of leads) await insertLead(db, l);
  await db.query(`SELECT canon.key_changed_leads(NULL)`);
  for (const l of leads) await insertUnmatched(db, l.external_id);
}

test('never checked before: every OPEN lead not yet due is marked due, RESOLVED and IGNORED ones are not', (t) =>
  withDb('retries_due', async (db) => {
    await insertUnmatched(db, 'open');
    await insertUnmatched(db, 'open-due', { retry_due: true });
    await insertUnmatched(db, 'resolved', { status: 'RESOLVED' });
    await insertUnmatched(db, 'ignored', { status: 'IGNORED' });
    t.deepEqual(await markRetries(db), { retry_check: 'all_open', retries_marked_due: 1, retry_changed_keys: null, driver_index_changed_at: null });
    t.deepEqual(await dueKeys(db), ['open', 'open-due']);
    const [s] = await db.query<{ n: number; checked: boolean }>(
      `SELECT count(*)::int AS n, bool_and(retry_checked_at IS NOT NULL) AS checked FROM canon_internal.driver_index_state`);
    t.deepEqual(s, { n: 1, checked: true });
  }));

test('a driver indexed since the last check with a lead\'s phone makes only that OPEN lead due; a check with no change since marks none', (t) =>
  withDb('retries_due', async (db) => {
    await openLeads(db, [
      { external_id: 'same-phone', park_phone: '+51 977 456 321' },
      { external_id: 'other-phone', park_phone: '911111111' },
      { external_id: 'plate-only', asset_plate_number: 'ABC123' },
    ]);
    await insertLead(db, { external_id: 'resolved', park_phone: '977456321' });
    await db.query(`SELECT canon.key_changed_leads(NULL)`);
    await insertUnmatched(db, 'resolved', { status: 'RESOLVED' });
    await markRetries(db);
    await db.query(`UPDATE canon.identity_unmatched SET retry_due = false`);

    await insertDriver(db, { driver_id: 'd1', first_name: 'Juan', last_name: 'Perez', phone: '51977456321' });
    await db.query(`SELECT canon.refresh_driver_index(NULL)`);
    const changed = await markRetries(db);
    t.like(changed, { retry_check: 'changed_keys', retries_marked_due: 1, retry_changed_keys: 1 });
    t.truthy(changed.driver_index_changed_at);
    t.deepEqual(await dueKeys(db), ['same-phone']);

    await db.query(`UPDATE canon.identity_unmatched SET retry_due = false`);
    t.like(await markRetries(db), { retry_check: 'no_change', retries_marked_due: 0, retry_changed_keys: null });
    t.deepEqual(await dueKeys(db), []);
  }));

test('a plate a driver lost makes the OPEN lead that had it due, and the logged change is pruned once checked', (t) =>
  withDb('retries_due', async (db) => {
    await insertDriver(db, { driver_id: 'd1', first_name: 'Ana', last_name: 'Lopez', car_number: 'ABC123' });
    await db.query(`SELECT canon.refresh_driver_index(NULL)`);
    await openLeads(db, [
      { external_id: 'old-plate', asset_plate_number: 'abc-123' },
      { external_id: 'unrelated', asset_plate_number: 'QQQ111' },
    ]);
    await markRetries(db);
    await db.query(`UPDATE canon.identity_unmatched SET retry_due = false`);

    await db.query(`UPDATE public.drivers SET car_number = 'ZZZ999', updated_at = now() WHERE driver_id = 'd1'`);
    await db.query(`SELECT canon.refresh_driver_index(NULL)`);
    const [logged] = await db.query<{ plates: string[] }>(`SELECT array_agg(plate_norm) AS plates FROM canon_internal.driver_index_key_changes`);
    t.deepEqual(logged!.plates, ['ABC123']);
    // the lost plate and the new one
    t.like(await markRetries(db), { retry_check: 'changed_keys', retries_marked_due: 1, retry_changed_keys: 2 });
    t.deepEqual(await dueKeys(db), ['old-plate']);
    t.deepEqual(await db.query(`SELECT id FROM canon_internal.driver_index_key_changes`), []);
  }));
