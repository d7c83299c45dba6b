// canon.mark_retries_due (step 4b): which OPEN unmatched leads a driver index change makes
// due for a retry (canon.identity_unmatched.retry_due): those sharing a key with a changed
// driver, and those the probabilistic tier would pair with it (a plate one edit away with a
// shared name token, a rare name key), then retried and linked or reviewed by the next run;
// and the check's own bookkeeping (driver_index_state.retry_checked_at, the lost keys it prunes).
import test from 'ava';
import { type TestDb, withDb } from '../helpers/db.js';
import { linkOf, runPipeline, unmatchedOf } from '../helpers/pipeline.js';
import { addDays, businessToday, insertCommonNameDrivers, insertDriver, insertLead } from '../helpers/rows.js';
import { insertUnmatched, step } from '../helpers/steps.js';

interface Stats {
  retry_check: 'all_open' | 'changed_keys' | 'no_change';
  retries_marked_due: number;
  retries_marked_due_by_tier: number | null;
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
    t.deepEqual(await markRetries(db), { retry_check: 'all_open', retries_marked_due: 1, retries_marked_due_by_tier: null, retry_changed_keys: null, driver_index_changed_at: null });
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
    t.like(changed, { retry_check: 'changed_keys', retries_marked_due: 1, retries_marked_due_by_tier: 0, retry_changed_keys: 1 });
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
    const logged = await db.query(`SELECT change, phone_norm, plate_norm, name_norm FROM canon_internal.driver_index_key_changes`);
    t.deepEqual(logged, [{ change: 'KEYS_CHANGED', phone_norm: null, plate_norm: 'ABC123', name_norm: 'ANA LOPEZ' }], 'the lost plate, with the name it went with');
    // the lost plate and the new one
    t.like(await markRetries(db), { retry_check: 'changed_keys', retries_marked_due: 1, retry_changed_keys: 2 });
    t.deepEqual(await dueKeys(db), ['old-plate']);
    t.deepEqual(await db.query(`SELECT id FROM canon_internal.driver_index_key_changes`), []);
  }));

// ---- the probabilistic tier's blocks: a near plate, a rare name

interface Link {
  match_rule: string;
  evidence: { driver: { driver_id: string }; contributions: { plate: { level: string; note: string | null } } };
}

async function tierLink(db: TestDb, key: string): Promise<Link | undefined> {
  const [r] = await db.query<Link>(
    `SELECT match_rule, evidence FROM canon.identity_links WHERE source_table = 'module_ct_cabinet_leads' AND source_pk = $1`, [key]);
  return r;
}

for (const [edit, plate, note] of [
  ['a character changed', 'ABC128', '3/8'],
  ['a character missing', 'AB123', 'extra C'],
  ['two characters swapped', 'BAC123', 'swapped AB/BA'],
] as const) {
  test(`a driver arriving on a plate one edit from an OPEN lead's (${edit}: ${plate} for ABC123) makes it due and the tier links it; plates two edits away did not`, (t) =>
    withDb('retries_due_tier', async (db) => {
      await insertCommonNameDrivers(db);
      const today = await businessToday(db);
      const lead = await insertLead(db, { first_name: 'Juan Carlos', last_name: 'Quispe Mamani', asset_plate_number: 'ABC-123' });
      await runPipeline(db);
      t.is((await unmatchedOf(db, lead.key))?.reason_code, 'NO_CANDIDATES');

      // The same name on plates two edits away: ABD128 shares no deletion key with ABC123,
      // XABC12 shares one (ABC12) but is an insertion and a deletion apart.
      await insertDriver(db, { driver_id: 'far1', first_name: 'Juan', middle_name: 'Carlos', last_name: 'Quispe Mamani', car_number: 'ABD128', hire_date: addDays(today, 1) });
      await insertDriver(db, { driver_id: 'far2', first_name: 'Juan', middle_name: 'Carlos', last_name: 'Quispe Mamani', car_number: 'XABC12', hire_date: addDays(today, 1) });
      const far = await runPipeline(db);
      t.like(far.stats['match'], { retry_check: 'changed_keys', retries_marked_due: 0, retries_marked_due_by_tier: 0, leads_selected: 0 });
      t.is((await unmatchedOf(db, lead.key))?.attempts, 1);

      await insertDriver(db, { driver_id: 'near', first_name: 'Juan', middle_name: 'Carlos', last_name: 'Quispe Mamani', car_number: plate, hire_date: addDays(today, 1) });
      const near = await runPipeline(db);
      t.like(near.stats['match'], { retries_marked_due: 1, retries_marked_due_by_tier: 1, leads_selected: 1 });
      const link = await tierLink(db, lead.key);
      t.is(link?.match_rule, 'R4_PROBABILISTIC');
      t.is(link?.evidence.driver.driver_id, 'near');
      t.is(link?.evidence.contributions.plate.level, 'ONE_EDIT');
      t.is(link?.evidence.contributions.plate.note, note);
      t.is((await unmatchedOf(db, lead.key))?.status, 'RESOLVED');
    }));
}

test('a driver sharing only a common name token with an OPEN lead does not make it due; one with its rare surnames does, and the tier links the changed car', (t) =>
  withDb('retries_due_tier', async (db) => {
    await insertCommonNameDrivers(db);
    const today = await businessToday(db);
    const lead = await insertLead(db, { first_name: 'Rosa', last_name: 'Huillca Ccahuana', asset_plate_number: 'NEW999' });
    await runPipeline(db);
    t.is((await unmatchedOf(db, lead.key))?.reason_code, 'NO_CANDIDATES');

    // ROSA: one of the common given names (about 150 of the 2,000 drivers).
    await insertDriver(db, { driver_id: 'common', first_name: 'Rosa', last_name: 'Quispe Mamani', car_number: 'ZZZ111', hire_date: addDays(today, 3) });
    const common = await runPipeline(db);
    t.like(common.stats['match'], { retries_marked_due: 0, leads_selected: 0 });
    t.is((await unmatchedOf(db, lead.key))?.attempts, 1);

    // HUILLCA and CCAHUANA: no other driver has them.
    await insertDriver(db, { driver_id: 'rosa', first_name: 'Rosa', last_name: 'Huillca Ccahuana', car_number: 'OLD111', hire_date: addDays(today, 3) });
    const rare = await runPipeline(db);
    t.like(rare.stats['match'], { retries_marked_due: 1, retries_marked_due_by_tier: 1, leads_selected: 1 });
    const link = await tierLink(db, lead.key);
    t.is(link?.match_rule, 'R4_PROBABILISTIC');
    t.is(link?.evidence.driver.driver_id, 'rosa');
    t.is(link?.evidence.contributions.plate.level, 'DIFFERENT');
  }));

for (const [how, change] of [
  ['removed upstream', `DELETE FROM public.drivers WHERE driver_id = 'rojas'`],
  ['renamed upstream', `UPDATE public.drivers SET first_name = 'Pedro', last_name = 'Tello Vargas', updated_at = now() WHERE driver_id = 'rojas'`],
] as const) {
  test(`one of two drivers a lead is in review between (${how}) makes it due, and the next run links it to the other`, (t) =>
    withDb('retries_due_tier', async (db) => {
      await insertCommonNameDrivers(db);
      const today = await businessToday(db);
      await insertDriver(db, { driver_id: 'ramos', first_name: 'Luis', last_name: 'Huillca Ramos', car_number: 'SHF100', hire_date: addDays(today, 1) });
      await insertDriver(db, { driver_id: 'rojas', first_name: 'Luis', last_name: 'Huillca Rojas', car_number: 'SHF100', hire_date: addDays(today, 1) });
      const lead = await insertLead(db, { first_name: 'Luis', last_name: 'Huillca', asset_plate_number: 'SHF10O' });
      await runPipeline(db);
      t.is((await unmatchedOf(db, lead.key))?.reason_code, 'PROBABLE_MATCH');

      await db.query(change);
      // the full reconciliation removes deleted drivers from the index
      await db.query(`UPDATE canon_internal.driver_index_state SET last_full_at = now() - interval '2 days'`);
      const run = await runPipeline(db);
      t.like(run.stats['match'], { retries_marked_due: 1, retries_marked_due_by_tier: 1, leads_selected: 1 });
      t.is((await linkOf(db, lead.key))?.driver_id, 'ramos');
      t.is((await tierLink(db, lead.key))?.match_rule, 'R4_PROBABILISTIC');
    }));
}

test('a rare lead token whose key a common name shares (KISPE, QUISPE) blocks nothing: a QUISPE driver does not make the lead due, doctor agrees; its rare surname does', (t) =>
  withDb('retries_due_tier', async (db) => {
    await insertCommonNameDrivers(db);
    const lead = await insertLead(db, { first_name: 'Rosa', last_name: 'Kispe Ccahuana', asset_plate_number: 'NEW777' });
    // QUISPE is the surname of about 130 of the 2,000 drivers: over a block of 100
    await db.query(`UPDATE canon.match_fs_versions SET name_block_max_drivers = 100 WHERE active`);
    await runPipeline(db);
    t.is((await unmatchedOf(db, lead.key))?.reason_code, 'NO_CANDIDATES');

    await insertDriver(db, { driver_id: 'quispe', first_name: 'Pedro', last_name: 'Quispe Tello', car_number: 'OTH123' });
    const common = await runPipeline(db);
    t.like(common.stats['match'], { retry_check: 'changed_keys', retries_marked_due: 0, leads_selected: 0 });
    t.deepEqual(await db.query(`SELECT lead_source_pk FROM canon.retry_due_drift()`), []);

    await insertDriver(db, { driver_id: 'ccahuana', first_name: 'Ana', last_name: 'Ccahuana Tello', car_number: 'OTH456' });
    const rare = await runPipeline(db);
    t.like(rare.stats['match'], { retries_marked_due: 1, retries_marked_due_by_tier: 1, leads_selected: 1 });
    t.is((await unmatchedOf(db, lead.key))?.attempts, 2);
  }));
