// Soak under a concurrent writer (issue 14, "how to prove it"): pipeline runs one after
// another while another connection writes the upstream tables the way real writers do, in
// an order chosen by a seeded random generator: leads inserted under low ids and committed
// after higher ones, transactions held open across runs, leads corrected, re-dated and
// deleted, trip rows inserted, corrected and deleted with pages freed by VACUUM and reused,
// drivers inserted and changed with timestamps in 2099 or none, claims paid or rejected by
// finance and claims deleted in psql. Then the writer stops, one more run reads what it
// wrote last, and every cache equals its live definition: the stored state of every lead,
// one limbo row per dated lead, no settled claim changed, every invariant of doctor.
import test from 'ava';
import pg from 'pg';
import { createTestDb } from '../helpers/db.js';
import { stateDrift } from '../helpers/scenario.js';
import { seedDemo, violations } from './support.js';

const RUNS = Number(process.env.SOAK_RUNS ?? 200);
const PARK = '08e20910d81d42658d4334d3f6d10ac0';

/** Runs one write with the placeholders it uses ($1 unique number, $2 random integer). */
function write(c: pg.Client, name: string, unique: number, arg: number): Promise<unknown> {
  const sql = WRITES[name]!;
  return sql.includes('$1') ? c.query(sql, [unique, arg]) : c.query(sql.replaceAll('$2', '$1'), [arg]);
}

/** mulberry32: a small seeded generator, so that a failure can be replayed with its seed */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// One write of the upstream tables, or of claims by finance / psql. $1 is a number that
// makes values unique, $2 a random integer the statement uses to pick its rows.
const WRITES: Record<string, string> = {
  // a lead under an id below the highest one (an upstream sync carries its own ids)
  leadLowId: `
    INSERT INTO public.module_ct_cabinet_leads (id, external_id, lead_created_at, first_name, last_name, park_phone, asset_plate_number)
    SELECT (SELECT min(id) FROM public.module_ct_cabinet_leads) - 1 - $1::int, 'SOAK-' || $1, canon.business_today() - ($2::int % 40),
           'Soak', 'Lead' || $1, (SELECT right(d.phone, 9) FROM public.drivers d WHERE d.phone IS NOT NULL ORDER BY d.driver_id OFFSET ($2::int % 50) LIMIT 1), NULL`,
  leadNew: `
    INSERT INTO public.module_ct_cabinet_leads (external_id, lead_created_at, first_name, last_name, park_phone)
    SELECT 'SOAKN-' || $1, canon.business_today() - ($2::int % 40), 'Nueva', 'Lead' || $1,
           (SELECT right(d.phone, 9) FROM public.drivers d WHERE d.phone IS NOT NULL ORDER BY d.driver_id OFFSET ($2::int % 80) LIMIT 1)`,
  leadPhoneFixed: `
    UPDATE public.module_ct_cabinet_leads SET park_phone = (SELECT right(d.phone, 9) FROM public.drivers d WHERE d.phone IS NOT NULL ORDER BY d.driver_id OFFSET ($2::int % 60) LIMIT 1)
    WHERE id = (SELECT id FROM public.module_ct_cabinet_leads ORDER BY id OFFSET ($2::int % 100) LIMIT 1)`,
  leadRedated: `
    UPDATE public.module_ct_cabinet_leads SET lead_created_at = canon.business_today() - ($2::int % 35) + time '11:00'
    WHERE id = (SELECT id FROM public.module_ct_cabinet_leads ORDER BY id DESC OFFSET ($2::int % 100) LIMIT 1)`,
  leadDeleted: `
    DELETE FROM public.module_ct_cabinet_leads WHERE id = (SELECT id FROM public.module_ct_cabinet_leads ORDER BY id OFFSET ($2::int % 300) LIMIT 1)`,
  tripsNew: `
    INSERT INTO public.summary_daily (driver_id, date_file, count_orders_completed, sum_work_time_seconds)
    SELECT d.driver_id, CASE WHEN g % 2 = 0 THEN to_char(canon.business_today() - (($2::int + g) % 40), 'YYYY-MM-DD')
                             ELSE to_char(canon.business_today() - (($2::int + g) % 40), 'DD-MM-YYYY') END, 1 + g % 4, 3600
    FROM (SELECT driver_id FROM public.drivers ORDER BY driver_id OFFSET ($2::int % 150) LIMIT 3) d CROSS JOIN generate_series(1, 4) g`,
  tripsCorrected: `
    UPDATE public.summary_daily SET count_orders_completed = count_orders_completed + 3
    WHERE ctid = (SELECT ctid FROM public.summary_daily ORDER BY driver_id, date_file OFFSET ($2::int % 500) LIMIT 1)`,
  tripsDeletedAndVacuumed: `
    DELETE FROM public.summary_daily WHERE ctid IN (SELECT ctid FROM public.summary_daily ORDER BY date_file, driver_id OFFSET ($2::int % 300) LIMIT 40)`,
  driverNew: `
    INSERT INTO public.drivers (driver_id, park_id, first_name, last_name, phone, car_number, hire_date, created_at, updated_at)
    VALUES ('soak-drv-' || $1, '${PARK}', 'Soak', 'Lead' || $1, '51' || (910000000 + $1::int)::text, 'SK' || $1, canon.business_today() - 30,
            CASE $2::int % 3 WHEN 0 THEN NULL WHEN 1 THEN '2099-01-01' ELSE now() - interval '5 hours' END,
            CASE $2::int % 3 WHEN 0 THEN NULL WHEN 1 THEN '2099-01-01' ELSE now() - interval '5 hours' END)`,
  driverChanged: `
    UPDATE public.drivers SET phone = '51' || (920000000 + $1::int)::text
    WHERE driver_id = (SELECT driver_id FROM public.drivers ORDER BY driver_id OFFSET ($2::int % 200) LIMIT 1)`,
  driverDeleted: `
    DELETE FROM public.drivers WHERE driver_id = (SELECT driver_id FROM public.drivers ORDER BY driver_id DESC OFFSET ($2::int % 100) LIMIT 1)`,
  financeSettles: `
    UPDATE canon.claims_yango_cabinet_14d SET status = CASE WHEN $2::int % 4 = 0 THEN 'rejected' ELSE 'paid' END,
           paid_at = CASE WHEN $2::int % 4 = 0 THEN NULL ELSE now() END
    WHERE (lead_source_pk, milestone) = (SELECT lead_source_pk, milestone FROM canon.claims_yango_cabinet_14d
                                         WHERE status = 'generated' ORDER BY lead_source_pk, milestone OFFSET ($2::int % 20) LIMIT 1)`,
  claimDeletedInPsql: `
    DELETE FROM canon.claims_yango_cabinet_14d
    WHERE (lead_source_pk, milestone) = (SELECT lead_source_pk, milestone FROM canon.claims_yango_cabinet_14d
                                         WHERE status = 'generated' ORDER BY lead_source_pk DESC, milestone OFFSET ($2::int % 20) LIMIT 1)`,
};

test(`${RUNS} runs while another connection writes every table in any order: at the end every cache equals its live definition`, async (t) => {
  t.timeout(600_000);
  const db = await createTestDb('rel_soak_concurrent');
  t.teardown(() => db.drop());
  await seedDemo(db, { seed: 91, leads: 300, drivers: 400, tripDays: 40 });
  const runner = await db.connect();
  const call = async () => {
    const { rows } = await runner.query<{ run: { status: string; error_message: string | null } }>(
      `CALL ops.reconcile_cabinet_leads_pipeline(p_days_back => 45, p_limit => 5000, p_raise_on_failure => false)`);
    return rows[0]!.run;
  };
  t.is((await call()).status, 'COMPLETED');

  const seed = Number(process.env.SOAK_SEED ?? 14);
  const rnd = random(seed);
  const names = Object.keys(WRITES);
  let done = false;
  let n = 0;
  const counts: Record<string, number> = {};
  const settled = new Map<string, string>();
  const writerErrors: string[] = [];
  // The writer: one statement at a time, some in a transaction held open across a run
  // (committed after writes that started later), a VACUUM now and then.
  const writer = (async () => {
    const w = new pg.Client({ connectionString: db.url, application_name: 'soak-writer' });
    const held = new pg.Client({ connectionString: db.url, application_name: 'soak-writer-held' });
    await w.connect();
    await held.connect();
    let holding = 0;
    try {
      while (!done) {
        n++;
        const name = names[Math.floor(rnd() * names.length)]!;
        const arg = Math.floor(rnd() * 1_000_000);
        try {
          if (holding === 0 && rnd() < 0.1) {
            await held.query('BEGIN');
            await write(held, 'leadLowId', n, arg);
            await held.query('SAVEPOINT s');
            await write(held, 'tripsNew', n, arg);
            await held.query('RELEASE SAVEPOINT s');
            holding = 1 + Math.floor(rnd() * 6); // committed after that many more writes
          } else {
            await write(w, name, n, arg);
            counts[name] = (counts[name] ?? 0) + 1;
            if (holding > 0 && --holding === 0) await held.query('COMMIT');
            if (name === 'tripsDeletedAndVacuumed' && rnd() < 0.5) await w.query('VACUUM public.summary_daily');
          }
        } catch (err) {
          // an id taken by the other writer, a row gone meanwhile: the write is skipped
          const message = (err as Error).message;
          if (!/duplicate key|could not serialize/.test(message)) writerErrors.push(`${name}: ${message}`);
          if (holding > 0) {
            await held.query('ROLLBACK').catch(() => {});
            holding = 0;
          }
        }
        await new Promise((r) => setTimeout(r, Math.floor(rnd() * 15)));
      }
      if (holding > 0) await held.query('COMMIT');
    } finally {
      // ending the sessions publishes their statistics
      await w.end();
      await held.end();
    }
  })();

  const failed: string[] = [];
  for (let i = 0; i < RUNS; i++) {
    const run = await call();
    if (run.status !== 'COMPLETED') failed.push(`run ${i}: ${run.status} ${run.error_message}`);
    // what finance settled stays as it was (SETTLED_CLAIM_CHANGED / REMOVED check the record too)
    const { rows } = await runner.query<{ k: string; v: string }>(
      `SELECT lead_source_pk || ' M' || milestone AS k, concat_ws(' ', status, amount_expected, paid_at) AS v
       FROM canon.claims_yango_cabinet_14d WHERE status IN ('paid', 'rejected')`);
    for (const r of rows) if (!settled.has(r.k)) settled.set(r.k, r.v);
  }
  done = true;
  await writer;
  t.deepEqual(writerErrors, []);
  t.deepEqual(failed, []);

  // What the writer committed last is read by the next run.
  t.is((await call()).status, 'COMPLETED');
  t.is(await stateDrift(db), 0, 'the stored state equals the live definition for every lead');
  const [rows] = await db.query<{ leads: number; limbo: number; missing: number }>(`
    SELECT (SELECT count(*) FROM public.module_ct_cabinet_leads WHERE isfinite(lead_created_at))::int AS leads,
           (SELECT count(*) FROM ops.v_cabinet_leads_limbo)::int AS limbo,
           (SELECT count(*) FROM public.module_ct_cabinet_leads l
            WHERE isfinite(l.lead_created_at) AND NOT EXISTS (SELECT 1 FROM ops.v_cabinet_leads_limbo v WHERE v.lead_id = l.id))::int AS missing`);
  t.is(rows!.limbo, rows!.leads);
  t.is(rows!.missing, 0);
  const now = await db.query<{ k: string; v: string }>(
    `SELECT lead_source_pk || ' M' || milestone AS k, concat_ws(' ', status, amount_expected, paid_at) AS v
     FROM canon.claims_yango_cabinet_14d WHERE status IN ('paid', 'rejected')`);
  t.deepEqual(Object.fromEntries(now.map((r) => [r.k, r.v])), Object.fromEntries(settled), 'no paid or rejected claim changed');
  t.deepEqual(await violations(db), []);
  t.log(`${RUNS} runs, ${n} writes (seed ${seed}): ${JSON.stringify(counts)}; ${settled.size} claims settled`);
  t.true(settled.size > 0 && (counts['leadLowId'] ?? 0) > 0 && (counts['tripsDeletedAndVacuumed'] ?? 0) > 0);
});
