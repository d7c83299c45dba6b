// Hostile input (issue 8, scenario 4; SPEC 11): the demo generator's hostile rows plus
// ours (NULLs everywhere, emoji and other scripts, invisible characters, 10 kB strings,
// duplicated external ids, leads without date or with dates at the edge of the type,
// trip rows with garbage dates, drivers without id or twice the same id, drivers deleted
// between runs, SQL-looking text). Every run completes, every bad row is accounted for in
// the run's stats or a view, and nothing raises.
import test from 'ava';
import { createTestDb, one, type TestDb } from '../helpers/db.js';
import { runPipeline, type RunResult } from '../helpers/pipeline.js';
import { leadKeysNotEvaluated, seedDemo, violations } from './support.js';

const RUN = 'p_days_back => 30, p_limit => 100000';

/** Our hostile rows, on top of the demo generator's (lead keys start with H-). */
const HOSTILE_ROWS = String.raw`
INSERT INTO public.module_ct_cabinet_leads
  (external_id, lead_created_at, first_name, middle_name, last_name, park_phone, asset_plate_number, asset_model, status, park_name)
VALUES
  (NULL, now()::timestamp - interval '1 day', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  ('H-ARABIC', now()::timestamp - interval '2 days', 'محمد', NULL, 'علي', '٩٧٧٤٥٦٣٢١', 'ＡＢＣ１２３', NULL, NULL, NULL),
  ('H-CJK', now()::timestamp - interval '2 days', '王', '伟', '李', '＋５１ ９７７ ４５６ ３２１', '京A·12345', NULL, NULL, NULL),
  ('H-DEVANAGARI', now()::timestamp - interval '2 days', 'राहुल', NULL, 'शर्मा', NULL, 'ठ१२३', NULL, NULL, NULL),
  ('H-INVISIBLE', now()::timestamp - interval '2 days', E'👨\u200D👩\u200D👧', E'\u200F\u202E', E'Jose\u0301 Pe\u0301rez',
   E'\u200B977\u200B456\u200B321', E'\uFEFFABC-123', NULL, NULL, NULL),
  ('H-LONG', now()::timestamp - interval '3 days', (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 320) g),
   (SELECT string_agg(md5(g::text), ' ') FROM generate_series(1, 320) g), repeat('Ñandú ', 2000),
   (SELECT string_agg((g % 10)::text, '') FROM generate_series(1, 10240) g),
   (SELECT string_agg(md5(g::text), '-') FROM generate_series(1, 320) g), repeat('Toyota ', 1500), repeat('x', 10240), repeat('p', 10240)),
  ('H-DUP', now()::timestamp - interval '4 days', 'Ana', NULL, 'Lopez', '977000111', NULL, NULL, NULL, NULL),
  ('H-DUP', now()::timestamp - interval '3 days', 'Ana Maria', NULL, 'Lopez', '977000112', NULL, NULL, NULL, NULL),
  ('H-DUP', now()::timestamp - interval '2 days', 'Otra', NULL, 'Persona', NULL, 'ZZZ999', NULL, NULL, NULL),
  ('  H-DUP2  ', now()::timestamp - interval '2 days', 'Luis', NULL, 'Diaz', NULL, NULL, NULL, NULL, NULL),
  ('H-DUP2', now()::timestamp - interval '2 days', 'Luis', NULL, 'Diaz', NULL, NULL, NULL, NULL, NULL),
  ('', now()::timestamp - interval '2 days', 'Blank', NULL, 'Key', NULL, NULL, NULL, NULL, NULL),
  ('   ', now()::timestamp - interval '2 days', 'Blanks', NULL, 'Key', NULL, NULL, NULL, NULL, NULL),
  ('H-NODATE-1', NULL, 'Sin', NULL, 'Fecha', '977456321', 'ABC123', NULL, NULL, NULL),
  ('H-NODATE-2', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  ($q$H-SQL'); DROP TABLE canon.identity_links; --$q$, now()::timestamp - interval '2 days', $q$Robert'); DELETE FROM public.drivers; --$q$,
   $q$%_\$q$, $q$' OR '1'='1$q$, $q$1; SELECT pg_sleep(10); --$q$, $q$$$; SELECT 1; $$$q$, NULL, NULL, NULL),
  ('H-INFINITY', 'infinity', 'Infinito', NULL, 'Futuro', '977999111', NULL, NULL, NULL, NULL),
  ('H-FUTURE', '2999-12-31 23:59:59', 'Muy', NULL, 'Futuro', '977999112', NULL, NULL, NULL, NULL);

INSERT INTO public.drivers (driver_id, park_id, first_name, last_name, full_name, phone, license_number, car_number, hire_date) VALUES
  ('   ', '08e20910d81d42658d4334d3f6d10ac0', 'Blank', 'Id', NULL, '977123002', NULL, 'NID002', current_date),
  ('h-drv-dup', '08e20910d81d42658d4334d3f6d10ac0', 'Dup', 'One', NULL, '977123003', NULL, NULL, current_date),
  ('h-drv-dup', 'otherpark', 'Dup', 'Two', NULL, '977123004', NULL, NULL, current_date),
  ('h-drv-long', NULL, repeat('Ñ', 10240), NULL, (SELECT string_agg(md5(g::text), ' ') FROM generate_series(1, 320) g),
   (SELECT string_agg((g % 10)::text, '') FROM generate_series(1, 10240) g), (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 320) g),
   (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 320) g), NULL),
  ('h-drv-emoji', '08e20910d81d42658d4334d3f6d10ac0', '🚕', '😀', '🚕 😀 👍', '📞', '🪪', '🚗', 'infinity'),
  ($q$h-drv'); DROP TABLE canon.claims_yango_cabinet_14d; --$q$, $q$' OR 1=1 --$q$, $q$Robert'); --$q$, NULL, NULL,
   $q$1' OR '1'='1$q$, NULL, $q$'; --$q$, '-infinity'),
  ('h-drv-nulls', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);

-- Garbage dates on the trips of three drivers (whoever they are), and rows without driver.
INSERT INTO public.summary_daily (driver_id, date_file, count_orders_completed, sum_work_time_seconds)
SELECT drv.driver_id, g.f, g.n, 3600
FROM (SELECT driver_id FROM public.drivers WHERE btrim(driver_id) <> '' ORDER BY id LIMIT 3) drv
CROSS JOIN (VALUES ('31-02-2026', 3), ('2026-02-30', 3), ('00-00-0000', 1), ('2026-13-01', 1), ('13/01/2026', 1),
                   ('yesterday', 1), ('', 1), ('   ', 1), (NULL, 1), (repeat('9', 10240), 1), ('٢٠٢٦-٠١-٠١', 1),
                   ('2026-01-01T00:00:00', 1), ($q$'; DROP TABLE summary_daily; --$q$, 1), ('infinity', 1),
                   ('01-01-0000', 1), ('29-02-2025', 1)) g (f, n);
INSERT INTO public.summary_daily (driver_id, date_file, count_orders_completed, sum_work_time_seconds) VALUES
  (NULL, to_char(current_date, 'YYYY-MM-DD'), 5, 100),
  ('', to_char(current_date, 'DD-MM-YYYY'), 5, 100),
  ('h-drv-unknown', to_char(current_date, 'YYYY-MM-DD'), NULL, NULL);
`;

const GARBAGE_DATES_PER_DRIVER = 16;

/** Every ops view and operator function still answers over the hostile data. */
async function readEverything(db: TestDb): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const view of ['v_cabinet_leads_limbo', 'v_cabinet_claims_expected_14d', 'v_cabinet_claims_gap_14d', 'v_cabinet_14d_funnel_weekly',
    'v_trip_rows_unparseable', 'v_shared_keys', 'v_limbo_history']) {
    out[view] = Number(await one<string>(db, `SELECT count(*) AS v FROM ops.${view}`));
  }
  out['explained'] = Number(await one<string>(db, `SELECT count(ops.explain_lead(k)) AS v FROM (SELECT DISTINCT lead_source_pk AS k FROM canon_internal.lead_keys WHERE lead_source_pk LIKE 'H-%') x`));
  return out;
}

test('a data set full of bad rows: the runs complete, every bad row is accounted for in the stats or a view, nothing raises', async (t) => {
  t.timeout(120_000);
  const db = await createTestDb('rel_hostile');
  t.teardown(() => db.drop());
  await seedDemo(db, { seed: 83 });
  await db.query(HOSTILE_ROWS);
  const scopeFrom = await one<string>(db, `SELECT (canon.business_today() - 30)::text AS v`);

  // Run 1: everything new.
  const first: RunResult = await runPipeline(db, RUN);
  t.is(first.status, 'COMPLETED', first.error_message ?? '');
  const m = first.stats['match'];
  const c = first.stats['claims'];
  const source = (await db.query<{ rows: number; keys: number; no_date: number }>(
    `SELECT count(*) FILTER (WHERE lead_created_at >= $1::date AND isfinite(lead_created_at))::int AS rows,
            count(DISTINCT canon.lead_source_pk(external_id, id)) FILTER (WHERE lead_created_at >= $1::date AND isfinite(lead_created_at))::int AS keys,
            count(*) FILTER (WHERE lead_created_at IS NULL OR NOT isfinite(lead_created_at))::int AS no_date
     FROM public.module_ct_cabinet_leads`,
    [scopeFrom],
  ))[0]!;
  // Leads without a date (NULL, or 'infinity', which starts no window): counted, never evaluated.
  t.is(m['leads_without_lead_created_at'], source.no_date);
  t.true(source.no_date >= 2 + 1, 'ours and the demo generator');
  // Duplicated external ids (also up to blanks): one evaluation per key, the extra rows counted.
  t.is(m['leads_selected'], source.keys);
  t.is(m['leads_evaluated'], source.keys);
  t.is(m['batch']['duplicate_key_rows'], source.rows - source.keys);
  t.true(source.rows - source.keys >= 3, `duplicate rows ${source.rows - source.keys}`);
  t.is(c['leads_in_scope'], source.rows);
  t.is(c['lead_keys_in_scope'], source.keys);
  // Every evaluated key is linked or unmatched with a reason: the counters add up.
  const byReason = m['unmatched_by_reason'] as Record<string, number>;
  t.is(m['newly_linked'] + Object.values(byReason).reduce((a, b) => a + b, 0), source.keys);
  t.deepEqual(await leadKeysNotEvaluated(db), []);
  t.true((byReason['MISSING_KEYS'] ?? 0) >= 5, `MISSING_KEYS ${byReason['MISSING_KEYS']}`);
  // Each of our hostile leads in scope, and the generator's, has an outcome.
  const outcomes = await db.query<{ key: string; outcome: string }>(`
    SELECT left(k.lead_source_pk, 40) AS key,
           coalesce((SELECT 'LINKED ' || l.match_rule FROM canon.identity_links l WHERE l.source_table = 'module_ct_cabinet_leads' AND l.source_pk = k.lead_source_pk),
                    (SELECT u.status || ' ' || u.reason_code FROM canon.identity_unmatched u WHERE u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = k.lead_source_pk),
                    CASE WHEN k.lead_date IS NULL THEN 'NO LEAD DATE (counted)' ELSE 'NONE' END) AS outcome
    FROM canon_internal.lead_keys k
    WHERE k.lead_source_pk LIKE 'H-%' OR k.lead_id IN (SELECT lead_id FROM demo.lead_truth WHERE scenario LIKE 'HOSTILE%')
    ORDER BY 1`);
  t.false(outcomes.some((o) => o.outcome === 'NONE'), JSON.stringify(outcomes));
  t.log(outcomes.map((o) => `${o.key}: ${o.outcome}`).join('\n'));

  // Trip rows that cannot count: the scope drivers' ones in the stats, all of them in the view by reason.
  const unparseableOfScopeDrivers = await one<string>(
    db,
    `SELECT count(*) AS v FROM ops.v_trip_rows_unparseable u
     WHERE u.driver_id IN (SELECT driver_id FROM ops.v_cabinet_leads_limbo WHERE lead_date >= $1::date AND driver_id IS NOT NULL)`,
    [scopeFrom],
  );
  t.is(c['trip_rows_unparseable_scope_drivers'], Number(unparseableOfScopeDrivers));
  const reasons = Object.fromEntries(
    (await db.query<{ reason: string; n: number }>(`SELECT reason, count(*)::int AS n FROM ops.v_trip_rows_unparseable GROUP BY reason`)).map((r) => [r.reason, r.n]),
  );
  t.true(reasons['IMPOSSIBLE_DATE']! >= 3 * 5, JSON.stringify(reasons)); // 31-02, 02-30, 00-00, 13th month, 29-02-2025, 01-01-0000...
  t.true(reasons['MISSING_DATE']! >= 3 * 3);
  t.true(reasons['UNKNOWN_DATE_FORMAT']! >= 3 * 6);
  t.true(reasons['MISSING_DRIVER_ID']! >= 2);
  const ours = Number(await one<string>(db, `SELECT count(*) AS v FROM public.summary_daily WHERE canon.parse_date_file(date_file) IS NULL`));
  t.true(ours >= 3 * GARBAGE_DATES_PER_DRIVER);
  // Drivers: one index entry per distinct usable driver_id.
  t.is(first.stats['driver_index']['drivers_scanned'],
    Number(await one<string>(db, `SELECT count(DISTINCT driver_id) AS v FROM public.drivers WHERE btrim(driver_id) <> ''`)));

  // Between runs: two linked drivers deleted upstream, and a new lead whose only match is a
  // driver deleted after the last run indexed it (an incremental refresh still lists it).
  const gone = await db.query<{ driver_id: string; lead_key: string }>(`
    SELECT d.source_pk AS driver_id, min(l.source_pk) AS lead_key
    FROM canon.identity_links d JOIN canon.identity_links l ON l.person_key = d.person_key AND l.source_table = 'module_ct_cabinet_leads'
    WHERE d.source_table = 'drivers' GROUP BY d.source_pk ORDER BY d.source_pk LIMIT 2`);
  const [bait] = await db.query<{ driver_id: string; phone: string }>(`
    SELECT i.driver_id, d.phone FROM canon_internal.driver_index i JOIN public.drivers d ON d.driver_id = i.driver_id
    WHERE i.phone_norm IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM canon.identity_links l WHERE l.source_table = 'drivers' AND l.source_pk = i.driver_id)
      AND (SELECT count(*) FROM canon_internal.driver_index o WHERE o.phone_norm = i.phone_norm) = 1
      AND NOT EXISTS (SELECT 1 FROM canon_internal.lead_keys k WHERE k.phone_norm = i.phone_norm)
    ORDER BY i.driver_id LIMIT 1`);
  t.truthy(bait, 'a driver with a phone of its own');
  await db.query(`DELETE FROM public.drivers WHERE driver_id = ANY ($1)`, [[...gone.map((g) => g.driver_id), bait!.driver_id]]);
  await db.query(
    `INSERT INTO public.module_ct_cabinet_leads (external_id, lead_created_at, first_name, last_name, park_phone)
     VALUES ('H-DELETED-DRIVER', now()::timestamp, 'Cebo', 'Borrado', $1)`,
    [bait!.phone],
  );

  const second = await runPipeline(db, RUN);
  t.is(second.status, 'COMPLETED', second.error_message ?? '');
  // Only the new lead: deleting drivers changes the index only at the next full refresh, so
  // the unmatched leads are not retried (nothing they could match has changed).
  t.is(second.stats['match']['leads_selected'], 1, 'the new lead');
  t.is(second.stats['match']['retries_skipped_no_index_change'], Object.values(byReason).reduce((a, b) => a + b, 0), 'no retries');
  const [baitOutcome] = await db.query<{ linked: boolean; reason_code: string | null; candidates: { driver_id: string; reject_reason: string | null }[] }>(`
    SELECT EXISTS (SELECT 1 FROM canon.identity_links l WHERE l.source_table = 'module_ct_cabinet_leads' AND l.source_pk = 'H-DELETED-DRIVER') AS linked,
           u.reason_code, u.candidates
    FROM canon.identity_unmatched u WHERE u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = 'H-DELETED-DRIVER'`);
  t.truthy(baitOutcome, 'the lead matching only a deleted driver is unmatched');
  t.false(baitOutcome!.linked);
  t.deepEqual(baitOutcome!.candidates.map((x) => [x.driver_id, x.reject_reason]), [[bait!.driver_id, 'DRIVER_DELETED']]);
  // Leads whose driver disappeared keep their history: still linked, one limbo row each.
  for (const g of gone) {
    const rows = await db.query(`SELECT 1 FROM ops.v_cabinet_leads_limbo WHERE lead_source_pk = $1`, [g.lead_key]);
    t.is(rows.length, 1);
  }
  t.deepEqual(await leadKeysNotEvaluated(db), []);

  const read = await readEverything(db);
  t.true(read['v_cabinet_leads_limbo']! > 0 && read['explained']! >= 10, JSON.stringify(read));
  t.deepEqual(await violations(db), []);
});

// A key longer than a btree entry allows (about 2.7 kB that do not compress) would stop
// every run ("index row requires 10256 bytes"): leads and drivers whose key is over 200
// characters are set aside and counted instead. The demo schema indexes these upstream
// columns, so the test drops those indexes first, as an upstream without them would
// accept the rows.
test('10 kB keys (an external_id, a driver_id) do not stop the run, and are counted', async (t) => {
  t.timeout(60_000);
  const db = await createTestDb('rel_hostile_keys');
  t.teardown(() => db.drop());
  await seedDemo(db, { seed: 84, leads: 50, drivers: 100, tripDays: 10 });
  await db.query(`
    DROP INDEX IF EXISTS public.module_ct_cabinet_leads_external_id_idx;
    DROP INDEX IF EXISTS public.drivers_driver_id_idx;
    INSERT INTO public.module_ct_cabinet_leads (external_id, lead_created_at, first_name, park_phone)
    VALUES ((SELECT string_agg(md5(g::text), '') FROM generate_series(1, 320) g), now()::timestamp, 'Long', '977123123');
    INSERT INTO public.drivers (driver_id, park_id, phone)
    VALUES ((SELECT string_agg(md5(g::text || 'd'), '') FROM generate_series(1, 320) g), '08e20910d81d42658d4334d3f6d10ac0', '977321321');`);
  const run = await runPipeline(db, RUN);
  t.is(run.status, 'COMPLETED', run.error_message ?? '');
  t.is(run.stats['match']['leads_with_oversized_key'], 1);
  t.true(Number(run.stats['driver_index']['drivers_skipped_bad_id']) >= 1);
  t.deepEqual(await violations(db), []);
});
