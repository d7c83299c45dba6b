// The HTML report: one self-contained file whose numbers equal the database's, opened in a
// real headless Chromium (Debian's /usr/bin/chromium driven by playwright-core): no console
// error, no network request, charts drawn, lead names with markup shown as text, and a
// screenshot written to test/out/report.png.
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { type Browser, chromium } from 'playwright-core';
import { PROJECT_ROOT } from '../../src/config.js';
import { loadReportData } from '../../src/report/data.js';
import { escapeHtml, jsonForScript, renderReport } from '../../src/report/html.js';
import { runCli } from '../helpers/cli.js';
import { createTestDb, type TestDb } from '../helpers/db.js';
import { runPipeline } from '../helpers/pipeline.js';
import { addDays, businessToday, insertLead, tripsOnDays } from '../helpers/rows.js';
import { linkedLead, linkPerson } from '../helpers/scenario.js';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const OUT_DIR = path.join(PROJECT_ROOT, 'test', 'out');
const SCRIPT_NAME = '<script>window.__xss = 1</script>';
const IMG_NAME = '<img src=x onerror="window.__xss2 = 1">';

let db: TestDb;
let html: string;
const htmlFile = path.join(OUT_DIR, 'report.html');

/** A history over several weeks: hand-made snapshots, a failed run, then real runs. */
async function buildHistory(d: TestDb): Promise<void> {
  const today = await businessToday(d);
  for (const [ago, noIdentity, ok] of [['28 days', 9, 1], ['21 days', 8, 2], ['14 days', 7, 2], ['7 days', 6, 3]] as const) {
    const [r] = await d.query<{ id: string }>(
      `INSERT INTO canon.ingestion_runs (job_name, status, source_tables, started_at, created_at, completed_at, stats)
       VALUES ('reconcile_cabinet_leads_pipeline', 'COMPLETED', '["module_ct_cabinet_leads"]', now() - $1::interval,
               now() - $1::interval, now() - $1::interval + interval '2 seconds', '{"match": {"leads_evaluated": 5, "newly_linked": 1}}')
       RETURNING id`,
      [ago],
    );
    await d.query(
      `INSERT INTO ops.limbo_snapshots (run_id, taken_at, business_date, leads, leads_with_identity, leads_with_driver,
                                        limbo_no_identity, limbo_no_driver, limbo_no_trips_14d, limbo_trips_no_claim, limbo_ok)
       VALUES ($1, now() - $2::interval, (now() - $2::interval)::date, $3::int + $4::int + 2, $4::int + 2, $4::int + 1, $3::int, 1, 1, 0, $4::int)`,
      [r!.id, ago, noIdentity, ok],
    );
  }
  await d.query(
    `INSERT INTO canon.ingestion_runs (job_name, status, source_tables, started_at, created_at, completed_at, error_message)
     VALUES ('reconcile_cabinet_leads_pipeline', 'FAILED', '["module_ct_cabinet_leads"]', now() - interval '2 days',
             now() - interval '2 days', now() - interval '2 days' + interval '1 second', 'source contract violated: <b>bold</b>')`,
  );
  // leads in every stage, over several lead weeks
  await insertLead(d, { lead_created_at: addDays(today, -20), first_name: SCRIPT_NAME, last_name: IMG_NAME, park_phone: null, asset_plate_number: null });
  for (const days of [-2, -9, -16]) {
    const date = addDays(today, days);
    await insertLead(d, { lead_created_at: date, park_phone: null, asset_plate_number: null });
    const noDriver = await insertLead(d, { lead_created_at: date });
    await linkPerson(d, [noDriver.key]);
    await linkedLead(d, date);
    await linkedLead(d, date, { trips: tripsOnDays(date, [0, 1, 2, 3, 4]) });
  }
  // the oldest NO_IDENTITY lead, but the job retries it by itself (NO_CANDIDATES): not listed
  await insertLead(d, { lead_created_at: addDays(today, -25), external_id: 'RETRIED-BY-JOB', park_phone: '999111222', asset_plate_number: null });
  // older than the run's days_back: its claims are never generated (missing, TRIPS_NO_CLAIM)
  await linkedLead(d, addDays(today, -45), { trips: tripsOnDays(addDays(today, -45), [0, 1, 2, 3, 4, 5]) });
  await runPipeline(d, 'p_days_back => 30');
  await insertLead(d, { lead_created_at: addDays(today, -1), park_phone: null, asset_plate_number: null });
  await runPipeline(d, 'p_days_back => 30');
  await d.query(`UPDATE ops.alert_rules SET threshold = 3 WHERE rule_code = 'NO_IDENTITY_ABOVE'`);
}

test.before(async () => {
  db = await createTestDb('report');
  await buildHistory(db);
  html = renderReport(await loadReportData(db.pool), { oldestPerStage: 10 });
  mkdirSync(OUT_DIR, { recursive: true });
  writeFileSync(htmlFile, html);
});
test.after.always(() => db.drop());

test('the file is self-contained: no external URL, Chart.js and the data inlined, markup from the database escaped', (t) => {
  t.notRegex(html, /(src|href)\s*=\s*["']?(https?:)?\/\//i);
  t.notRegex(html, /@import|url\(\s*["']?https?:/i);
  t.regex(html, /Content-Security-Policy" content="default-src 'none'/);
  t.regex(html, /Chart\.js v4\.\d+\.\d+/);
  t.true(html.includes(escapeHtml(SCRIPT_NAME)));
  t.false(html.includes(SCRIPT_NAME));
  t.false(html.includes(IMG_NAME));
  t.true(html.includes('source contract violated: &lt;b&gt;bold&lt;/b&gt;'));
  t.is(jsonForScript({ a: '</script><script>x()</script>' }), '{"a":"\\u003c/script>\\u003cscript>x()\\u003c/script>"}');
});

const hasChromium = existsSync(CHROMIUM);
const browserTest = hasChromium ? test.serial : test.serial.skip;
const skipNote = hasChromium ? '' : ` (SKIPPED: ${CHROMIUM} not found; install it with: apt-get install -y chromium)`;
if (!hasChromium) console.log(`# report browser tests skipped: ${CHROMIUM} not found; install it with: apt-get install -y chromium`);

let browser: Browser | undefined;
test.after.always(async () => {
  await browser?.close();
});

browserTest(`in headless Chromium the page renders without console errors or network requests, and its numbers equal the database's${skipNote}`, async (t) => {
  t.timeout(100_000);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 60_000 });
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const problems: string[] = [];
  const requests: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('request', (r) => requests.push(r.url()));
  const url = `file://${htmlFile}`;
  await page.goto(url, { waitUntil: 'load' });
  await page.waitForSelector('body[data-charts="ready"]', { timeout: 20_000 });
  t.deepEqual(problems, []);
  t.deepEqual(requests, [url], 'the file needs no network');

  // nothing from the database ran as code; it shows as text
  t.deepEqual(await page.evaluate(() => [(window as unknown as Record<string, unknown>)['__xss'], (window as unknown as Record<string, unknown>)['__xss2']]), [undefined, undefined]);
  const names = await page.locator('[data-testid="oldest-lead"][data-stage="NO_IDENTITY"] td:nth-child(4)').allTextContents();
  t.true(names.includes(`${SCRIPT_NAME} ${IMG_NAME}`));

  const value = async (selector: string) => Number(await page.locator(selector).getAttribute('data-value'));
  const text = async (selector: string) => Number((await page.locator(selector).textContent())!.replace(/^S\/ /, '').replace(/,/g, ''));

  // the funnel today
  const stages = await db.query<{ limbo_stage: string; n: number }>(
    `SELECT limbo_stage, count(*)::int AS n FROM ops.v_cabinet_leads_limbo GROUP BY limbo_stage`,
  );
  for (const stage of ['NO_IDENTITY', 'NO_DRIVER', 'NO_TRIPS_14D', 'TRIPS_NO_CLAIM', 'OK']) {
    const n = stages.find((s) => s.limbo_stage === stage)?.n ?? 0;
    t.is(await value(`[data-testid="stages"] [data-field="stage_${stage}"]`), n, stage);
    t.is(await text(`[data-testid="stages"] [data-field="stage_${stage}"]`), n, stage);
  }
  t.is(stages.length, 5, 'the scenario has leads in every stage');
  const [leads] = await db.query<{ n: number; identity: number }>(
    `SELECT count(*)::int AS n, (count(*) FILTER (WHERE person_key IS NOT NULL))::int AS identity FROM ops.v_cabinet_leads_limbo`,
  );
  t.is(await text('[data-testid="funnel"] [data-field="leads"]'), leads!.n);
  t.is(await text('[data-testid="funnel"] [data-field="leads_with_identity"]'), leads!.identity);

  // claims per lead week, with amounts
  const weeks = await db.query<Record<string, number | string>>(
    `SELECT week_start::text AS week_start, claims_expected::int, claims_expected_amount::float8, claims_present::int,
            claims_present_amount::float8, claims_missing::int, claims_missing_amount::float8
     FROM ops.v_cabinet_14d_funnel_weekly ORDER BY week_start DESC`,
  );
  const shown = await page.locator('[data-testid="claims-week"]').evaluateAll((rows) =>
    rows.map((r) => {
      const o: Record<string, number | string> = { week_start: r.getAttribute('data-week') ?? '' };
      for (const f of ['claims_expected', 'claims_expected_amount', 'claims_present', 'claims_present_amount', 'claims_missing', 'claims_missing_amount']) {
        o[f] = Number(r.querySelector(`[data-field="${f}"]`)!.getAttribute('data-value'));
      }
      return o;
    }),
  );
  t.deepEqual(shown, weeks);
  const [totals] = await db.query<{ missing: number; missing_amount: number; expected_amount: number }>(
    `SELECT sum(claims_missing)::int AS missing, sum(claims_missing_amount)::float8 AS missing_amount,
            sum(claims_expected_amount)::float8 AS expected_amount FROM ops.v_cabinet_14d_funnel_weekly`,
  );
  t.true(totals!.missing > 0, 'the scenario has missing claims');
  t.is(await value('[data-testid="claims-total"] [data-field="claims_missing_amount"]'), totals!.missing_amount);
  t.is(await text('[data-testid="claims-total"] [data-field="claims_expected_amount"]'), totals!.expected_amount);

  // stage counts over time, from the snapshots
  const history = await db.query<{ run_id: string; limbo_no_identity: number }>(
    `SELECT run_id::text, limbo_no_identity FROM ops.v_limbo_history ORDER BY taken_at DESC, run_id DESC LIMIT 15`,
  );
  t.is(history.length, 6);
  const historyShown = await page.locator('[data-testid="history-row"]').evaluateAll((rows) =>
    rows.map((r) => ({ run_id: r.getAttribute('data-run-id'), limbo_no_identity: Number(r.querySelector('[data-field="NO_IDENTITY"]')!.getAttribute('data-value')) })),
  );
  t.deepEqual(historyShown, history);

  // the oldest leads per stage, with their reason
  // ... only where someone can act: the job's own retries are counted, not listed
  const oldest = await db.query<{ lead_source_pk: string }>(
    `SELECT l.lead_source_pk FROM ops.v_cabinet_leads_limbo l
     JOIN canon.identity_unmatched u ON u.source_pk = l.lead_source_pk AND u.status = 'OPEN'
     WHERE l.limbo_stage = 'NO_IDENTITY' AND u.reason_code IN ('AMBIGUOUS', 'CONFLICT', 'WEAK_MATCH_ONLY', 'SHARED_KEY', 'MISSING_KEYS')
     ORDER BY l.lead_date, l.lead_id LIMIT 10`,
  );
  t.false(oldest.some((o) => o.lead_source_pk === 'RETRIED-BY-JOB'));
  t.regex((await page.locator('#oldest').textContent())!, /Not listed: 1 other lead of NO_IDENTITY; the others are retried by the job/);
  t.regex((await page.locator('#oldest').textContent())!, /NO_TRIPS_14D \(no trips in the 14-day window; \d+ leads, 0 to act on\)/);
  t.deepEqual(await page.locator('[data-testid="oldest-lead"][data-stage="NO_IDENTITY"]').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-lead'))), oldest.map((o) => o.lead_source_pk));
  t.regex((await page.locator('[data-testid="oldest-lead"][data-stage="NO_IDENTITY"] td.detail').first().textContent())!, /has no identity: MISSING_KEYS/);

  // the last runs with durations and outcomes
  const runs = await db.query<{ id: string; status: string }>(`SELECT id::text, status FROM canon.ingestion_runs ORDER BY created_at DESC, id DESC LIMIT 20`);
  t.deepEqual(await page.locator('[data-testid="run"]').evaluateAll((rows) => rows.map((r) => ({ id: r.getAttribute('data-run-id'), status: r.getAttribute('data-status') }))), runs);
  t.true(runs.some((r) => r.status === 'FAILED'));

  // the firing alerts
  const alerts = await db.query<{ rule_code: string }>(`SELECT rule_code FROM ops.check_limbo_alerts(p_record => false)`);
  t.true(alerts.some((a) => a.rule_code === 'NO_IDENTITY_ABOVE'));
  t.deepEqual(await page.locator('[data-testid="alert"]').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-rule'))), alerts.map((a) => a.rule_code));
  t.is(await text('[data-testid="alerts-count"]'), alerts.length);

  // amounts as finance writes them; one time zone, named once
  t.regex((await page.locator('[data-testid="claims-total"] [data-field="claims_missing_amount"]').textContent())!, /^S\/ \d{1,3}(,\d{3})*\.\d\d$/);
  t.is(await page.locator('[data-testid="timezone"]').textContent(), 'America/Lima');
  t.notRegex(await page.locator('body').innerText(), /\bUTC\b|\d\d:\d\d(:\d\d)?Z\b/);
  // history: straight segments between snapshots placed at their real times; claims: the missing money is the first, stacked series
  const charts = await page.evaluate(() => {
    const g = (window as unknown as { Chart: { getChart(id: string): { config: { data: { datasets: { label: string; tension: number; data: { x: number }[] }[] } }; options: { scales: Record<string, { type?: string; stacked?: boolean }> } } } }).Chart;
    const h = g.getChart('chart-history');
    const c = g.getChart('chart-claims');
    return {
      tensions: h.config.data.datasets.map((d) => d.tension),
      xType: h.options.scales['x']!.type,
      xs: h.config.data.datasets[0]!.data.map((p) => p.x),
      claims: c.config.data.datasets.map((d) => d.label),
      stacked: c.options.scales['y']!.stacked,
    };
  });
  t.true(charts.tensions.every((x) => x === 0));
  t.is(charts.xType, 'linear');
  const taken = await db.query<{ ms: number }>(`SELECT (extract(epoch FROM taken_at) * 1000)::float8 AS ms FROM ops.v_limbo_history ORDER BY taken_at, run_id`);
  t.deepEqual(charts.xs, taken.map((r) => r.ms));
  t.deepEqual(charts.claims, ['missing (S/)', 'generated (S/)']);
  t.true(charts.stacked);

  // the three charts are drawn
  const drawn = await page.evaluate(() =>
    ['chart-funnel', 'chart-history', 'chart-claims'].map((id) => {
      const c = document.getElementById(id) as HTMLCanvasElement;
      const px = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
      let painted = 0;
      for (let i = 3; i < px.length; i += 4) if (px[i]! > 0) painted++;
      return painted;
    }),
  );
  t.true(drawn.every((n) => n > 1000), `painted pixels per chart: ${drawn.join(', ')}`);

  const png = path.join(OUT_DIR, 'report.png');
  await page.screenshot({ path: png, fullPage: true });
  t.true(statSync(png).size > 20 * 1024, `screenshot ${png} is ${statSync(png).size} bytes`);
  t.log(`screenshot: ${path.relative(PROJECT_ROOT, png)} (${Math.round(statSync(png).size / 1024)} kB)`);
});

browserTest(`an empty database draws every chart with whole-number ticks, no fraction of a lead or a sol${skipNote}`, async (t) => {
  t.timeout(100_000);
  const empty = await createTestDb('report_empty');
  t.teardown(() => empty.drop());
  const file = path.join(OUT_DIR, 'report-empty.html');
  writeFileSync(file, renderReport(await loadReportData(empty.pool)));
  browser ??= await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 60_000 });
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const problems: string[] = [];
  page.on('pageerror', (e) => problems.push(e.message));
  await page.goto(`file://${file}`, { waitUntil: 'load' });
  await page.waitForSelector('body[data-charts="ready"]', { timeout: 20_000 });
  t.deepEqual(problems, []);
  const ticks = await page.evaluate(() => {
    const g = (window as unknown as { Chart: { getChart(id: string): { scales: Record<string, { ticks: { value: number }[] }> } | undefined } }).Chart;
    return { funnel: g.getChart('chart-funnel')!.scales['x']!.ticks.map((x) => x.value), claims: g.getChart('chart-claims')!.scales['y']!.ticks.map((x) => x.value) };
  });
  t.true(ticks.funnel.length > 0 && ticks.funnel.every(Number.isInteger), `funnel ticks ${ticks.funnel.join(', ')}`);
  t.true(ticks.claims.length > 0 && ticks.claims.every(Number.isInteger), `claims ticks ${ticks.claims.join(', ')}`);
  t.regex((await page.locator('#oldest').textContent())!, /No lead in NO_IDENTITY\./);
  await page.close();
});

test('cabinet-leads report --out writes the file and says where', async (t) => {
  const out = path.join(OUT_DIR, 'report-cli.html');
  const r = await runCli(['report', '--out', out, '--oldest', '3'], { DATABASE_URL: db.url });
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^wrote .*report-cli\.html \(\d+ kB\)\n$/);
  const file = readFileSync(out, 'utf8');
  t.regex(file, /^<!doctype html>/);
  t.is((file.match(/data-testid="oldest-lead" data-stage="NO_IDENTITY"/g) ?? []).length, 3);
  const bad = await runCli(['report', '--oldest', 'many'], { DATABASE_URL: db.url });
  t.is(bad.code, 2);
});
