// cabinet-leads report: writes the limbo report, one self-contained HTML file (data,
// charts and script inlined; opens offline). What it shows: src/report/data.ts.
import { renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { loadReportData } from '../report/data.js';
import { renderReport } from '../report/html.js';
import { intFlag, parse } from './args.js';
import type { Command } from './command.js';
import { withDatabase } from './context.js';

export const reportCommand: Command = {
  name: 'report',
  summary: 'write the limbo report as one self-contained HTML file',
  help: `Usage: cabinet-leads report [--out FILE] [--history-days N] [--oldest N] [--runs N]

Writes one HTML file (no network needed to open it, charts included): firing alerts,
the limbo funnel today, limbo stages over time (from the snapshots of completed runs),
claims expected / generated / missing with amounts per lead week, the oldest leads of
each stage with their reason, and the last runs with durations and outcomes.

Options:
  --out FILE          where to write it (default report.html)
  --history-days N    snapshots of the last N days in the chart (default 90)
  --oldest N          oldest leads shown per stage (default 10)
  --runs N            last runs shown (default 20)
  -h, --help          show this help`,
  async run(argv) {
    const { values } = parse('report', argv, {
      out: { type: 'string' },
      'history-days': { type: 'string' },
      oldest: { type: 'string' },
      runs: { type: 'string' },
    });
    if (values.help) {
      console.log(this.help);
      return 0;
    }
    const out = path.resolve(values.out ?? 'report.html');
    const opts = {
      historyDays: intFlag('report', 'history-days', values['history-days'], 90, 1, 36500),
      oldestPerStage: intFlag('report', 'oldest', values.oldest, 10, 0, 1000),
      runs: intFlag('report', 'runs', values.runs, 20, 0, 1000),
    };
    return withDatabase(async ({ db, log }) => {
      const started = Date.now();
      const data = await loadReportData(db.pool, opts);
      const html = renderReport(data, opts);
      const tmp = `${out}.${process.pid}.tmp`;
      writeFileSync(tmp, html, 'utf8');
      renameSync(tmp, out);
      log.info({ out, bytes: Buffer.byteLength(html), alerts_firing: data.alerts.length, duration_ms: Date.now() - started }, 'report written');
      console.log(`wrote ${out} (${Math.round(Buffer.byteLength(html) / 1024)} kB)`);
      return 0;
    });
  },
};
