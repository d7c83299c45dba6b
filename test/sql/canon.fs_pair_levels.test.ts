// canon.fs_pair_levels: what canon.estimate_fs_m reads, the comparison vector of every pair
// the probabilistic tier can link: its levels, counted, with -log2 u as the tier reads u. The
// weight rebuilt from them is the tier's own; relatives, "not this driver" labels and deleted
// drivers are left out (the tier never links them).
import test from 'ava';
import { withDb } from '../helpers/db.js';
import { insertFsPeople } from '../helpers/fs-people.js';
import { runPipeline } from '../helpers/pipeline.js';
import { addDays, businessToday, insertDriver, insertLead } from '../helpers/rows.js';

const ALL_LEADS = `ARRAY(SELECT lead_id FROM canon_internal.lead_keys)`;

test('the prior plus n log2 m plus -log2 u over a pair\'s levels is the tier\'s match weight of that pair', (t) =>
  withDb('fs_pair_levels', async (db) => {
    await insertFsPeople(db, 150, 4000);
    await runPipeline(db, 'p_days_back => 30, p_limit => 0');
    const rows = await db.query<{ lead_id: number; driver_id: string; tier: string; rebuilt: number; levels: string[] }>(`
      WITH l AS (SELECT * FROM canon.fs_pair_levels(${ALL_LEADS}, 1)),
      rebuilt AS (
        SELECT l.lead_id, l.driver_id,
               ln(0.5 / max(l.indexed_drivers) / (1 - 0.5 / max(l.indexed_drivers))) / ln(2)
                 + sum(l.n * coalesce(ln(v.m::float8) / ln(2), 0) + l.u_bits) AS rebuilt,
               array_agg(l.comparison || '.' || l.level || 'x' || l.n ORDER BY l.comparison, l.level) AS levels
        FROM l LEFT JOIN canon.match_fs_levels v ON v.version = 1 AND v.comparison = l.comparison AND v.level = l.level
        GROUP BY l.lead_id, l.driver_id
      )
      SELECT r.*, c.match_weight::text AS tier
      FROM rebuilt r JOIN canon.probabilistic_candidates(${ALL_LEADS}) c ON c.lead_id = r.lead_id AND c.driver_id = r.driver_id`);
    t.true(rows.length >= 100, `pairs ${rows.length}`);
    for (const r of rows) t.true(Math.abs(Number(r.tier) - r.rebuilt) <= 0.006, `${r.lead_id}/${r.driver_id}: tier ${r.tier}, rebuilt ${r.rebuilt} from ${r.levels.join(' ')}`);
    const kinds = new Set(rows.flatMap((r) => r.levels.map((x) => x.replace(/x\d+$/, ''))));
    for (const k of ['PLATE.EXACT', 'PLATE.CONFUSION', 'PLATE.ONE_EDIT', 'PLATE.DIFFERENT', 'NAME_TOKEN.EXACT', 'NAME_TOKEN.TYPO',
      'NAME_TOKEN.PHONETIC', 'NAME_TOKEN.NONE', 'NAME_DRIVER_TOKEN.MISSING', 'NAME_DRIVER_TOKEN.PARTNERED', 'HIRE_DATE.NEAR', 'PARK.OTHER']) {
      t.true(kinds.has(k), `some pair shows ${k}`);
    }
  }));

test('each driver token is PARTNERED or MISSING once; each lead token has one level', (t) =>
  withDb('fs_pair_levels', async (db) => {
    const today = await businessToday(db);
    await insertDriver(db, { driver_id: 'd', first_name: 'Juan', middle_name: 'Carlos', last_name: 'Quispe Mamani', car_number: 'ABC105', hire_date: addDays(today, 1) });
    const lead = await insertLead(db, { first_name: 'Jaun', last_name: 'Quispe', asset_plate_number: 'ABC1O5' });
    await runPipeline(db, 'p_days_back => 30, p_limit => 0');
    const rows = await db.query<{ comparison: string; level: string; n: number }>(
      `SELECT comparison, level, n FROM canon.fs_pair_levels(ARRAY[$1::integer], 1) ORDER BY comparison, level`, [lead.id]);
    t.deepEqual(rows.map((r) => `${r.comparison}.${r.level}x${r.n}`), [
      'HIRE_DATE.NEARx1', 'NAME_DRIVER_TOKEN.MISSINGx2', 'NAME_DRIVER_TOKEN.PARTNEREDx2', 'NAME_TOKEN.EXACTx1', 'NAME_TOKEN.TYPOx1',
      'PARK.TARGETx1', 'PLATE.CONFUSIONx1']);
  }));

test('relatives, a driver a person said is not the lead\'s and a deleted driver are left out, though the tier blocks them', (t) =>
  withDb('fs_pair_levels', async (db) => {
    const today = await businessToday(db);
    // the relative: same surnames, other given names, the plate one edit off
    await insertDriver(db, { driver_id: 'brother', first_name: 'Juan', middle_name: 'Carlos', last_name: 'Quispe Mamani', car_number: 'REL123', hire_date: addDays(today, 2) });
    const relative = await insertLead(db, { first_name: 'José', middle_name: 'Luis', last_name: 'Quispe Mamani', asset_plate_number: 'REL124' });
    await insertDriver(db, { driver_id: 'labelled', first_name: 'Rosa', last_name: 'Huillca', car_number: 'LAB111', hire_date: addDays(today, 2) });
    const labelled = await insertLead(db, { first_name: 'Rosa', last_name: 'Huillca', asset_plate_number: 'LAB111' });
    await insertDriver(db, { driver_id: 'gone', first_name: 'Pedro', last_name: 'Tello', car_number: 'GON222', hire_date: addDays(today, 2) });
    const gone = await insertLead(db, { first_name: 'Pedro', last_name: 'Tello', asset_plate_number: 'GON222' });
    await insertDriver(db, { driver_id: 'kept', first_name: 'Ana', last_name: 'Soto', car_number: 'KEP333', hire_date: addDays(today, 2) });
    const kept = await insertLead(db, { first_name: 'Ana', last_name: 'Soto', asset_plate_number: 'KEP333' });
    await runPipeline(db, 'p_days_back => 30, p_limit => 0');
    await db.query(`INSERT INTO canon.lead_driver_labels (lead_source_pk, driver_id, note) VALUES ($1, 'labelled', 'his sister')`, [labelled.key]);
    await db.query(`DELETE FROM public.drivers WHERE driver_id = 'gone'`);
    const ids = [relative.id, labelled.id, gone.id, kept.id];
    const blocked = await db.query<{ driver_id: string }>(
      `SELECT driver_id FROM canon.probabilistic_candidates($1::integer[]) ORDER BY driver_id`, [ids]);
    t.deepEqual(blocked.map((r) => r.driver_id), ['brother', 'gone', 'kept', 'labelled']);
    const pairs = await db.query<{ driver_id: string }>(
      `SELECT DISTINCT driver_id FROM canon.fs_pair_levels($1::integer[], 1) ORDER BY driver_id`, [ids]);
    t.deepEqual(pairs.map((r) => r.driver_id), ['kept']);
  }));
