// The limbo view at the growth volume of issue 4 (1M leads, 1M drivers, 30M trip rows):
//   npm run bench:limbo -- [--leads 1000000] [--drivers 1000000] [--trip-days 30] [--linked-pct 70] [--baseline 1]
// Data is written straight in SQL (generate_series): leads spread over 60 days, one
// driver per lead number with a trip row per day (both date formats), a person with a
// lead link and a driver link for --linked-pct % of the leads. Then one pipeline run
// (p_limit 0: no matching, the day's sweep evaluates every lead of the 62-day scope and
// generates the claims) stores the lead state, and the view is timed:
//   * counts per stage (the SPEC query), one lead by lead_source_pk and by lead_id, the
//     weekly funnel and `cabinet-leads report` (read and rendered), and a run with nothing
//     new; the funnel and the report again with 2,000 leads newer than the last run, after
//     finance marked half the claims paid, and after the run that stores those payments;
//   * baselines in the same run (--baseline 1): the same count over the live definition
//     (canon.v_cabinet_lead_status, what the view computed before it was stored); the
//     funnel's previous definition, a pass over the limbo and expected-claims views
//     (bench/sql/funnel_from_views.sql), and the report's previous reads of the leads to
//     act on (bench/sql/oldest_actionable_from_view.sql, stage_actions_from_view.sql), each
//     checked to give the same rows; and as a floor, the stored state counted per lead
//     date (one pass over its rows).
// EXPLAIN (ANALYZE, BUFFERS) of each query goes to --out.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { PROJECT_ROOT } from '../src/config.js';
import { loadReportData } from '../src/report/data.js';
import { renderReport } from '../src/report/html.js';
import { benchArgs, benchDatabase, intArg, loadAvg, machine, median, ms, pipeline, strArg, table } from './lib.js';

benchArgs(import.meta.url, { values: ['leads', 'drivers', 'trip-days', 'linked-pct', 'baseline', 'out'] });
const opts = {
  leads: intArg('leads', 1_000_000),
  drivers: intArg('drivers', 1_000_000),
  tripDays: intArg('trip-days', 30),
  linkedPct: intArg('linked-pct', 70),
  baseline: intArg('baseline', 1),
  out: strArg('out', 'bench/out'),
};
mkdirSync(opts.out, { recursive: true });

const results: string[][] = [['measure', 'value', 'load avg (1/5/15 min)']];
const record = (measure: string, value: string) => {
  results.push([measure, value, loadAvg()]);
  console.log(`  ${measure} | ${value} | load ${loadAvg()}`);
};

const db = await benchDatabase('limbo');
try {
  console.log(`machine: ${machine(db.serverVersion)}`);
  console.log(`command: npm run bench:limbo -- --leads ${opts.leads} --drivers ${opts.drivers} --trip-days ${opts.tripDays} --linked-pct ${opts.linkedPct}`);
  const q = async (sql: string, params: unknown[] = []) => db.pool.query(sql, params);
  const timed = async (label: string, sql: string) => {
    const t = performance.now();
    await q(sql);
    const took = performance.now() - t;
    record(`setup: ${label}`, ms(took));
    return took;
  };

  // ------------------------------------------------------------------ data, in SQL
  await q(`UPDATE canon.settings SET value = '08e20910d81d42658d4334d3f6d10ac0' WHERE key = 'target_park_id'`);
  await timed(
    `${opts.leads} leads`,
    `INSERT INTO public.module_ct_cabinet_leads (external_id, lead_created_at, first_name, last_name, park_phone, asset_plate_number)
     SELECT 'L' || g, (t.today - (g % 60))::timestamp + time '10:30', 'Nombre' || (g % 997), 'Apellido' || (g % 991),
            (900000000 + g)::text, 'P' || lpad(g::text, 7, '0')
     FROM (SELECT canon.business_today() AS today) t, generate_series(1, ${opts.leads}) g`,
  );
  await timed(
    `${opts.drivers} drivers`,
    // Drivers of long standing (updated_at in the past), as in production: the index
    // refresh re-reads drivers updated in the last hour on every run.
    `INSERT INTO public.drivers (driver_id, park_id, first_name, last_name, phone, car_number, hire_date, created_at, updated_at)
     SELECT 'D' || g, '08e20910d81d42658d4334d3f6d10ac0', 'Nombre' || (g % 997), 'Apellido' || (g % 991),
            '51' || (900000000 + g), 'P' || lpad(g::text, 7, '0'), DATE '2020-01-01', TIMESTAMP '2020-01-01', TIMESTAMP '2020-01-01'
     FROM generate_series(1, ${opts.drivers}) g`,
  );
  // Bulk load then one index build (as a DBA would for a load of this size).
  await q(`DROP INDEX public.summary_daily_driver_trip_date_idx`);
  await timed(
    `${opts.drivers * opts.tripDays} trip rows`,
    `INSERT INTO public.summary_daily (driver_id, date_file, count_orders_completed, sum_work_time_seconds)
     SELECT 'D' || g,
            CASE WHEN d % 2 = 0 THEN to_char(t.today - d, 'YYYY-MM-DD') ELSE to_char(t.today - d, 'DD-MM-YYYY') END,
            (hashint4(g * 31 + d) & 3), 3600
     FROM (SELECT canon.business_today() AS today) t, generate_series(1, ${opts.drivers}) g, generate_series(0, ${opts.tripDays - 1}) d`,
  );
  await timed(
    'trip index build',
    `CREATE INDEX summary_daily_driver_trip_date_idx ON public.summary_daily (driver_id, canon.parse_date_file(date_file))`,
  );
  // Persons and links written directly (no matching here); triggers off for the bulk write,
  // the run's sweep evaluates everything afterwards.
  const c = await db.pool.connect();
  try {
    await c.query(`SET session_replication_role = replica`);
    const t = performance.now();
    await c.query(`CREATE TEMP TABLE linked AS
                   SELECT g, gen_random_uuid() AS person_key FROM generate_series(1, least(${opts.leads}, ${opts.drivers})) g
                   WHERE (hashint4(g) & 2147483647) % 100 < ${opts.linkedPct}`);
    await c.query(`INSERT INTO canon.identity_registry (person_key, confidence_level) SELECT person_key, 'HIGH' FROM linked`);
    await c.query(`INSERT INTO canon.identity_links (source_table, source_pk, person_key, match_rule, match_score, confidence_level)
                   SELECT 'module_ct_cabinet_leads', 'L' || g, person_key, 'R1_PHONE_EXACT', 95, 'HIGH' FROM linked
                   UNION ALL
                   SELECT 'drivers', 'D' || g, person_key, 'R1_PHONE_EXACT', 95, 'HIGH' FROM linked`);
    await c.query(`INSERT INTO canon.identity_origin (person_key, origin_tag, origin_source_id, confidence_level, origin_created_at, decided_by)
                   SELECT person_key, 'cabinet_lead', 'L' || g, 'HIGH', now(), 'system' FROM linked`);
    record('setup: persons and links', `${ms(performance.now() - t)}`);
  } finally {
    await c.query(`RESET session_replication_role`);
    c.release();
  }
  await timed('ANALYZE', `ANALYZE`);

  // ------------------------------------------------------------------ the state, by the pipeline
  const build = await pipeline(db, `p_days_back => 62, p_limit => 0`);
  const ls = build.stats['claims']['lead_state'];
  record(
    'pipeline run storing every lead (sweep, limit 0)',
    `${ms(build.ms)} end to end; step 7 ${ms(build.stats['durations_ms']['generate_cabinet_claims'])} (${ls.evaluated} leads evaluated, ${build.stats['claims']['claims_generated']} claims generated), snapshot ${ms(build.stats['durations_ms']['snapshot_limbo'])}`,
  );
  await q(`VACUUM ANALYZE canon_internal.cabinet_lead_state`);

  // ------------------------------------------------------------------ the view
  const explain = async (file: string, sql: string, params: unknown[] = []) => {
    const r = await q(`EXPLAIN (ANALYZE, BUFFERS) ${sql}`, params);
    const text = r.rows.map((x: Record<string, string>) => x['QUERY PLAN']).join('\n');
    writeFileSync(path.join(opts.out, file), `${sql}\n\n${text}\n`);
    const m = /Execution Time: ([\d.]+) ms/.exec(text);
    const p = /Planning Time: ([\d.]+) ms/.exec(text);
    return { exec: Number(m?.[1]), plan: Number(p?.[1]) };
  };
  const client = async (sql: string, params: unknown[] = [], n = 5) => {
    const xs: number[] = [];
    for (let i = 0; i < n; i++) {
      const t = performance.now();
      await q(sql, typeof params === 'function' ? (params as (i: number) => unknown[])(i) : params);
      xs.push(performance.now() - t);
    }
    return median(xs);
  };
  const SPEC = `SELECT limbo_stage, COUNT(*) AS count FROM ops.v_cabinet_leads_limbo GROUP BY limbo_stage ORDER BY count DESC`;
  const counts = await q(SPEC);
  record('stage counts', JSON.stringify(Object.fromEntries(counts.rows.map((r: { limbo_stage: string; count: string }) => [r.limbo_stage, Number(r.count)]))));
  const e1 = await explain('limbo-scale-stage-counts.explain.txt', SPEC);
  const c1 = await client(SPEC);
  record('view: counts per stage (SPEC query), EXPLAIN exec / client median of 5', `${ms(e1.exec)} / ${ms(c1)}`);

  const keys = Array.from({ length: 11 }, (_, i) => `L${1 + Math.floor(((i + 1) * opts.leads) / 13)}`);
  const byKey = `SELECT * FROM ops.v_cabinet_leads_limbo WHERE lead_source_pk = $1`;
  const e2 = await explain('limbo-scale-one-lead-by-key.explain.txt', byKey, [keys[0]]);
  const c2 = await client(byKey, ((i: number) => [keys[i % keys.length]]) as never, 11);
  record('view: one lead by lead_source_pk, EXPLAIN plan + exec / client median of 11 keys', `${ms(e2.plan)} + ${ms(e2.exec)} / ${ms(c2)}`);
  const byId = `SELECT * FROM ops.v_cabinet_leads_limbo WHERE lead_id = $1`;
  const e3 = await explain('limbo-scale-one-lead-by-id.explain.txt', byId, [Math.floor(opts.leads / 3)]);
  const c3 = await client(byId, ((i: number) => [1 + Math.floor(((i + 1) * opts.leads) / 13)]) as never, 11);
  record('view: one lead by lead_id, EXPLAIN plan + exec / client median of 11', `${ms(e3.plan)} + ${ms(e3.exec)} / ${ms(c3)}`);
  // The weekly funnel and the report: each timed with the floor and the funnel's previous
  // definition in the same minute (the baseline runs on a client of its own with jit off,
  // as the report reads).
  const funnel = `SELECT * FROM ops.v_cabinet_14d_funnel_weekly ORDER BY week_start`;
  const FUNNEL_FLOOR = `SELECT lead_date, count(*) FROM canon_internal.cabinet_lead_state GROUP BY lead_date`;
  const benchSql = (name: string) => readFileSync(path.join(PROJECT_ROOT, 'bench', 'sql', name), 'utf8');
  const FUNNEL_FROM_VIEWS = `${benchSql('funnel_from_views.sql')} ORDER BY week_start`;
  const OLDEST_FROM_VIEW = benchSql('oldest_actionable_from_view.sql');
  const ACTIONS_FROM_VIEW = benchSql('stage_actions_from_view.sql');
  const funnelAndReport = async (when: string, file: string) => {
    const e = await explain(file, funnel);
    const c = await client(funnel, [], 3);
    const floor = await client(FUNNEL_FLOOR, [], 3);
    record(`weekly funnel ${when}: EXPLAIN exec / client median of 3; floor (stored state counted per lead date), client median of 3`,
      `${ms(e.exec)} / ${ms(c)}; floor ${ms(floor)} (funnel / floor ${(c / floor).toFixed(1)}x)`);
    const r: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t = performance.now();
      renderReport(await loadReportData(db.pool));
      r.push(performance.now() - t);
    }
    record(`report ${when} (loadReportData + renderReport), client median of 3`, `${ms(median(r))} (report / floor ${(median(r) / floor).toFixed(1)}x)`);
    if (opts.baseline) {
      const b = await db.pool.connect();
      try {
        await b.query(`SET jit = off`);
        const t = performance.now();
        const before = await b.query(FUNNEL_FROM_VIEWS);
        const took = performance.now() - t;
        const now = await b.query(funnel);
        const same = JSON.stringify(before.rows) === JSON.stringify(now.rows);
        if (!same) writeFileSync(path.join(opts.out, `${file}.differ.json`), JSON.stringify({ before: before.rows, now: now.rows }, null, 1));
        record(`baseline ${when}: the funnel's previous definition (a pass over the two views), client`,
          `${ms(took)}, ${same ? 'the same rows' : `ROWS DIFFER (${file}.differ.json)`}; previous / now ${(took / c).toFixed(1)}x`);
        // The report's previous reads of the leads to act on: a pass over the limbo view each.
        const t2 = performance.now();
        const oldBefore = await b.query(OLDEST_FROM_VIEW, [10]);
        const actionsBefore = await b.query(ACTIONS_FROM_VIEW);
        const took2 = performance.now() - t2;
        const oldNow = await b.query(`SELECT limbo_stage, lead_id, lead_source_pk, lead_date::text AS lead_date, age_days, lead_name, reason_code,
                                             limbo_reason_detail, stage_total FROM ops.oldest_actionable_leads(10)`);
        const actionsNow = await b.query(`SELECT * FROM ops.limbo_stage_actions()`);
        const same2 = JSON.stringify([oldBefore.rows, actionsBefore.rows]) === JSON.stringify([oldNow.rows, actionsNow.rows]);
        record(`baseline ${when}: the report's previous reads (the funnel's previous definition, then the oldest leads to act on and the counts per stage over the limbo view), client`,
          `${ms(took + took2)}, ${same2 ? 'the same rows' : 'ROWS DIFFER'}; previous / report now ${((took + took2) / median(r)).toFixed(1)}x`);
      } finally {
        await b.query(`RESET jit`);
        b.release();
      }
    }
  };
  await funnelAndReport('after the run', 'limbo-scale-funnel.explain.txt');

  // New leads since the last run are evaluated live: the same queries with 2,000 of them.
  await q(`INSERT INTO public.module_ct_cabinet_leads (external_id, lead_created_at, first_name, last_name, park_phone)
           SELECT 'N' || g, canon.business_today()::timestamp, 'Nuevo', 'Lead', (800000000 + g)::text FROM generate_series(1, 2000) g`);
  await q(`ANALYZE public.module_ct_cabinet_leads`);
  const c5 = await client(SPEC, [], 3);
  const c6 = await client(byKey, ((i: number) => [keys[i % keys.length]]) as never, 11);
  const c7 = await client(byKey, ((i: number) => [`N${1 + i * 150}`]) as never, 11);
  record('with 2,000 leads newer than the last run: counts / one old lead by key / one new lead by key (client medians)', `${ms(c5)} / ${ms(c6)} / ${ms(c7)}`);
  await funnelAndReport('with 2,000 leads newer than the last run', 'limbo-scale-funnel-new-leads.explain.txt');
  const run2 = await pipeline(db, `p_days_back => 62, p_limit => 0`);
  record('next run (incremental: 2,000 new leads stored; limit 0)', `${ms(run2.ms)} end to end, step 7 ${ms(run2.stats['durations_ms']['generate_cabinet_claims'])}, snapshot ${ms(run2.stats['durations_ms']['snapshot_limbo'])}`);
  const run3 = await pipeline(db, `p_days_back => 62, p_limit => 0`);
  record('run with nothing new (limit 0)', `${ms(run3.ms)} end to end: ${JSON.stringify(run3.stats['durations_ms'])}`);

  // Finance pays half the claims (a status change marks nothing: the funnel reads them live).
  const paid = await q(`UPDATE canon.claims_yango_cabinet_14d SET status = 'paid', paid_at = now()
                        WHERE status = 'generated' AND hashtext(lead_source_pk) % 2 = 0`);
  record('claims marked paid', String(paid.rowCount));
  await q(`VACUUM ANALYZE canon.claims_yango_cabinet_14d`);
  await funnelAndReport('with half the claims paid', 'limbo-scale-funnel-paid.explain.txt');
  const run4 = await pipeline(db, `p_days_back => 62, p_limit => 0`);
  record('next run (the leads of the claims paid re-evaluated; limit 0)',
    `${ms(run4.ms)} end to end, step 7 ${ms(run4.stats['durations_ms']['generate_cabinet_claims'])} (${run4.stats['claims']['lead_state'].evaluated} leads evaluated)`);
  await funnelAndReport('after that run', 'limbo-scale-funnel-paid-stored.explain.txt');

  if (opts.baseline) {
    const live = `SELECT limbo_stage, count(*) FROM canon.v_cabinet_lead_status GROUP BY limbo_stage`;
    const t = performance.now();
    await q(`SET jit = off`);
    await q(live);
    const took = performance.now() - t;
    record('baseline: the same counts over the live definition (canon.v_cabinet_lead_status), client', ms(took));
    record('ratio baseline / view (counts per stage)', `${(took / c1).toFixed(1)}x`);
  }
  const size = await q(`SELECT pg_size_pretty(pg_database_size(current_database())) AS db,
                               pg_size_pretty(pg_total_relation_size('canon_internal.cabinet_lead_state')) AS state`);
  record('database size / canon_internal.cabinet_lead_state with indexes', `${size.rows[0].db} / ${size.rows[0].state}`);
  console.log('\n' + table(results));
} finally {
  await db.close();
}
