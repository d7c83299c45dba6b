// The demo / labeled data generator (src/demo.ts): deterministic from the seed, exact
// counts, the variations and hostile rows it promises, and a ground truth that points
// at real drivers. Each database is a fresh clone of the migrated template.
import test from 'ava';
import { generateDemoData, type DemoOptions } from '../src/demo.js';
import { createLogger } from '../src/logger.js';
import { createTestDb, one, type TestDb } from './helpers/db.js';

const log = createLogger({ logLevel: 'silent', logFormat: 'json' });
const OPTS: DemoOptions = { seed: 42, leads: 2000, drivers: 5000, tripDays: 30, reset: false };

let a: TestDb;
let b: TestDb;
let c: TestDb;
let summaryA: Record<string, number>;
let summaryB: Record<string, number>;

async function generate(db: TestDb, opts: DemoOptions): Promise<Record<string, number>> {
  const client = await db.connect();
  return generateDemoData(client, opts, log);
}

async function num(db: TestDb, sql: string, params?: unknown[]): Promise<number> {
  return Number(await one<string | number>(db, sql, params));
}

/** A fingerprint of every row of the three source tables and the ground truth. */
async function fingerprints(db: TestDb): Promise<Record<string, string>> {
  const [r] = await db.query<Record<string, string>>(`
    SELECT (SELECT md5(string_agg(l::text, E'\\n' ORDER BY l.id)) FROM public.module_ct_cabinet_leads l) AS leads,
           (SELECT md5(string_agg(d::text, E'\\n' ORDER BY d.id)) FROM public.drivers d) AS drivers,
           (SELECT md5(string_agg(s::text, E'\\n' ORDER BY s::text)) FROM public.summary_daily s) AS trips,
           (SELECT md5(string_agg(t::text, E'\\n' ORDER BY t.lead_id)) FROM demo.lead_truth t) AS truth`);
  return r!;
}

test.before(async () => {
  [a, b, c] = await Promise.all([createTestDb('demo_a'), createTestDb('demo_b'), createTestDb('demo_c')]);
  [summaryA, summaryB] = await Promise.all([generate(a, OPTS), generate(b, OPTS), generate(c, { ...OPTS, seed: 7 })]);
});

test.after.always(async () => {
  await Promise.all([a, b, c].map((db) => db?.drop()));
});

test('the same seed into two empty databases gives identical rows', async (t) => {
  const [fa, fb] = await Promise.all([fingerprints(a), fingerprints(b)]);
  t.truthy(fa.leads && fa.drivers && fa.trips && fa.truth);
  t.deepEqual(fa, fb);
  const { ms: _a, ...restA } = summaryA;
  const { ms: _b, ...restB } = summaryB;
  t.deepEqual(restA, restB);
});

test('a different seed gives different rows, ids and keys', async (t) => {
  const [fa, fc] = await Promise.all([fingerprints(a), fingerprints(c)]);
  t.not(fa.leads, fc.leads);
  t.not(fa.drivers, fc.drivers);
  t.not(fa.trips, fc.trips);
  t.not(fa.truth, fc.truth);
  const ids = `SELECT array_agg(driver_id ORDER BY id) AS v FROM (SELECT id, driver_id FROM public.drivers ORDER BY id LIMIT 50) x`;
  const [da, dc] = await Promise.all([one<string[]>(a, ids), one<string[]>(c, ids)]);
  t.is(da.filter((id) => dc.includes(id)).length, 0);
});

test('counts match the options and the summary matches the tables', async (t) => {
  t.is(await num(a, 'SELECT count(*) AS v FROM public.module_ct_cabinet_leads'), OPTS.leads);
  t.is(await num(a, 'SELECT count(*) AS v FROM public.drivers'), OPTS.drivers);
  t.is(await num(a, 'SELECT count(*) AS v FROM demo.lead_truth'), OPTS.leads);
  t.is(summaryA.leads, OPTS.leads);
  t.is(summaryA.drivers, OPTS.drivers);
  t.is(summaryA.trip_rows, await num(a, 'SELECT count(*) AS v FROM public.summary_daily'));
  t.is(summaryA.leads_with_true_driver, await num(a, 'SELECT count(true_driver_id) AS v FROM demo.lead_truth'));
  t.is(summaryA.matchable_leads, await num(a, 'SELECT count(*) FILTER (WHERE matchable) AS v FROM demo.lead_truth'));
  t.is(summaryA.hostile_leads, await num(a, `SELECT count(*) AS v FROM demo.lead_truth WHERE scenario LIKE 'HOSTILE%'`));
  t.is(summaryA.date_ymd_rows, await num(a, `SELECT count(*) AS v FROM public.summary_daily WHERE date_file ~ '^\\d{4}-\\d{2}-\\d{2}$'`));
  t.true(typeof summaryA.ms === 'number' && summaryA.ms! >= 0);
  // Ids are 1..n in a fresh database and the serial follows them.
  t.is(await num(a, 'SELECT max(id) AS v FROM public.module_ct_cabinet_leads'), OPTS.leads);
  t.is(await num(a, `SELECT last_value AS v FROM public.module_ct_cabinet_leads_id_seq`), OPTS.leads);
});

test('the scenario mix is roughly the documented one', async (t) => {
  const rows = await a.query<{ scenario: string; n: string }>(
    'SELECT scenario, count(*) AS n FROM demo.lead_truth GROUP BY scenario',
  );
  const share = (s: string) => Number(rows.find((r) => r.scenario === s)?.n ?? 0) / OPTS.leads;
  t.true(share('PHONE_FORMAT') > 0.17 && share('PHONE_FORMAT') < 0.25, `PHONE_FORMAT ${share('PHONE_FORMAT')}`);
  t.true(share('NO_DRIVER') > 0.12 && share('NO_DRIVER') < 0.18, `NO_DRIVER ${share('NO_DRIVER')}`);
  t.true(share('SHIFT_SHARED_PLATE') > 0.04 && share('SHIFT_SHARED_PLATE') < 0.08);
  const withDriver = summaryA.leads_with_true_driver! / OPTS.leads;
  t.true(withDriver > 0.75 && withDriver < 0.87, `with driver ${withDriver}`);
  // Most leads carry no phone (as in the predecessor's data): plate and name only.
  const noPhone = await num(a, `SELECT count(*) AS v FROM public.module_ct_cabinet_leads WHERE coalesce(park_phone, '') = ''`);
  t.true(noPhone / OPTS.leads > 0.5);
});

test('every true driver exists, and the target park driver is the truth for two-park persons', async (t) => {
  t.is(
    await num(a, `SELECT count(*) AS v FROM demo.lead_truth t
                  WHERE t.true_driver_id IS NOT NULL
                    AND NOT EXISTS (SELECT 1 FROM public.drivers d WHERE d.driver_id = t.true_driver_id)`),
    0,
  );
  t.is(await num(a, 'SELECT count(*) - count(DISTINCT driver_id) AS v FROM public.drivers'), 0);
  t.true(await one<boolean>(a, `SELECT bool_and(driver_id ~ '^[0-9a-f]{32}$') AS v FROM public.drivers`));
  // Two-park persons: another park has a driver with the same phone; the truth is in the target park.
  const [r] = await a.query<{ n: string; in_target: string; twin: string }>(`
    SELECT count(*) AS n,
           count(*) FILTER (WHERE d.park_id = canon.setting('target_park_id')) AS in_target,
           count(*) FILTER (WHERE EXISTS (
             SELECT 1 FROM public.drivers o
             WHERE o.driver_id <> d.driver_id AND o.park_id <> d.park_id
               AND right(regexp_replace(o.phone, '\\D', '', 'g'), 9) = right(regexp_replace(d.phone, '\\D', '', 'g'), 9))) AS twin
    FROM demo.lead_truth t JOIN public.drivers d ON d.driver_id = t.true_driver_id
    WHERE t.scenario = 'TWO_PARKS_SAME_PHONE'`);
  t.true(Number(r!.n) > 0);
  t.is(r!.in_target, r!.n);
  t.is(r!.twin, r!.n);
  // About 60% of the drivers are in the target park, the rest in 4 other parks.
  const [p] = await a.query<{ target: string; parks: string }>(
    `SELECT count(*) FILTER (WHERE park_id = canon.setting('target_park_id')) AS target, count(DISTINCT park_id) AS parks FROM public.drivers`,
  );
  const target = Number(p!.target) / OPTS.drivers;
  t.true(target > 0.57 && target < 0.63, `target share ${target}`);
  t.is(Number(p!.parks), 5);
});

test('lead phones come in every format, drivers store them with the country code', async (t) => {
  const count = (re: string) =>
    num(a, `SELECT count(*) AS v FROM public.module_ct_cabinet_leads WHERE park_phone ~ $1`, [re]);
  t.true((await count('^\\+51 9\\d{2} \\d{3} \\d{3}$')) > 10);
  t.true((await count('^9\\d{8}$')) > 10);
  t.true((await count('^9\\d{2}-\\d{3}-\\d{3}$')) > 10);
  t.true((await count('^519\\d{8}$')) > 10);
  t.true((await count('^00519\\d{8}$')) > 10);
  const [d] = await a.query<{ cc: string; bare: string }>(
    `SELECT count(*) FILTER (WHERE phone ~ '^519\\d{8}$') AS cc, count(*) FILTER (WHERE phone ~ '^9\\d{8}$') AS bare FROM public.drivers`,
  );
  t.true(Number(d!.cc) > Number(d!.bare) * 3);
  t.true(Number(d!.bare) > 0);
  // The lead's phone, once normalised, is its true driver's for PHONE_FORMAT leads.
  t.is(
    await num(a, `SELECT count(*) AS v FROM demo.lead_truth t
                  JOIN public.module_ct_cabinet_leads l ON l.id = t.lead_id
                  JOIN public.drivers d ON d.driver_id = t.true_driver_id
                  WHERE t.scenario = 'PHONE_FORMAT'
                    AND right(regexp_replace(l.park_phone, '\\D', '', 'g'), 9) <> right(d.phone, 9)`),
    0,
  );
});

test('plates vary in format and shift drivers share one plate under different names', async (t) => {
  const plates = await a.query<{ p: string }>(
    `SELECT asset_plate_number AS p FROM public.module_ct_cabinet_leads WHERE asset_plate_number ~ '^[A-Za-z]{3}[- ]?\\d{3}$'`,
  );
  const shapes = new Set(plates.map((r) => r.p.replace(/[a-z]/g, 'a').replace(/[A-Z]/g, 'A').replace(/\d/g, '9')));
  t.true(['aaa-999', 'AAA 999', 'aaa999', 'AAA-999', 'AAA999'].every((s) => shapes.has(s)), [...shapes].join(','));
  const [s] = await a.query<{ leads: string; shared: string }>(`
    SELECT count(*) AS leads,
           count(*) FILTER (WHERE EXISTS (
             SELECT 1 FROM public.drivers o
             WHERE o.driver_id <> d.driver_id AND o.park_id = d.park_id
               AND replace(o.car_number, '-', '') = replace(d.car_number, '-', '')
               AND o.last_name <> d.last_name AND o.first_name <> d.first_name)) AS shared
    FROM demo.lead_truth t JOIN public.drivers d ON d.driver_id = t.true_driver_id
    WHERE t.scenario = 'SHIFT_SHARED_PLATE'`);
  t.true(Number(s!.leads) > 50);
  t.is(s!.shared, s!.leads);
  // Background drivers share cars too.
  t.true(
    (await num(a, `SELECT count(*) AS v FROM (SELECT car_normalized_number FROM public.drivers
                   WHERE car_normalized_number IS NOT NULL GROUP BY 1 HAVING count(*) > 1) x`)) > Number(s!.leads),
  );
});

test('names carry accents, particles, hyphens, typos and swapped order', async (t) => {
  const has = (sql: string) => num(a, `SELECT count(*) AS v FROM public.module_ct_cabinet_leads l JOIN demo.lead_truth t ON t.lead_id = l.id WHERE ${sql}`);
  t.true((await has(`l.last_name ~ '[ÑñÁÉÍÓÚáéíóú]'`)) > 50);
  t.true((await has(`l.last_name ~* '^del? (la |los )?' AND t.scenario = 'PLATE_PARTICLE_SURNAME'`)) > 20);
  t.true((await has(`l.last_name ~ '^[^ ]+-[^ ]+$' AND t.scenario = 'PLATE_HYPHEN_SURNAME'`)) > 20);
  t.true((await has(`t.scenario = 'PLATE_NAME_NO_MIDDLE' AND l.middle_name IS NULL`)) > 20);
  // Swapped order: the driver's first name is in the lead's last_name.
  t.true(
    (await num(a, `SELECT count(*) AS v FROM demo.lead_truth t
                   JOIN public.module_ct_cabinet_leads l ON l.id = t.lead_id
                   JOIN public.drivers d ON d.driver_id = t.true_driver_id
                   WHERE t.scenario = 'PLATE_NAME_ORDER'
                     AND upper(translate(split_part(l.last_name, ' ', 1), 'áéíóúÁÉÍÓÚñÑ', 'aeiouAEIOUnN'))
                       = translate(d.first_name, 'ÁÉÍÓÚÑ', 'AEIOUN')`)) > 20,
  );
  // Typos: exactly one surname token differs from the driver's, by one letter.
  const typos = await a.query<{ lead: string; driver: string }>(`
    SELECT upper(translate(split_part(l.last_name, ' ', 1), 'áéíóúÁÉÍÓÚñÑ', 'aeiouAEIOUnN')) AS lead,
           translate(split_part(d.last_name, ' ', 1), 'ÁÉÍÓÚÑ', 'AEIOUN') AS driver
    FROM demo.lead_truth t
    JOIN public.module_ct_cabinet_leads l ON l.id = t.lead_id
    JOIN public.drivers d ON d.driver_id = t.true_driver_id
    WHERE t.scenario = 'PLATE_NAME_TYPO'`);
  t.true(typos.length > 50);
  for (const { lead, driver } of typos) {
    const diff = [...lead].filter((ch, i) => ch !== driver[i]).length;
    t.true(lead.length === driver.length && lead.length >= 5 && diff === 1, `${lead} vs ${driver}`);
  }
});

test('an office phone is shared by many leads with different names and never identifies them', async (t) => {
  const rows = await a.query<{ phone: string; leads: string; names: string; matchable: string }>(`
    SELECT right(regexp_replace(l.park_phone, '\\D', '', 'g'), 9) AS phone, count(*) AS leads,
           count(DISTINCT l.last_name) AS names, count(*) FILTER (WHERE t.matchable) AS matchable
    FROM public.module_ct_cabinet_leads l JOIN demo.lead_truth t ON t.lead_id = l.id
    WHERE t.scenario = 'OFFICE_PHONE_ONLY'
    GROUP BY 1 ORDER BY 2 DESC`);
  t.true(rows.length >= 3 && rows.length <= 5);
  t.true(Number(rows[0]!.leads) >= 10);
  t.true(Number(rows[0]!.names) >= 5);
  t.true(rows.every((r) => r.matchable === '0'));
});

test('leads without a driver or without keys are not matchable', async (t) => {
  const [r] = await a.query<{ bad: string; missing: string }>(`
    SELECT count(*) FILTER (WHERE t.true_driver_id IS NULL AND t.matchable) AS bad,
           count(*) FILTER (WHERE t.scenario LIKE 'MISSING_KEYS%' AND (coalesce(l.park_phone, '') <> '' OR coalesce(l.asset_plate_number, '') <> '')) AS missing
    FROM demo.lead_truth t JOIN public.module_ct_cabinet_leads l ON l.id = t.lead_id`);
  t.is(r!.bad, '0');
  t.is(r!.missing, '0');
  t.true((await num(a, `SELECT count(*) AS v FROM demo.lead_truth WHERE scenario = 'NO_DRIVER'`)) > 200);
});

test('hostile rows are present and keyed like the product keys them', async (t) => {
  const count = (sql: string) => num(a, `SELECT count(*) AS v FROM public.module_ct_cabinet_leads l WHERE ${sql}`);
  t.true((await count(`external_id IS NULL AND first_name IS NULL AND park_phone IS NULL AND lead_created_at IS NULL AND created_at IS NULL`)) > 0);
  t.true((await count(`first_name LIKE '%DROP TABLE%'`)) > 0);
  t.true((await count(`length(last_name) >= 10000 AND length(park_phone) >= 10000`)) > 0);
  t.true((await count(`first_name ~ '[\\U0001F600-\\U0001F6FF]'`)) > 0);
  t.true((await count(`first_name ~ '[А-Яа-я]'`)) > 0);
  t.true((await count(`lead_created_at IS NULL AND first_name IS NOT NULL`)) > 0);
  t.true((await num(a, `SELECT count(*) AS v FROM (SELECT btrim(external_id) FROM public.module_ct_cabinet_leads
                        WHERE btrim(external_id) <> '' GROUP BY 1 HAVING count(*) > 1) x`)) > 0);
  t.true((await count(`external_id IS NOT NULL AND external_id <> btrim(external_id)`)) > 0);
  t.true((await count(`external_id = ''`)) > 0);
  // lead_source_pk is the product's own formula.
  t.is(
    await num(a, `SELECT count(*) AS v FROM demo.lead_truth t JOIN public.module_ct_cabinet_leads l ON l.id = t.lead_id
                  WHERE t.lead_source_pk IS DISTINCT FROM canon.lead_source_pk(l.external_id, l.id)`),
    0,
  );
  t.true(summaryA.hostile_leads! > 20);
});

test('lead dates spread over the window up to today, inserted about two days later', async (t) => {
  const [r] = await a.query<{ min_back: number; max_back: number; today: string; bad_created: string; lag_hours: number }>(`
    SELECT min(canon.business_today() - lead_created_at::date) AS min_back,
           max(canon.business_today() - lead_created_at::date) AS max_back,
           count(*) FILTER (WHERE lead_created_at::date = canon.business_today()) AS today,
           count(*) FILTER (WHERE created_at < lead_created_at OR created_at > canon.business_today() + 1) AS bad_created,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM created_at - lead_created_at) / 3600) AS lag_hours
    FROM public.module_ct_cabinet_leads`);
  t.is(r!.min_back, 0);
  t.is(r!.max_back, OPTS.tripDays - 1);
  t.true(Number(r!.today) > 0);
  t.is(r!.bad_created, '0');
  t.true(r!.lag_hours > 36 && r!.lag_hours < 60, `median lag ${r!.lag_hours} h`);
});

test('trips come in both date formats, split rows and garbage dates', async (t) => {
  const [r] = await a.query<{ dmy: string; ymd: string; total: string }>(`
    SELECT count(*) FILTER (WHERE date_file ~ '^\\d{2}-\\d{2}-\\d{4}$') AS dmy,
           count(*) FILTER (WHERE date_file ~ '^\\d{4}-\\d{2}-\\d{2}$') AS ymd,
           count(*) AS total
    FROM public.summary_daily`);
  const ymdShare = Number(r!.ymd) / Number(r!.total);
  t.true(ymdShare > 0.15 && ymdShare < 0.25, `ymd share ${ymdShare}`);
  t.true(Number(r!.dmy) > Number(r!.ymd));
  const garbage = await a.query<{ date_file: string | null }>(
    `SELECT DISTINCT date_file FROM public.summary_daily
     WHERE date_file IS NULL OR date_file !~ '^(\\d{2}-\\d{2}-\\d{4}|\\d{4}-\\d{2}-\\d{2})$' OR date_file ~ '^31-02-'`,
  );
  const kinds = garbage.map((g) => g.date_file);
  t.true(kinds.includes(null));
  t.true(kinds.includes(''));
  t.true(kinds.some((k) => k !== null && /^31-02-\d{4}$/.test(k)));
  t.true(kinds.some((k) => k !== null && /^\d{4}\/13\/45$/.test(k)));
  t.is(summaryA.garbage_date_rows, await num(a, `SELECT count(*) AS v FROM public.summary_daily
    WHERE date_file IS NULL OR date_file !~ '^(\\d{2}-\\d{2}-\\d{4}|\\d{4}-\\d{2}-\\d{2})$' OR date_file ~ '^31-02-'`));
  // Some (driver, day) pairs come as two partial rows, possibly in different formats.
  t.true(
    (await num(a, `SELECT count(*) AS v FROM (
                     SELECT driver_id, CASE WHEN date_file ~ '^\\d{4}' THEN to_date(date_file, 'YYYY-MM-DD') ELSE to_date(date_file, 'DD-MM-YYYY') END AS day
                     FROM public.summary_daily
                     WHERE date_file ~ '^(\\d{2}-\\d{2}-\\d{4}|\\d{4}-\\d{2}-\\d{2})$' AND date_file !~ '^31-02-'
                     GROUP BY 1, 2 HAVING count(*) > 1) x`)) > 20,
  );
});

test('lead drivers reach 0, 1, 5 and 25 trips within 14 days of the lead', async (t) => {
  const rows = await a.query<{ band: string; n: string }>(`
    WITH trips AS (
      SELECT driver_id, CASE WHEN date_file ~ '^\\d{4}' THEN to_date(date_file, 'YYYY-MM-DD') ELSE to_date(date_file, 'DD-MM-YYYY') END AS day,
             count_orders_completed AS n
      FROM public.summary_daily
      WHERE date_file ~ '^(\\d{2}-\\d{2}-\\d{4}|\\d{4}-\\d{2}-\\d{2})$' AND date_file !~ '^31-02-'  -- the impossible day
    ), per_lead AS (
      SELECT t.lead_id, coalesce(sum(tr.n), 0) AS trips
      FROM demo.lead_truth t
      JOIN public.module_ct_cabinet_leads l ON l.id = t.lead_id
      LEFT JOIN trips tr ON tr.driver_id = t.true_driver_id
                        AND tr.day >= l.lead_created_at::date AND tr.day < l.lead_created_at::date + 14
      WHERE t.true_driver_id IS NOT NULL AND l.lead_created_at IS NOT NULL
      GROUP BY t.lead_id
    )
    SELECT CASE WHEN trips >= 25 THEN 'm25' WHEN trips >= 5 THEN 'm5' WHEN trips >= 1 THEN 'm1' ELSE 'none' END AS band,
           count(*) AS n
    FROM per_lead GROUP BY 1`);
  const band = (b: string) => Number(rows.find((r) => r.band === b)?.n ?? 0);
  for (const b of ['none', 'm1', 'm5', 'm25']) t.true(band(b) > 50, `${b}: ${band(b)}`);
});

test('a second call without reset appends a new batch with new keys', async (t) => {
  const db = await createTestDb('demo_append');
  try {
    const small: DemoOptions = { seed: 5, leads: 300, drivers: 600, tripDays: 10, reset: false };
    const first = await generate(db, small);
    const second = await generate(db, small);
    t.is(first.batch, 1);
    t.is(second.batch, 2);
    t.is(await num(db, 'SELECT count(*) AS v FROM public.module_ct_cabinet_leads'), 600);
    t.is(await num(db, 'SELECT count(*) AS v FROM public.drivers'), 1200);
    t.is(await num(db, 'SELECT count(*) AS v FROM demo.lead_truth'), 600);
    t.is(await num(db, 'SELECT count(*) - count(DISTINCT driver_id) AS v FROM public.drivers'), 0);
    // No external id of batch 2 repeats one of batch 1 (re-exports repeat within a batch only).
    t.is(
      await num(db, `SELECT count(*) AS v FROM public.module_ct_cabinet_leads x JOIN public.module_ct_cabinet_leads y
                     ON btrim(x.external_id) = btrim(y.external_id) AND x.id <= 300 AND y.id > 300 AND btrim(x.external_id) <> ''`),
      0,
    );
    t.is(await num(db, 'SELECT min(id) AS v FROM public.drivers WHERE driver_id IN (SELECT true_driver_id FROM demo.lead_truth WHERE lead_id > 300)'), 601);
    // Appended drivers arrive now: past every updated_at of the first batch.
    t.true(
      await one<boolean>(db, `SELECT (SELECT min(updated_at) FROM public.drivers WHERE id > 600)
                                     > (SELECT max(updated_at) FROM public.drivers WHERE id <= 600) AS v`),
    );
  } finally {
    await db.drop();
  }
});

test('reset empties the source tables, the demo schema and the product data first', async (t) => {
  const db = await createTestDb('demo_reset');
  try {
    const small: DemoOptions = { seed: 9, leads: 200, drivers: 400, tripDays: 10, reset: false };
    await generate(db, small);
    await db.query(`INSERT INTO canon.claims_yango_cabinet_14d (lead_source_pk, milestone, lead_date, amount_expected, status)
                    VALUES ('x', 1, current_date, 25, 'expected')`);
    // Derived matching keys, when this version of the schema has them, go stale with a reset.
    const hasLeadKeys = await one<boolean>(db, `SELECT to_regclass('canon_internal.lead_keys') IS NOT NULL AS v`);
    if (hasLeadKeys) {
      await db.query(`INSERT INTO canon_internal.lead_keys (lead_id, lead_source_pk, source_hash) VALUES (1, 'stale', 'x')`);
    }
    const again = await generate(db, { ...small, reset: true });
    t.is(again.batch, 1);
    t.is(await num(db, 'SELECT count(*) AS v FROM public.module_ct_cabinet_leads'), 200);
    t.is(await num(db, 'SELECT min(id) AS v FROM public.module_ct_cabinet_leads'), 1);
    t.is(await num(db, 'SELECT count(*) AS v FROM public.drivers'), 400);
    t.is(await num(db, 'SELECT count(*) AS v FROM demo.batches'), 1);
    t.is(await num(db, 'SELECT count(*) AS v FROM canon.claims_yango_cabinet_14d'), 0);
    if (hasLeadKeys) t.is(await num(db, 'SELECT count(*) AS v FROM canon_internal.lead_keys'), 0);
    // Into empty tables the drivers' timestamps are historical (from hire dates).
    t.true(await one<boolean>(db, `SELECT max(updated_at) < canon.business_today() + 1 AS v FROM public.drivers`));
  } finally {
    await db.drop();
  }
});

test('too few drivers for every lead person: drivers stay exact, the rest never activated', async (t) => {
  const db = await createTestDb('demo_few');
  try {
    const s = await generate(db, { seed: 3, leads: 400, drivers: 100, tripDays: 10, reset: false });
    t.is(await num(db, 'SELECT count(*) AS v FROM public.drivers'), 100);
    t.is(s.drivers, 100);
    t.true(s.leads_with_true_driver! > 50 && s.leads_with_true_driver! <= 100);
    t.is(
      await num(db, `SELECT count(*) AS v FROM demo.lead_truth t WHERE t.true_driver_id IS NOT NULL
                     AND NOT EXISTS (SELECT 1 FROM public.drivers d WHERE d.driver_id = t.true_driver_id)`),
      0,
    );
  } finally {
    await db.drop();
  }
});

test('bad options are refused before anything is written', async (t) => {
  const db = await createTestDb('demo_bad');
  try {
    const client = await db.connect();
    await t.throwsAsync(generateDemoData(client, { ...OPTS, leads: -1 }, log), { message: /leads=-1/ });
    await t.throwsAsync(generateDemoData(client, { ...OPTS, tripDays: 0 }, log), { message: /tripDays=0/ });
    await t.throwsAsync(generateDemoData(client, { ...OPTS, seed: 1.5 }, log), { message: /seed=1.5/ });
    t.is(await num(db, 'SELECT count(*) AS v FROM public.module_ct_cabinet_leads'), 0);
    t.is(await num(db, `SELECT count(*) AS v FROM pg_namespace WHERE nspname = 'demo'`), 0);
  } finally {
    await db.drop();
  }
});
