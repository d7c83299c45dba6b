// canon.retry_due_drift (doctor's RETRY_DUE_MARKED): the OPEN leads a driver indexed after
// their last attempt (and checked since) makes due by the retry step's definition, yet not
// due: a shared key, or a pair of the probabilistic tier's blocking (a plate one edit away with
// a shared name token, a rare name key); and ops.repair_caches marks them.
import test from 'ava';
import { type TestDb, withDb } from '../helpers/db.js';
import { runPipeline, unmatchedOf } from '../helpers/pipeline.js';
import { insertCommonNameDrivers, insertDriver, insertLead } from '../helpers/rows.js';

async function drift(db: TestDb): Promise<{ lead_source_pk: string; example: string }[]> {
  return db.query(`SELECT lead_source_pk, example FROM canon.retry_due_drift() ORDER BY lead_source_pk`);
}

/** The drivers indexed and checked by the retry step, whose marks are then lost (the drift). */
async function indexCheckAndLoseMarks(db: TestDb): Promise<void> {
  await db.query(`SELECT canon.refresh_driver_index(NULL)`);
  await db.query(`SELECT canon.mark_retries_due(NULL)`);
  await db.query(`UPDATE canon.identity_unmatched SET retry_due = false`);
}

test('lists an OPEN lead a driver on a plate one edit away or with its rare surnames makes due, not one sharing only a common name or two plate edits', (t) =>
  withDb('retry_due_drift', async (db) => {
    await insertCommonNameDrivers(db);
    const near = await insertLead(db, { external_id: 'near', first_name: 'Juan Carlos', last_name: 'Quispe Mamani', asset_plate_number: 'ABC123' });
    const far = await insertLead(db, { external_id: 'far', first_name: 'Juan Carlos', last_name: 'Quispe Mamani', asset_plate_number: 'DEF456' });
    const rare = await insertLead(db, { external_id: 'rare', first_name: 'Rosa', last_name: 'Huillca Ccahuana', asset_plate_number: 'NEW999' });
    const common = await insertLead(db, { external_id: 'common', first_name: 'Rosa', last_name: 'Tapia Soto', asset_plate_number: 'NEW888' });
    await runPipeline(db);
    for (const l of [near, far, rare, common]) t.is((await unmatchedOf(db, l.key))?.reason_code, 'NO_CANDIDATES');
    t.deepEqual(await drift(db), []);

    await insertDriver(db, { driver_id: 'd-near', first_name: 'Juan', middle_name: 'Carlos', last_name: 'Quispe Mamani', car_number: 'ABC128' });
    await insertDriver(db, { driver_id: 'd-far', first_name: 'Juan', middle_name: 'Carlos', last_name: 'Quispe Mamani', car_number: 'DEX45X' });
    await insertDriver(db, { driver_id: 'd-rare', first_name: 'Rosa', last_name: 'Huillca Ccahuana', car_number: 'OLD111' });
    await insertDriver(db, { driver_id: 'd-common', first_name: 'Rosa', last_name: 'Quispe Mamani', car_number: 'OLD222' });
    await indexCheckAndLoseMarks(db);
    const rows = await drift(db);
    t.deepEqual(rows.map((r) => r.lead_source_pk), ['near', 'rare']);
    t.regex(rows[0]!.example, /^lead key near: driver d-near indexed at .+, last attempt .+$/);
    t.regex(rows[1]!.example, /^lead key rare: driver d-rare indexed at .+, last attempt .+$/);

    const [repaired] = await db.query<{ n: number }>(`SELECT (ops.repair_caches()->>'retries_marked_due')::int AS n`);
    t.is(repaired!.n, 2);
    t.deepEqual(await drift(db), []);
    const due = await db.query<{ source_pk: string }>(`SELECT source_pk FROM canon.identity_unmatched WHERE retry_due ORDER BY 1`);
    t.deepEqual(due.map((d) => d.source_pk), ['near', 'rare']);
  }));

test('a near plate asks only for the leads the tier sees: not an AMBIGUOUS one (the rules decide it), a NO_CANDIDATES one', (t) =>
  withDb('retry_due_drift', async (db) => {
    await insertDriver(db, { driver_id: 'a', first_name: 'Ana', last_name: 'Lopez', car_number: 'SHF001' });
    await insertDriver(db, { driver_id: 'b', first_name: 'Ana', last_name: 'Lopes', car_number: 'SHF001' });
    const ambiguous = await insertLead(db, { external_id: 'ambiguous', first_name: 'Ana', last_name: 'Lopez', asset_plate_number: 'SHF001' });
    const none = await insertLead(db, { external_id: 'none', first_name: 'Ana', last_name: 'Lopez', asset_plate_number: 'SHF0OI' });
    await runPipeline(db);
    t.is((await unmatchedOf(db, ambiguous.key))?.reason_code, 'AMBIGUOUS');
    t.is((await unmatchedOf(db, none.key))?.reason_code, 'NO_CANDIDATES');
    // one character from both plates (I for 1; O for 0)
    await insertDriver(db, { driver_id: 'c', first_name: 'Ana', last_name: 'Lopez', car_number: 'SHF00I' });
    await indexCheckAndLoseMarks(db);
    t.deepEqual((await drift(db)).map((r) => r.lead_source_pk), ['none']);
  }));
