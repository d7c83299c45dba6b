// The caches the relatives veto reads (SPEC 5: roles judged from "how common each token is
// as a given name or a surname among the drivers"): canon_internal.driver_name_roles follows every
// write of the driver index in the same statement (canon.sync_driver_name_roles), and
// canon_internal.name_token_stats counts them (canon.count_name_token_changes). Attacked with the
// run's own writes, a rename, a deletion upstream, a truncate and two writers at once;
// each time both equal their live definitions.
import test from 'ava';
import { type TestDb, withDb } from '../helpers/db.js';
import { runPipeline } from '../helpers/pipeline.js';
import { insertDriver } from '../helpers/rows.js';

/** Rows where a cache and its live definition differ (empty: equal). */
async function drift(db: TestDb): Promise<string[]> {
  const rows = await db.query<{ d: string }>(`
    SELECT 'stats ' || coalesce(c.token, v.token) AS d
    FROM canon_internal.name_token_stats c FULL JOIN canon.v_name_token_stats v ON v.token = c.token
    WHERE (c.as_given, c.as_surname) IS DISTINCT FROM (v.as_given, v.as_surname)
    UNION ALL
    SELECT 'roles ' || coalesce(r.driver_id, v.driver_id)
    FROM canon_internal.driver_name_roles r FULL JOIN canon.v_driver_name_roles v ON v.driver_id = r.driver_id
    WHERE (r.given_names, r.surnames, r.indexed_at) IS DISTINCT FROM (v.given_names, v.surnames, v.indexed_at)
    ORDER BY 1`);
  return rows.map((r) => r.d);
}

async function stats(db: TestDb): Promise<Record<string, [number, number]>> {
  const rows = await db.query<{ token: string; as_given: string; as_surname: string }>(
    `SELECT token, as_given, as_surname FROM canon_internal.name_token_stats ORDER BY token`,
  );
  return Object.fromEntries(rows.map((r) => [r.token, [Number(r.as_given), Number(r.as_surname)]]));
}

test('follow the driver index through a run, a rename, a driver deleted upstream and a truncate, equal to their live definitions', (t) =>
  withDb('name_stats', async (db) => {
    await insertDriver(db, { driver_id: 'd1', first_name: 'Juan', middle_name: 'Carlos', last_name: 'Quispe Mamani' });
    await insertDriver(db, { driver_id: 'd2', first_name: 'José', last_name: 'Quispe Huamán' });
    // Only full_name: indexed, but no fields to learn roles from.
    await insertDriver(db, { driver_id: 'd3', full_name: 'FLORES ROSA' });
    await runPipeline(db);
    t.deepEqual(await stats(db), {
      CARLOS: [1, 0], HUAMAN: [0, 1], JOSE: [1, 0], JUAN: [1, 0], MAMANI: [0, 1], QUISPE: [0, 2],
    });
    const [d3] = await db.query(`SELECT given_names, surnames FROM canon_internal.driver_name_roles WHERE driver_id = 'd3'`);
    t.deepEqual(d3, { given_names: null, surnames: null });
    t.deepEqual(await drift(db), []);

    // Renamed upstream (a new row version, newer updated_at): re-indexed, counts move.
    await db.query(`UPDATE public.drivers SET first_name = 'Luis', updated_at = now() + interval '1 minute' WHERE driver_id = 'd2'`);
    await runPipeline(db);
    const renamed = await stats(db);
    t.is(renamed['JOSE'], undefined, 'a token no driver uses any more is gone');
    t.deepEqual(renamed['LUIS'], [1, 0]);
    t.deepEqual(await drift(db), []);

    // Deleted upstream: the next full refresh removes it from the index, and from the counts.
    await db.query(`DELETE FROM public.drivers WHERE driver_id = 'd1'`);
    await db.query(`UPDATE canon_internal.driver_index_state SET last_full_at = now() - interval '2 days'`);
    await runPipeline(db);
    t.deepEqual(await stats(db), { HUAMAN: [0, 1], LUIS: [1, 0], QUISPE: [0, 1] });
    t.deepEqual(await drift(db), []);

    await db.query(`TRUNCATE canon_internal.driver_index`);
    t.deepEqual(await stats(db), {});
    t.deepEqual(await db.query(`SELECT * FROM canon_internal.driver_name_roles`), []);
  }));

test('two transactions indexing drivers with the same names at once count every driver', (t) =>
  withDb('name_stats', async (db) => {
    for (let i = 1; i <= 20; i++) {
      await insertDriver(db, { driver_id: `d${i}`, first_name: 'Juan', last_name: 'Quispe Mamani' });
    }
    const index = (from: number, to: number) => `
      INSERT INTO canon_internal.driver_index (driver_id, source_hash)
      SELECT 'd' || i, 'test' FROM generate_series(${from}, ${to}) i`;
    const a = await db.connect();
    const b = await db.connect();
    await a.query('BEGIN');
    await a.query(index(1, 10));
    await b.query('BEGIN');
    // b waits for a's counter rows (JUAN, MAMANI, QUISPE): seen in pg_locks, then a commits.
    const [{ pid }] = (await b.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows as [{ pid: number }];
    const bInsert = b.query(index(11, 20));
    for (;;) {
      const [w] = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_locks WHERE pid = $1 AND NOT granted`, [pid]);
      if (w!.n > 0) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    await a.query('COMMIT');
    await bInsert;
    await b.query('COMMIT');
    t.deepEqual(await stats(db), { JUAN: [20, 0], MAMANI: [0, 20], QUISPE: [0, 20] });
    t.deepEqual(await drift(db), []);
  }));

test('canon.name_token_usage: a token is a given name or a surname only when drivers clearly type it so', (t) =>
  withDb('name_stats', async (db) => {
    await db.query(`
      INSERT INTO canon_internal.name_token_stats (token, as_given, as_surname) VALUES
        ('JUAN', 40, 1), ('QUISPE', 0, 30), ('CRUZ', 5, 12), ('RARO', 2, 0), ('SANTOS', 3, 1)`);
    const [u] = await db.query(`SELECT * FROM canon.name_token_usage(ARRAY['JUAN', 'QUISPE', 'CRUZ', 'RARO', 'SANTOS', 'NADIE'])`);
    // CRUZ: both (12 < 3 x 5); RARO: too few drivers; NADIE: no driver.
    t.deepEqual(u, { given_names: ['JUAN', 'SANTOS'], surnames: ['QUISPE'] });
    const [none] = await db.query(`SELECT * FROM canon.name_token_usage(ARRAY['NADIE'])`);
    t.deepEqual(none, { given_names: null, surnames: null });
  }));

test('take the row the index holds, also between two rows of one driver_id with one timestamp', (t) =>
  withDb('name_stats', async (db) => {
    // One statement: both rows get the same created_at and updated_at.
    await db.query(`
      INSERT INTO public.drivers (driver_id, park_id, first_name, last_name, hire_date) VALUES
        ('dup', '08e20910d81d42658d4334d3f6d10ac0', 'Juan', 'Quispe', current_date),
        ('dup', 'another-park', 'Juan', 'Mamani', current_date)`);
    await runPipeline(db);
    const [r] = await db.query<{ surnames: string[]; name_norm: string }>(`
      SELECT r.surnames, i.name_norm FROM canon_internal.driver_name_roles r JOIN canon_internal.driver_index i USING (driver_id)
      WHERE driver_id = 'dup'`);
    t.true(r!.name_norm.split(' ').includes(r!.surnames[0]!), `${JSON.stringify(r)}: roles of another row than the index's`);
    t.deepEqual(await drift(db), []);
  }));
