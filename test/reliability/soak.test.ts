// Soak (issue 8, scenario 6): 200 consecutive runs on a data set that grows between them
// (new leads, drivers and trips each time; leads that find their driver one run later;
// leads that never will; now and then a garbage trip date). After every run the
// invariants hold and the counts add up; the first and last run times are logged (not
// asserted: CI machines vary) so that growth beyond the data's shows in the test output.
import test from 'ava';
import { createTestDb } from '../helpers/db.js';
import { seedDemo, violations } from './support.js';

const RUNS = Number(process.env.SOAK_RUNS ?? 200);
const PARK = '08e20910d81d42658d4334d3f6d10ac0';

// Iteration $1: four drivers and five leads. Leads 0-2 match this iteration's drivers (by
// phone, in three formats), lead 3 matches the driver that arrives with the next
// iteration, lead 4 has no key at all. Trips for the previous iteration's drivers, on
// their leads' dates, in both date formats; every 10th iteration a garbage date too.
const GROW = `
WITH p AS (SELECT $1::int AS i, canon.business_today() AS today),
drivers AS (
  INSERT INTO public.drivers (driver_id, park_id, first_name, last_name, phone, car_number, hire_date, created_at, updated_at)
  SELECT 'soak-d-' || p.i || '-' || k, '${PARK}', 'Conductor' || k, 'Soak' || p.i,
         CASE WHEN k = 3 THEN '51' || (900000000 + (p.i - 1) * 10 + 3)::text ELSE '51' || (900000000 + p.i * 10 + k)::text END,
         'SK' || p.i || 'X' || k, p.today - 5, now()::timestamp, now()::timestamp
  FROM p CROSS JOIN generate_series(0, 3) k
  RETURNING 1
),
leads AS (
  INSERT INTO public.module_ct_cabinet_leads (external_id, lead_created_at, first_name, last_name, park_phone)
  SELECT 'soak-l-' || p.i || '-' || k, (p.today - (p.i + k) % 20)::timestamp + time '09:15',
         CASE WHEN k = 4 THEN NULL ELSE 'Conductor' || k END, CASE WHEN k = 4 THEN NULL ELSE 'Soak' || p.i END,
         CASE k WHEN 0 THEN (900000000 + p.i * 10)::text
                WHEN 1 THEN '+51 ' || (900000000 + p.i * 10 + 1)::text
                WHEN 2 THEN '0051' || (900000000 + p.i * 10 + 2)::text
                WHEN 3 THEN (900000000 + p.i * 10 + 3)::text END
  FROM p CROSS JOIN generate_series(0, 4) k
  RETURNING 1
),
trips AS (
  INSERT INTO public.summary_daily (driver_id, date_file, count_orders_completed, sum_work_time_seconds)
  SELECT 'soak-d-' || (p.i - 1) || '-' || k,
         CASE WHEN k % 2 = 0 THEN to_char(p.today - (p.i - 1 + k) % 20, 'YYYY-MM-DD') ELSE to_char(p.today - (p.i - 1 + k) % 20, 'DD-MM-YYYY') END,
         6, 7200
  FROM p CROSS JOIN generate_series(0, 2) k
  WHERE p.i > 0
  UNION ALL
  SELECT 'soak-d-' || p.i || '-0', '31-02-2026', 1, 60 FROM p WHERE p.i % 10 = 0
  RETURNING 1
)
SELECT (SELECT count(*) FROM drivers) AS drivers, (SELECT count(*) FROM leads) AS leads, (SELECT count(*) FROM trips) AS trips`;

// After a run: the invariants that fail, and lead keys of the window neither linked nor unmatched.
const CHECK = `
SELECT (SELECT coalesce(jsonb_agg(invariant), '[]'::jsonb) FROM ops.check_invariants() WHERE violations > 0) AS broken,
       (SELECT count(*)::int FROM canon_internal.lead_keys k
        WHERE k.lead_date >= canon.business_today() - 30
          AND NOT EXISTS (SELECT 1 FROM canon.identity_links l WHERE l.source_table = 'module_ct_cabinet_leads' AND l.source_pk = k.lead_source_pk)
          AND NOT EXISTS (SELECT 1 FROM canon.identity_unmatched u WHERE u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = k.lead_source_pk)) AS not_evaluated,
       (SELECT count(*)::int FROM public.module_ct_cabinet_leads) AS leads`;

interface MatchStats {
  leads_selected: number;
  leads_evaluated: number;
  newly_linked: number;
  unmatched: number;
  previously_unmatched_now_linked: number;
}

test(`${RUNS} consecutive runs on a growing data set: invariants hold and counts add up after each`, async (t) => {
  t.timeout(240_000);
  const db = await createTestDb('rel_soak');
  t.teardown(() => db.drop());
  await seedDemo(db, { seed: 86, leads: 100, drivers: 200, tripDays: 20 });
  const c = await db.connect();
  const first = await c.query<{ run: { status: string } }>(`CALL ops.reconcile_cabinet_leads_pipeline(p_days_back => 30, p_limit => 100000)`);
  t.is(first.rows[0]!.run.status, 'COMPLETED');

  const durations: number[] = [];
  const steps: string[] = [];
  const problems: string[] = [];
  for (let i = 0; i < RUNS; i++) {
    await c.query(GROW, [i]);
    const { rows } = await c.query<{ run: { status: string; error_message: string | null; stats: { match: MatchStats; durations_ms: { total: number } } } }>(
      `CALL ops.reconcile_cabinet_leads_pipeline(p_days_back => 30, p_limit => 100000, p_raise_on_failure => false)`,
    );
    const run = rows[0]!.run;
    const m = run.stats.match;
    const { rows: [check] } = await c.query<{ broken: string[]; not_evaluated: number; leads: number }>(CHECK);
    durations.push(run.stats.durations_ms.total);
    const expected = {
      status: 'COMPLETED',
      // the new leads, and the unmatched lead 3 of the previous iteration, whose driver
      // arrives now (targeted retries: no other unmatched lead shares a key with a new driver)
      selected: 5 + (i === 0 ? 0 : 1),
      evaluated: m.leads_selected,
      outcome: m.leads_evaluated, // each evaluated lead is either linked or unmatched
      linked: i === 0 ? 3 : 4, // leads 0-2 of this iteration, lead 3 of the previous one
      relinked: i === 0 ? 0 : 1,
      broken: [] as string[],
      not_evaluated: 0,
    };
    const actual = {
      status: run.status,
      selected: m.leads_selected,
      evaluated: m.leads_evaluated,
      outcome: m.newly_linked + m.unmatched,
      linked: m.newly_linked,
      relinked: m.previously_unmatched_now_linked,
      broken: check!.broken,
      not_evaluated: check!.not_evaluated,
    };
    if (JSON.stringify(actual) !== JSON.stringify(expected)) {
      problems.push(`run ${i}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)} ${run.error_message ?? ''}`);
      if (problems.length >= 3) break;
    }
    if (i === 0 || i === RUNS - 1) steps.push(`run ${i + 1}: ${JSON.stringify(run.stats.durations_ms)}`);
  }
  t.deepEqual(problems, []);

  const avg = (xs: number[]) => Math.round(xs.reduce((a, b) => a + b, 0) / xs.length);
  const { rows: [last] } = await c.query<{ leads: number }>(CHECK);
  t.log(`${durations.length} runs, ${last!.leads} leads at the end; run time (ms, SQL side): first 10 avg ${avg(durations.slice(0, 10))}, last 10 avg ${avg(durations.slice(-10))}`);
  t.log(steps.join('\n'));
  t.deepEqual(await violations(db), []);
});
