// canon.fs_blocked_pairs: which drivers the probabilistic tier compares with a lead (the one
// definition the tier, the retry step and doctor share): a plate one edit away with a shared
// name token, a rare name key whose block is small enough; and its per-row helpers
// (canon.fs_rare_name_keys, canon.fs_plate_block_pair) inlined into the statements calling them.
import test from 'ava';
import { type TestDb, withDb } from '../helpers/db.js';
import { insertCommonNameDrivers, insertDriver, insertLead } from '../helpers/rows.js';

async function blockedPairs(db: TestDb, leadIds: number[]): Promise<{ lead_id: number; driver_id: string; blocks: string[] }[]> {
  return db.query(`SELECT lead_id, driver_id, blocks FROM canon.fs_blocked_pairs($1::integer[]) ORDER BY lead_id, driver_id`, [leadIds]);
}

async function indexAll(db: TestDb): Promise<void> {
  await db.query(`SELECT canon.refresh_driver_index(NULL)`);
  await db.query(`SELECT canon.key_changed_leads(NULL)`);
}

test('a plate one edit away is a pair when the names share a token; two edits away or no shared token is none', (t) =>
  withDb('fs_blocked_pairs', async (db) => {
    await insertDriver(db, { driver_id: 'swap', first_name: 'Juan', last_name: 'Quispe', car_number: 'BAC123' });
    await insertDriver(db, { driver_id: 'stranger', first_name: 'Pedro', last_name: 'Tello', car_number: 'ABC124' });
    await insertDriver(db, { driver_id: 'two-edits', first_name: 'Juan', last_name: 'Quispe', car_number: 'XABC12' });
    const lead = await insertLead(db, { first_name: 'Juan', last_name: 'Quispe', asset_plate_number: 'ABC123' });
    await indexAll(db);
    t.deepEqual(await blockedPairs(db, [lead.id]), [{ lead_id: lead.id, driver_id: 'swap', blocks: ['PLATE'] }]);
  }));

test('a rare name key blocks its drivers, a common one does not, nor a rare key shared by more than name_block_max_drivers drivers', (t) =>
  withDb('fs_blocked_pairs', async (db) => {
    await insertCommonNameDrivers(db);
    await insertDriver(db, { driver_id: 'rosa', first_name: 'Rosa', last_name: 'Huillca Ccahuana', car_number: 'OLD111' });
    await insertDriver(db, { driver_id: 'other', first_name: 'Ana', last_name: 'Quispe Ccahuana', car_number: 'OLD222' });
    const rare = await insertLead(db, { first_name: 'Rosa', last_name: 'Huillca Ccahuana', asset_plate_number: 'NEW999' });
    const common = await insertLead(db, { first_name: 'Rosa', last_name: 'Quispe Mamani', asset_plate_number: 'NEW888' });
    await indexAll(db);
    // HUILLCA (one driver) and CCAHUANA (two): rare at 2,002 drivers only when typed by at most 1
    t.deepEqual(await blockedPairs(db, [rare.id, common.id]), [{ lead_id: rare.id, driver_id: 'rosa', blocks: ['NAME'] }]);
    await db.query(`UPDATE canon.match_fs_versions SET rare_token_max_share = 0.001 WHERE active`);
    t.deepEqual((await blockedPairs(db, [rare.id])).map((p) => p.driver_id), ['other', 'rosa'], 'CCAHUANA rare too at 2 drivers in 1,000');
    await db.query(`UPDATE canon.match_fs_versions SET name_block_max_drivers = 1 WHERE active`);
    t.deepEqual((await blockedPairs(db, [rare.id])).map((p) => p.driver_id), ['rosa'], 'the CCAHUANA key now has too many drivers');
  }));

test('canon.fs_rare_name_keys and canon.fs_plate_block_pair are inlined where they are called per row', (t) =>
  withDb('fs_blocked_pairs', async (db) => {
    const plan = async (sql: string): Promise<string> =>
      (await db.query<{ 'QUERY PLAN': string }>(`EXPLAIN (VERBOSE, COSTS OFF) ${sql}`)).map((r) => r['QUERY PLAN']).join('\n');
    const rare = await plan(`SELECT k.lead_id, r.key FROM canon_internal.lead_keys k CROSS JOIN LATERAL canon.fs_rare_name_keys(k.name_norm, 5) AS r (key)`);
    t.notRegex(rare, /fs_rare_name_keys/);
    t.regex(rare, /name_token_stats/);
    const pair = await plan(`SELECT k.lead_id FROM canon_internal.lead_keys k JOIN canon_internal.driver_index d ON canon.fs_plate_block_pair(k.plate_norm, k.name_norm, d.plate_norm, d.name_norm)`);
    t.notRegex(pair, /fs_plate_block_pair/);
    t.regex(pair, /plate_comparison/);
  }));
