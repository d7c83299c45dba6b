// Renders the report as one self-contained HTML file: the data, Chart.js (UMD build,
// MIT, read from node_modules) and the page's own script are inlined; a Content Security
// Policy forbids every network request, so the file opens anywhere, offline. Every value
// from the database is escaped (lead names may contain markup); the chart data travels
// as JSON in a <script type="application/json"> with '<' escaped, read with JSON.parse.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { Alert } from '../alerts.js';
import { inZone } from '../local-time.js';
import { type FunnelRow, type HistoryRow, type OldLead, type ReportData, type RunRow, STAGES, type Stage, type StageActions } from './data.js';

const STAGE_MEANING: Record<Stage, string> = {
  NO_IDENTITY: 'no person matched',
  NO_DRIVER: 'person without a driver',
  NO_TRIPS_14D: 'no trips in the 14-day window',
  TRIPS_NO_CLAIM: 'milestone reached, claim missing',
  OK: 'complete',
};

const STAGE_COLUMN: Record<Stage, keyof FunnelRow & keyof HistoryRow> = {
  NO_IDENTITY: 'limbo_no_identity',
  NO_DRIVER: 'limbo_no_driver',
  NO_TRIPS_14D: 'limbo_no_trips_14d',
  TRIPS_NO_CLAIM: 'limbo_trips_no_claim',
  OK: 'limbo_ok',
};

/** Text for HTML content and attribute values. */
export function escapeHtml(value: unknown): string {
  return String(value ?? '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

/** JSON that can sit inside a <script> element: no '<' (so no '</script>'), no line separators. */
export function jsonForScript(value: unknown): string {
  return JSON.stringify(value).replace(/</g, '\\u003c').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
}

/** Chart.js's UMD build (it carries its MIT licence header). */
export function chartJsSource(): { version: string; source: string } {
  const require = createRequire(import.meta.url);
  const dist = path.dirname(require.resolve('chart.js')); // node_modules/chart.js/dist/chart.cjs
  const source = readFileSync(path.join(dist, 'chart.umd.min.js'), 'utf8');
  const version = /Chart\.js v([\d.]+)/.exec(source)?.[1] ?? 'unknown';
  if (/<\/script/i.test(source)) throw new Error('chart.umd.min.js contains "</script": cannot be inlined');
  return { version, source };
}

const int = (n: number | null | undefined) => (n === null || n === undefined ? '–' : Math.round(n).toLocaleString('en-US'));
/** Money as finance writes it: S/ 1,234.00 (PEN). */
const amount = (n: number | null | undefined) =>
  n === null || n === undefined ? '–' : `S/ ${n.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
const pct = (n: number | null | undefined) => (n === null || n === undefined ? '–' : `${n.toFixed(2)} %`);
const signed = (n: number | null | undefined) => (n === null || n === undefined ? '' : n > 0 ? `+${int(n)}` : n < 0 ? `−${int(-n)}` : '±0');

/** A table cell that carries its raw value for machines (data-value) and a formatted one for people. */
function num(field: string, value: number | null, text: string): string {
  return `<td class="num" data-field="${escapeHtml(field)}" data-value="${value === null ? '' : escapeHtml(value)}">${escapeHtml(text)}</td>`;
}

function alertsSection(alerts: Alert[], timeZone: string): string {
  const body =
    alerts.length === 0
      ? '<p class="ok" data-testid="no-alerts">No alert fires.</p>'
      : `<ul class="alerts">${alerts
          .map(
            (a) => `<li class="alert ${a.severity === 'CRITICAL' ? 'critical' : 'warning'}" data-testid="alert" data-rule="${escapeHtml(a.rule_code)}">
  <strong>${escapeHtml(a.severity)} ${escapeHtml(a.rule_code)}</strong> ${escapeHtml(a.message)}
  <span class="muted">current <span data-field="current_value">${escapeHtml(a.current_value ?? '–')}</span>,
  threshold ${escapeHtml(a.comparison)} <span data-field="threshold">${escapeHtml(a.threshold)}</span>${
    a.measure === 'WEEK_OVER_WEEK_PCT' ? ' % week over week' : ''
  }; firing since ${escapeHtml(inZone(a.first_seen_at, timeZone))}</span></li>`,
          )
          .join('\n')}</ul>`;
  return `<section id="alerts"><h2>Firing alerts <span class="count" data-testid="alerts-count">${alerts.length}</span></h2>
${body}
<p class="muted">Rules: <code>SELECT * FROM ops.alert_rules;</code> History: <code>SELECT * FROM ops.alerts ORDER BY first_seen_at DESC;</code></p></section>`;
}

function funnelSection(total: FunnelRow): string {
  const steps: [string, string, number][] = [
    ['leads', 'Leads', total.leads],
    ['leads_with_identity', 'with an identity (person)', total.leads_with_identity],
    ['leads_with_driver', 'with a driver', total.leads_with_driver],
    ['leads_with_trips_14d', 'with trips in the 14-day window', total.leads_with_trips_14d],
    ['limbo_ok', 'OK (every milestone reached has its claim)', total.limbo_ok],
  ];
  const share = (n: number) => (total.leads > 0 ? pct((100 * n) / total.leads) : '–');
  return `<section id="funnel"><h2>Limbo funnel today</h2>
<div class="grid">
<div>
<table data-testid="funnel">
<thead><tr><th>step</th><th class="num">leads</th><th class="num">share</th></tr></thead>
<tbody>
${steps.map(([field, label, n]) => `<tr><th scope="row">${escapeHtml(label)}</th>${num(field, n, int(n))}<td class="num">${share(n)}</td></tr>`).join('\n')}
</tbody></table>
<table data-testid="stages">
<thead><tr><th>limbo stage</th><th>meaning</th><th class="num">leads</th><th class="num">share</th></tr></thead>
<tbody>
${STAGES.map((s) => {
  const n = total[STAGE_COLUMN[s]] as number;
  return `<tr data-stage="${s}"><th scope="row"><span class="dot stage-${s}"></span>${s}</th><td>${escapeHtml(STAGE_MEANING[s])}</td>${num(`stage_${s}`, n, int(n))}<td class="num">${share(n)}</td></tr>`;
}).join('\n')}
</tbody></table>
</div>
<div class="chart"><canvas id="chart-funnel" aria-label="limbo funnel"></canvas></div>
</div></section>`;
}

function historySection(history: HistoryRow[], days: number): string {
  if (history.length === 0) {
    return `<section id="history"><h2>Limbo stages over time</h2>
<p class="muted" data-testid="no-history">No snapshot in the last ${days} days: every completed run takes one (ops.limbo_snapshots).</p></section>`;
  }
  const recent = history.slice(-15).reverse();
  return `<section id="history"><h2>Limbo stages over time <span class="muted">(${history.length} snapshots, last ${days} days)</span></h2>
<div class="chart wide"><canvas id="chart-history" aria-label="limbo stages over time"></canvas></div>
<table data-testid="history">
<thead><tr><th>snapshot (run)</th><th>taken at</th><th class="num">leads</th>${STAGES.map((s) => `<th class="num">${s}</th>`).join('')}<th class="num">% with identity</th></tr></thead>
<tbody>
${recent
  .map(
    (h) => `<tr data-testid="history-row" data-run-id="${escapeHtml(h.run_id)}"><td>#${escapeHtml(h.run_id)}</td><td>${escapeHtml(h.taken_at)}</td>${num('leads', h.leads, int(h.leads))}${STAGES.map((s) => {
      const col = STAGE_COLUMN[s];
      const change = h[`${col}_change` as keyof HistoryRow] as number | null;
      return `<td class="num" data-field="${s}" data-value="${escapeHtml(h[col])}">${int(h[col] as number)} <span class="muted">${signed(change)}</span></td>`;
    }).join('')}${num('pct_with_identity', h.pct_with_identity, pct(h.pct_with_identity))}</tr>`,
  )
  .join('\n')}
</tbody></table></section>`;
}

function claimsSection(weeks: FunnelRow[], total: FunnelRow): string {
  const row = (w: FunnelRow, label: string, attrs: string) => `<tr ${attrs}><th scope="row">${escapeHtml(label)}</th>${num('leads', w.leads, int(w.leads))}${num(
    'claims_expected',
    w.claims_expected,
    int(w.claims_expected),
  )}${num('claims_expected_amount', w.claims_expected_amount, amount(w.claims_expected_amount))}${num('claims_present', w.claims_present, int(w.claims_present))}${num(
    'claims_present_amount',
    w.claims_present_amount,
    amount(w.claims_present_amount),
  )}${num('claims_missing', w.claims_missing, int(w.claims_missing))}${num('claims_missing_amount', w.claims_missing_amount, amount(w.claims_missing_amount))}${num(
    'claims_paid_amount',
    w.claims_paid_amount,
    amount(w.claims_paid_amount),
  )}</tr>`;
  return `<section id="claims"><h2>Claims per lead week: missing, generated, expected (S/)</h2>
<div class="chart wide"><canvas id="chart-claims" aria-label="claims per lead week"></canvas></div>
<table data-testid="claims">
<thead><tr><th>lead week (Monday)</th><th class="num">leads</th><th class="num">expected</th><th class="num">expected S/</th><th class="num">generated</th><th class="num">generated S/</th><th class="num">missing</th><th class="num">missing S/</th><th class="num">paid S/</th></tr></thead>
<tbody>
${[...weeks].reverse().map((w) => row(w, w.week_start ?? '', `data-testid="claims-week" data-week="${escapeHtml(w.week_start)}"`)).join('\n')}
</tbody>
<tfoot>${row(total, 'all weeks', 'data-testid="claims-total"')}</tfoot>
</table>
<p class="muted">Expected: the lead's driver reached the milestone within [lead_date, lead_date + 14 days). Generated: a claim row exists for the lead key (any status). Missing: expected without a claim row (<code>ops.v_cabinet_claims_gap_14d</code>).</p></section>`;
}

/** What happens to the leads of a stage that nobody has to act on. */
const LEFT_ALONE: Record<Exclude<Stage, 'OK'>, string> = {
  NO_IDENTITY: 'the others are retried by the job (not evaluated yet, NO_CANDIDATES) or were marked IGNORED',
  NO_DRIVER: 'none',
  NO_TRIPS_14D: 'they wait for trips while the window is open; a closed window without trips has nothing to claim',
  TRIPS_NO_CLAIM: 'none',
};

function oldestSection(oldest: OldLead[], actions: StageActions[], perStage: number): string {
  const parts = STAGES.filter((s): s is Exclude<Stage, 'OK'> => s !== 'OK').map((s) => {
    const rows = oldest.filter((o) => o.limbo_stage === s);
    const a = actions.find((x) => x.limbo_stage === s) ?? { leads: 0, actionable: 0 };
    const others = a.leads - a.actionable;
    const body =
      rows.length === 0
        ? `<p class="muted" data-testid="nothing-to-do-${s}">${a.leads === 0 ? `No lead in ${s}.` : `Nothing to do: ${int(a.leads)} lead${a.leads === 1 ? '' : 's'}; ${escapeHtml(LEFT_ALONE[s])}.`}</p>`
        : `<table data-testid="oldest-${s}"><thead><tr><th>lead</th><th>lead date</th><th class="num">age (days)</th><th>name</th><th>reason</th><th>what to do</th></tr></thead><tbody>
${rows
  .map(
    (o) => `<tr data-testid="oldest-lead" data-stage="${s}" data-lead="${escapeHtml(o.lead_source_pk)}"><td class="nowrap">${escapeHtml(o.lead_source_pk)}</td><td class="nowrap">${escapeHtml(o.lead_date)}</td>${num(
      'age_days',
      o.age_days,
      int(o.age_days),
    )}<td>${escapeHtml(o.lead_name ?? '')}</td><td>${escapeHtml(o.reason_code ?? '')}</td><td class="detail">${escapeHtml(o.limbo_reason_detail)}</td></tr>`,
  )
  .join('\n')}
</tbody></table>${others > 0 ? `<p class="muted">Not listed: ${int(others)} other lead${others === 1 ? '' : 's'} of ${s}; ${escapeHtml(LEFT_ALONE[s])}.</p>` : ''}`;
    return `<h3><span class="dot stage-${s}"></span>${s} <span class="muted">(${escapeHtml(STAGE_MEANING[s])}; ${int(a.leads)} lead${a.leads === 1 ? '' : 's'}, ${int(a.actionable)} to act on${rows.length ? `, oldest ${Math.min(perStage, rows.length)} shown` : ''})</span></h3>\n${body}`;
  });
  return `<section id="oldest"><h2>Oldest leads where someone can act</h2>
<p class="muted">A person decides AMBIGUOUS, CONFLICT, WEAK_MATCH_ONLY and SHARED_KEY leads (<code>cabinet-leads review</code>), completes MISSING_KEYS leads, links a person's driver (NO_DRIVER) and gets a missing claim generated (TRIPS_NO_CLAIM).</p>
${parts.join('\n')}</section>`;
}

function runsSection(runs: RunRow[]): string {
  const body =
    runs.length === 0
      ? '<p class="muted">No run yet: <code>cabinet-leads reconcile</code>.</p>'
      : `<table data-testid="runs"><thead><tr><th>run</th><th>started</th><th>status</th><th>trigger</th><th class="num">duration</th><th class="num">leads evaluated</th><th class="num">newly linked</th><th class="num">claims generated</th><th>error</th></tr></thead><tbody>
${runs
  .map(
    (r) => `<tr data-testid="run" data-run-id="${escapeHtml(r.id)}" data-status="${escapeHtml(r.status)}"><td>#${escapeHtml(r.id)}</td><td class="nowrap">${escapeHtml(r.started_at)}</td><td class="status status-${escapeHtml(r.status)}">${escapeHtml(r.status)}${r.dry_run ? ' (dry run)' : ''}</td><td>${escapeHtml(r.trigger)}</td>${num(
      'duration_ms',
      r.duration_ms,
      r.duration_ms === null ? '–' : r.duration_ms < 10_000 ? `${int(r.duration_ms)} ms` : `${(r.duration_ms / 1000).toFixed(1)} s`,
    )}${num('leads_evaluated', r.leads_evaluated, int(r.leads_evaluated))}${num('newly_linked', r.newly_linked, int(r.newly_linked))}${num(
      'claims_generated',
      r.claims_generated,
      int(r.claims_generated),
    )}<td class="detail">${escapeHtml((r.error_message ?? '').split('\n')[0]?.slice(0, 300))}</td></tr>`,
  )
  .join('\n')}
</tbody></table>`;
  return `<section id="runs"><h2>Last runs</h2>\n${body}</section>`;
}

const STYLE = `
:root { --fg: #1d2330; --muted: #687083; --line: #dde1e8; --bg: #f6f7f9; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: var(--fg); background: var(--bg); }
header { background: #1d2330; color: #fff; padding: 18px 28px; }
header h1 { margin: 0 0 4px; font-size: 22px; }
header p { margin: 0; color: #c9cfdb; }
header nav a { color: #fff; margin-right: 14px; text-decoration: none; border-bottom: 1px dotted #9aa3b5; }
main { padding: 8px 28px 28px; max-width: 1400px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 14px 18px; margin: 16px 0; }
h2 { font-size: 17px; margin: 0 0 10px; }
h3 { font-size: 14px; margin: 16px 0 6px; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
thead th { font-weight: 600; color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
tfoot th, tfoot td { font-weight: 700; border-top: 2px solid var(--fg); }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.muted { color: var(--muted); font-weight: normal; }
.nowrap { white-space: nowrap; }
.detail { max-width: 640px; font-size: 12.5px; }
.grid { display: grid; grid-template-columns: minmax(320px, 1fr) minmax(320px, 1fr); gap: 20px; align-items: start; }
.chart { position: relative; height: 300px; }
.chart.wide { height: 320px; }
.count { display: inline-block; min-width: 24px; text-align: center; border-radius: 12px; background: #e8ebf0; padding: 0 8px; font-size: 13px; }
ul.alerts { list-style: none; padding: 0; margin: 0; }
li.alert { border-left: 4px solid #e0a400; background: #fff8e1; padding: 8px 12px; margin: 6px 0; border-radius: 4px; }
li.alert.critical { border-left-color: #c62828; background: #fdecea; }
.ok { color: #2e7d32; font-weight: 600; }
.dot { display: inline-block; width: 10px; height: 10px; border-radius: 50%; margin-right: 6px; }
.stage-NO_IDENTITY { background: #d62728; } .stage-NO_DRIVER { background: #ff7f0e; } .stage-NO_TRIPS_14D { background: #bcbd22; }
.stage-TRIPS_NO_CLAIM { background: #9467bd; } .stage-OK { background: #2ca02c; }
.status-FAILED { color: #c62828; font-weight: 600; } .status-COMPLETED { color: #2e7d32; } .status-SKIPPED, .status-RUNNING { color: var(--muted); }
code { background: #f0f2f5; padding: 1px 4px; border-radius: 3px; font-size: 12.5px; }
footer { color: var(--muted); font-size: 12px; padding: 0 28px 24px; }
@media (max-width: 900px) { .grid { grid-template-columns: 1fr; } }
`;

// The page's own script: draws the three charts from the embedded JSON. Plain ES2017.
const CLIENT_SCRIPT = `
(function () {
  'use strict';
  var data = JSON.parse(document.getElementById('report-data').textContent);
  if (typeof Chart === 'undefined') { document.body.setAttribute('data-charts', 'missing'); return; }
  Chart.defaults.animation = false;
  Chart.defaults.font.family = 'system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif';
  var colors = { NO_IDENTITY: '#d62728', NO_DRIVER: '#ff7f0e', NO_TRIPS_14D: '#bcbd22', TRIPS_NO_CLAIM: '#9467bd', OK: '#2ca02c' };
  var t = data.funnel_total;
  // Counts are whole leads: no 0.5 tick on an empty database.
  var wholeTicks = { precision: 0 };
  var soles = function (v) { return 'S/ ' + Number(v).toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 }); };
  var when = new Intl.DateTimeFormat('sv-SE', { timeZone: data.timezone, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
  new Chart(document.getElementById('chart-funnel'), {
    type: 'bar',
    data: {
      labels: ['Leads', 'With identity', 'With driver', 'With trips (14 d)', 'OK'],
      datasets: [{ label: 'leads', data: [t.leads, t.leads_with_identity, t.leads_with_driver, t.leads_with_trips_14d, t.limbo_ok],
                   backgroundColor: ['#4e79a7', '#59a14f', '#76b7b2', '#edc948', '#2ca02c'] }]
    },
    options: { indexAxis: 'y', responsive: true, maintainAspectRatio: false, plugins: { legend: { display: false },
               title: { display: true, text: 'Leads reaching each link of the chain' } },
               scales: { x: { beginAtZero: true, ticks: wholeTicks } } }
  });
  var historyCanvas = document.getElementById('chart-history');
  if (historyCanvas && data.history.length > 0) {
    new Chart(historyCanvas, {
      type: 'line',
      data: {
        // Each snapshot at its real time (x is time, not an evenly spaced label), joined by
        // straight segments: nothing drawn between snapshots that was not measured.
        datasets: data.stages.map(function (s) {
          return { label: s, data: data.history.map(function (h) { return { x: h.taken_ms, y: h['limbo_' + s.toLowerCase()] }; }),
                   borderColor: colors[s], backgroundColor: colors[s], pointRadius: data.history.length > 60 ? 1 : 3,
                   tension: 0, cubicInterpolationMode: 'default', stepped: false };
        })
      },
      options: { responsive: true, maintainAspectRatio: false, interaction: { mode: 'nearest', axis: 'x', intersect: false },
                 plugins: { tooltip: { callbacks: { title: function (items) { return items.length ? when.format(new Date(items[0].parsed.x)) + ' ' + data.timezone : ''; } } } },
                 scales: { y: { beginAtZero: true, ticks: wholeTicks, title: { display: true, text: 'leads' } },
                           x: { type: 'linear', ticks: { maxTicksLimit: 8, callback: function (v) { return when.format(new Date(v)); } },
                                title: { display: true, text: 'snapshot time (' + data.timezone + ')' } } } }
    });
  }
  var claimsCanvas = document.getElementById('chart-claims');
  if (claimsCanvas) {
    new Chart(claimsCanvas, {
      type: 'bar',
      data: {
        labels: data.weeks.map(function (w) { return w.week_start; }),
        // Missing money is the series to see: strong, at the base of each bar; generated on
        // top, muted; the bar's height is what was expected.
        datasets: [
          { label: 'missing (S/)', data: data.weeks.map(function (w) { return w.claims_missing_amount; }), backgroundColor: '#d62728', stack: 'claims' },
          { label: 'generated (S/)', data: data.weeks.map(function (w) { return w.claims_present_amount; }), backgroundColor: '#c9d3dd', stack: 'claims' }
        ]
      },
      options: { responsive: true, maintainAspectRatio: false,
                 plugins: { tooltip: { callbacks: { label: function (c) { return c.dataset.label.replace(' (S/)', '') + ': ' + soles(c.parsed.y); },
                                                    footer: function (items) { return items.length ? 'expected: ' + soles(data.weeks[items[0].dataIndex].claims_expected_amount) : ''; } } } },
                 scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0, callback: function (v) { return 'S/ ' + Number(v).toLocaleString('en-US'); } },
                                                      title: { display: true, text: 'S/' } } } }
    });
  }
  document.body.setAttribute('data-charts', 'ready');
})();
`;

export function renderReport(data: ReportData, opts: { oldestPerStage?: number } = {}): string {
  const chart = chartJsSource();
  // Only what the charts need travels as JSON; names and reasons stay in escaped HTML.
  const chartData = {
    stages: STAGES,
    timezone: data.timezone,
    funnel_total: data.funnel_total,
    weeks: data.weeks.map((w) => ({
      week_start: w.week_start,
      claims_expected_amount: w.claims_expected_amount,
      claims_present_amount: w.claims_present_amount,
      claims_missing_amount: w.claims_missing_amount,
    })),
    history: data.history.map((h) => ({
      taken_ms: h.taken_ms,
      limbo_no_identity: h.limbo_no_identity,
      limbo_no_driver: h.limbo_no_driver,
      limbo_no_trips_14d: h.limbo_no_trips_14d,
      limbo_trips_no_claim: h.limbo_trips_no_claim,
      limbo_ok: h.limbo_ok,
    })),
  };
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="cabinet-leads report">
<title>Cabinet leads: limbo report ${escapeHtml(data.business_today)}</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>
<header>
<h1>Cabinet leads: limbo report</h1>
<p>Generated <span data-testid="generated-at">${escapeHtml(data.generated_at)}</span> · business today <span data-testid="business-today">${escapeHtml(
    data.business_today,
  )}</span> · every time in <span data-testid="timezone">${escapeHtml(data.timezone)}</span> · amounts in soles (S/, PEN)</p>
<nav><a href="#alerts">alerts</a><a href="#funnel">funnel</a><a href="#history">over time</a><a href="#claims">claims</a><a href="#oldest">oldest leads</a><a href="#runs">runs</a></nav>
</header>
<main>
${alertsSection(data.alerts, data.timezone)}
${funnelSection(data.funnel_total)}
${historySection(data.history, data.history_days)}
${claimsSection(data.weeks, data.funnel_total)}
${oldestSection(data.oldest, data.stage_actions, opts.oldestPerStage ?? 10)}
${runsSection(data.runs)}
</main>
<footer>Numbers from ops.v_cabinet_14d_funnel_weekly, ops.v_limbo_history, ops.v_cabinet_leads_limbo, canon.ingestion_runs and ops.check_limbo_alerts, read in one transaction. Charts: Chart.js v${escapeHtml(
    chart.version,
  )} (MIT licence), embedded.</footer>
<script type="application/json" id="report-data">${jsonForScript(chartData)}</script>
<script>${chart.source}</script>
<script>${CLIENT_SCRIPT}</script>
</body>
</html>
`;
}
