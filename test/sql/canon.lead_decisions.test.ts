// The decision per lead (SPEC 5 "Relatives are different people", SPEC 6): a plate shared
// by relatives never links a lead to a relative whose given name or surname differs,
// whatever the token score, while a missing middle name, an initial, a typo or names in
// the wrong fields are still the same person. Each case on hand-built rows, through the
// real run; the veto is visible in the unmatched row's candidates and in the evidence.
import test from 'ava';
import { type TestDb, withDb } from '../helpers/db.js';
import { linkOf, runPipeline, unmatchedOf } from '../helpers/pipeline.js';
import { addDays, businessToday, insertDriver, insertLead } from '../helpers/rows.js';

interface Candidate {
  driver_id: string;
  rule: string;
  reject_reason: string | null;
  name_similarity: number;
  name_veto?: { lead: Record<string, string>; driver: Record<string, string> } | null;
}

async function candidatesOf(db: TestDb, leadKey: string): Promise<Candidate[]> {
  const u = await unmatchedOf(db, leadKey);
  return (u?.candidates ?? []) as unknown as Candidate[];
}

async function rejectedOf(db: TestDb, leadKey: string): Promise<Candidate[]> {
  const [r] = await db.query<{ rejected: Candidate[] }>(
    `SELECT evidence->'rejected' AS rejected FROM canon.identity_links
     WHERE source_table = 'module_ct_cabinet_leads' AND source_pk = $1`,
    [leadKey],
  );
  return r?.rejected ?? [];
}

/**
 * Drivers without keys (never candidates) whose fields say how names are used: each
 * given name typed three times as a first or middle name, each surname three times as a
 * last name, as a real driver table would show them.
 */
async function insertNameBackground(db: TestDb): Promise<void> {
  const given = ['José', 'Juan', 'Carlos', 'Luis', 'Rosa', 'María', 'Alberto'];
  const surnames = ['Quispe Mamani', 'Huamán Flores', 'Mamani Quispe'];
  for (const [i, g] of given.entries()) {
    for (const [j, s] of surnames.entries()) {
      await insertDriver(db, { driver_id: `bg-${i}-${j}`, first_name: g, last_name: s });
    }
  }
}

test('a brother sharing the second given name is not linked by the plate: WEAK_MATCH_ONLY naming the given names', (t) =>
  withDb('decisions', async (db) => {
    await insertDriver(db, { driver_id: 'juan', first_name: 'Juan', middle_name: 'Carlos', last_name: 'Quispe Mamani', car_number: 'BRO001' });
    await insertLead(db, { external_id: 'jose', first_name: 'José', middle_name: 'Carlos', last_name: 'Quispe Mamani', asset_plate_number: 'bro-001' });
    // Both have two given names; the second one differs (JUAN CARLOS vs JUAN ALBERTO).
    await insertLead(db, { external_id: 'alberto', first_name: 'Juan', middle_name: 'Alberto', last_name: 'Quispe Mamani', asset_plate_number: 'BRO001' });
    await runPipeline(db);
    t.is(await linkOf(db, 'jose'), undefined);
    t.is((await unmatchedOf(db, 'jose'))?.reason_code, 'WEAK_MATCH_ONLY');
    const [c] = await candidatesOf(db, 'jose');
    t.is(c?.driver_id, 'juan');
    t.is(Number(c?.name_similarity), 0.675, 'the token score alone would match');
    t.is(c?.reject_reason, 'NAME_VETO');
    t.deepEqual(c?.name_veto, { lead: { JOSE: 'GIVEN_NAME' }, driver: { JUAN: 'GIVEN_NAME' } });
    t.is(await linkOf(db, 'alberto'), undefined);
    const [a] = await candidatesOf(db, 'alberto');
    t.deepEqual(a?.name_veto, { lead: { ALBERTO: 'GIVEN_NAME' }, driver: { CARLOS: 'GIVEN_NAME' } });
  }));

test('a cousin with the same given names and first surname is not linked by the plate', (t) =>
  withDb('decisions', async (db) => {
    await insertDriver(db, { driver_id: 'cousin', first_name: 'Juan Carlos', last_name: 'Quispe Huamán', car_number: 'COU001' });
    await insertLead(db, { external_id: 'L1', first_name: 'Juan Carlos', last_name: 'Quispe Mamani', asset_plate_number: 'COU001' });
    await runPipeline(db);
    t.is(await linkOf(db, 'L1'), undefined);
    t.is((await unmatchedOf(db, 'L1'))?.reason_code, 'WEAK_MATCH_ONLY');
    const [c] = await candidatesOf(db, 'L1');
    t.is(c?.reject_reason, 'NAME_VETO');
    t.deepEqual(c?.name_veto, { lead: { MAMANI: 'SURNAME' }, driver: { HUAMAN: 'SURNAME' } });
  }));

test('father and son on one car: each lead is linked only to the driver with its own name', (t) =>
  withDb('decisions', async (db) => {
    // The son carries his father's given names and first surname; his mother's surname differs.
    await insertDriver(db, { driver_id: 'father', first_name: 'Juan Carlos', last_name: 'Quispe Mamani', car_number: 'FAM001',
                             hire_date: addDays(await businessToday(db), -900) });
    await insertLead(db, { external_id: 'father-lead', first_name: 'Juan Carlos', last_name: 'Quispe Mamani', asset_plate_number: 'FAM001' });
    await insertLead(db, { external_id: 'son-lead', first_name: 'Juan Carlos', last_name: 'Quispe Huamán', asset_plate_number: 'FAM-001' });
    await runPipeline(db);
    t.is((await linkOf(db, 'father-lead'))?.driver_id, 'father');
    t.is(await linkOf(db, 'son-lead'), undefined, "the son's lead is not the father's money");
    t.is((await unmatchedOf(db, 'son-lead'))?.reason_code, 'WEAK_MATCH_ONLY');

    // The son becomes a driver of the same car: his lead is retried and linked to him.
    await insertDriver(db, { driver_id: 'son', first_name: 'Juan Carlos', last_name: 'Quispe Huamán', car_number: 'FAM001' });
    await runPipeline(db);
    t.is((await linkOf(db, 'son-lead'))?.driver_id, 'son');
    t.is((await linkOf(db, 'father-lead'))?.driver_id, 'father');
    const [rejected] = await rejectedOf(db, 'son-lead');
    t.is(rejected?.driver_id, 'father');
    t.is(rejected?.reject_reason, 'NAME_VETO');
    t.deepEqual(rejected?.name_veto, { lead: { HUAMAN: 'SURNAME' }, driver: { MAMANI: 'SURNAME' } });
  }));

test('shift brothers on one plate: each lead goes to its own brother, the other one vetoed in the evidence', (t) =>
  withDb('decisions', async (db) => {
    await insertDriver(db, { driver_id: 'jose', first_name: 'José Carlos', last_name: 'Quispe Mamani', car_number: 'SHB001' });
    await insertDriver(db, { driver_id: 'juan', first_name: 'Juan Carlos', last_name: 'Quispe Mamani', car_number: 'SHB001' });
    await insertLead(db, { external_id: 'L1', first_name: 'Jose Carlos', last_name: 'Quispe Mamani', asset_plate_number: 'SHB001' });
    await insertLead(db, { external_id: 'L2', first_name: 'Carlos', last_name: 'Quispe Mamani', asset_plate_number: 'SHB001' });
    await runPipeline(db);
    t.is((await linkOf(db, 'L1'))?.driver_id, 'jose');
    const rejected = await rejectedOf(db, 'L1');
    t.deepEqual(rejected.map((r) => [r.driver_id, r.reject_reason]), [['juan', 'NAME_VETO']]);
    // Only the second given name: either brother, never a silent pick.
    t.is((await unmatchedOf(db, 'L2'))?.reason_code, 'AMBIGUOUS');
  }));

test('names typed into the wrong fields: roles come from how drivers use each name, and a swapped record is read the other way', (t) =>
  withDb('decisions', async (db) => {
    await insertNameBackground(db);
    await insertDriver(db, { driver_id: 'juan', first_name: 'Juan', middle_name: 'Carlos', last_name: 'Quispe Mamani', car_number: 'WRG001' });
    // Only full_name, surnames first, with a married name (DE HUAMAN) and no middle name.
    await insertDriver(db, { driver_id: 'rosa', full_name: 'QUISPE MAMANI DE HUAMAN ROSA', car_number: 'WRG002' });
    // Surnames in first_name, given names in last_name.
    await insertLead(db, { external_id: 'brother', first_name: 'Quispe Mamani', last_name: 'José Carlos', asset_plate_number: 'WRG001' });
    await insertLead(db, { external_id: 'himself', first_name: 'Quispe Mamani', last_name: 'Juan Carlos', asset_plate_number: 'WRG001' });
    // A given name no driver has: its role is the field's, read the other way round
    // because the lead's other names show its fields are swapped.
    await insertLead(db, { external_id: 'rare', first_name: 'Quispe Mamani', last_name: 'Zacarías Carlos', asset_plate_number: 'WRG001' });
    // A middle name on one side and a married surname on the other: not a different name.
    await insertLead(db, { external_id: 'rosa-lead', first_name: 'Quispe Mamani', last_name: 'Rosa María', asset_plate_number: 'WRG002' });
    await runPipeline(db);

    t.is(await linkOf(db, 'brother'), undefined);
    t.deepEqual((await candidatesOf(db, 'brother'))[0]?.name_veto, { lead: { JOSE: 'GIVEN_NAME' }, driver: { JUAN: 'GIVEN_NAME' } });
    t.is((await linkOf(db, 'himself'))?.driver_id, 'juan');
    t.is(await linkOf(db, 'rare'), undefined);
    t.deepEqual((await candidatesOf(db, 'rare'))[0]?.name_veto, { lead: { ZACARIAS: 'GIVEN_NAME' }, driver: { JUAN: 'GIVEN_NAME' } });
    t.is((await linkOf(db, 'rosa-lead'))?.driver_id, 'rosa');
  }));

test('a missing middle name, or only its initial, is not a different name', (t) =>
  withDb('decisions', async (db) => {
    await insertDriver(db, { driver_id: 'd1', first_name: 'Juan', middle_name: 'Carlos', last_name: 'Quispe Mamani', car_number: 'MID001' });
    await insertDriver(db, { driver_id: 'd2', first_name: 'Luis', last_name: 'Flores Huamán', car_number: 'MID002' });
    await insertLead(db, { external_id: 'no-middle', first_name: 'Juan', last_name: 'Quispe Mamani', asset_plate_number: 'MID001' });
    await insertLead(db, { external_id: 'middle-only', first_name: 'Carlos', last_name: 'Quispe Mamani', asset_plate_number: 'MID001' });
    await insertLead(db, { external_id: 'initial', first_name: 'Juan', middle_name: 'C.', last_name: 'Quispe Mamani', asset_plate_number: 'MID001' });
    // The lead has a middle name the driver lacks.
    await insertLead(db, { external_id: 'extra-middle', first_name: 'Luis', middle_name: 'Alberto', last_name: 'Flores Huamán', asset_plate_number: 'MID002' });
    await runPipeline(db);
    for (const [lead, driver] of [['no-middle', 'd1'], ['middle-only', 'd1'], ['initial', 'd1'], ['extra-middle', 'd2']]) {
      t.is((await linkOf(db, lead!))?.driver_id, driver, lead);
    }
  }));

test('a one-letter typo or an accent in a given name is not a different name', (t) =>
  withDb('decisions', async (db) => {
    await insertDriver(db, { driver_id: 'd1', first_name: 'Juan', middle_name: 'Carlos', last_name: 'Quispe Mamani', car_number: 'TYP001' });
    await insertDriver(db, { driver_id: 'd2', first_name: 'JOSE', middle_name: 'ALBERTO', last_name: 'FLORES HUAMAN', car_number: 'TYP002' });
    // CARLOZ is CARLOS one edit away, and the lead lacks the second surname.
    await insertLead(db, { external_id: 'typo', first_name: 'Juan', middle_name: 'Carloz', last_name: 'Quispe', asset_plate_number: 'TYP001' });
    await insertLead(db, { external_id: 'accent', first_name: 'José', middle_name: 'Albretó', last_name: 'Flores', asset_plate_number: 'TYP002' });
    await runPipeline(db);
    t.is((await linkOf(db, 'typo'))?.driver_id, 'd1');
    t.is((await linkOf(db, 'accent'))?.driver_id, 'd2');
  }));

test('a phone on two brothers registered as drivers is not used by R1: the plate and the name decide', (t) =>
  withDb('decisions', async (db) => {
    await insertDriver(db, { driver_id: 'jose', first_name: 'José Carlos', last_name: 'Quispe Mamani', phone: '51944444444', car_number: 'PHB001' });
    await insertDriver(db, { driver_id: 'juan', first_name: 'Juan Carlos', last_name: 'Quispe Mamani', phone: '51944444444' });
    await insertLead(db, { external_id: 'L1', first_name: 'José Carlos', last_name: 'Quispe Mamani', park_phone: '944444444', asset_plate_number: 'PHB001' });
    await runPipeline(db);
    const link = await linkOf(db, 'L1');
    t.is(link?.driver_id, 'jose');
    t.is(link?.match_rule, 'R3_PLATE_EXACT_NAME_SIMILAR');
    const rejected = await rejectedOf(db, 'L1');
    t.deepEqual(rejected.map((r) => [r.driver_id, r.reject_reason]).sort(),
      [['jose', 'PHONE_SHARED_BY_DRIVERS'], ['juan', 'PHONE_SHARED_BY_DRIVERS']]);
  }));

test("a family phone on three brothers' leads is shared: none is linked to the phone's driver by R1", (t) =>
  withDb('decisions', async (db) => {
    await insertDriver(db, { driver_id: 'juan', first_name: 'Juan Carlos', last_name: 'Quispe Mamani', phone: '51955555555' });
    await insertLead(db, { external_id: 'juan', first_name: 'Juan Carlos', last_name: 'Quispe Mamani', park_phone: '955555555' });
    await insertLead(db, { external_id: 'jose', first_name: 'José Carlos', last_name: 'Quispe Mamani', park_phone: '955555555' });
    await insertLead(db, { external_id: 'luis', first_name: 'Luis Carlos', last_name: 'Quispe Mamani', park_phone: '955555555' });
    await runPipeline(db);
    for (const k of ['juan', 'jose', 'luis']) {
      t.is(await linkOf(db, k), undefined, k);
      t.is((await unmatchedOf(db, k))?.reason_code, 'SHARED_KEY', k);
    }
  }));
