// cabinet-leads export claims|limbo: writes the claims or the limbo view to a CSV that
// Excel opens right, or to an .xlsx (src/export/ does the work), streamed from PostgreSQL.
import { createWriteStream, renameSync, statSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { PassThrough, type Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { UsageError } from '../errors.js';
import { dateFlag, EXPORTS, valuesFlag, type ExportDefinition } from '../export/definitions.js';
import { runExport, type ExportFormat } from '../export/run-export.js';
import { parseDelimiter } from '../import/sniff.js';
import { parse } from './args.js';
import type { Command } from './command.js';
import { withDatabase } from './context.js';

const USAGE = 'cabinet-leads export claims|limbo [--out FILE] [--format csv|xlsx] [--from DATE] [--to DATE] [--status S,..|--stage S,..] [--delimiter C] [--decimal C]';

function formatOf(command: string, out: string | undefined, raw: string | undefined): ExportFormat {
  const ext = out === undefined ? '' : path.extname(out).toLowerCase();
  if (raw !== undefined) {
    const f = raw.toLowerCase();
    if (f !== 'csv' && f !== 'xlsx') throw new UsageError(`${command}: invalid --format ${JSON.stringify(raw)}: expected csv or xlsx`);
    if ((ext === '.csv' && f === 'xlsx') || (ext === '.xlsx' && f === 'csv')) {
      throw new UsageError(`${command}: --format ${f} does not match --out ${out}: name the file .${f}, or leave --format out`);
    }
    return f;
  }
  return ext === '.xlsx' ? 'xlsx' : 'csv';
}

/** Writes to `out` through a temporary file renamed at the end, or to stdout: never a half-written file. */
async function writeTo<T>(out: string | undefined, write: (stream: Writable) => Promise<T>): Promise<T> {
  if (out === undefined) {
    // (process.stdout never ends: the writers write to a stream that does)
    const pass = new PassThrough();
    pass.pipe(process.stdout, { end: false });
    const result = await write(pass);
    pass.end();
    await finished(pass);
    await new Promise<void>((resolve) => (process.stdout.write('', () => resolve())));
    return result;
  }
  const tmp = `${out}.${process.pid}.tmp`;
  const file = createWriteStream(tmp);
  try {
    const result = await write(file);
    if (!file.writableEnded) file.end();
    await finished(file);
    renameSync(tmp, out);
    return result;
  } catch (err) {
    file.destroy();
    try {
      unlinkSync(tmp);
    } catch {
      // never created
    }
    throw err;
  }
}

function help(def: ExportDefinition): string {
  const other = def.filter.flag === 'status' ? 'status' : 'stage';
  return `Usage: cabinet-leads export ${def.name} [--out FILE] [--format csv|xlsx] [--from DATE] [--to DATE] [--${other} ${def.filter.values[0]},...]

Writes ${def.summary}, ordered by ${def.orderBy.join(', ')}.
Columns: ${def.columns.map((c) => c.name).join(', ')}.`;
}

export const exportCommand: Command = {
  name: 'export',
  summary: 'write the claims or the limbo view to CSV (Excel-ready) or .xlsx',
  help: `Usage: ${USAGE}

Writes finance's files, streamed from PostgreSQL (a cursor: a million rows in flat memory),
in one snapshot of the database:
  claims   every claim (lead x milestone) with amount, currency, status, lead, driver,
           generated_at, paid_at (ops.v_cabinet_claims)
  limbo    every lead with its limbo stage, trips, milestones, claims and the reason
           (ops.v_cabinet_leads_limbo)

Formats (by --format, else by the extension of --out; default csv):
  csv    UTF-8 with a BOM, CRLF, every text value quoted, ";" as the delimiter (what
         Excel in a Spanish locale expects: it opens with a double click), amounts with
         a decimal comma (25,00) when the delimiter is ";", else a point; dates as
         YYYY-MM-DD, times as YYYY-MM-DD HH:MM:SS. A text value that starts with = + - @,
         TAB or CR gets a leading ' so no spreadsheet runs it as a formula.
  xlsx   amounts as numbers in "S/" #,##0.00, dates and times as real dates, flags as
         booleans, text as text cells (never a formula); frozen, filterable header.

Times (generated_at, paid_at, evaluated_at) are written in the business time zone
(canon.settings.business_timezone, default America/Lima).

Options:
  --out FILE         where to write (a temporary file renamed at the end); default stdout
                     (an xlsx only when stdout is not a terminal)
  --format F         csv or xlsx
  --from DATE        leads dated on or after DATE (YYYY-MM-DD or DD/MM/YYYY)
  --to DATE          leads dated on or before DATE
  --status S,...     claims: only these statuses (expected, generated, paid, rejected, expired)
  --stage S,...      limbo: only these stages (NO_IDENTITY, NO_DRIVER, NO_TRIPS_14D,
                     TRIPS_NO_CLAIM, OK)
  --delimiter C      csv: ";" (default), "," or "tab"
  --decimal C        csv: the decimal separator of amounts, "," or "." (default: "," with
                     the ";" delimiter, else ".")
  -h, --help         show this help

Exit codes: 0 written (also with no rows: the header alone), 1 the database failed on the
way (no file is left), 2 usage error.`,
  async run(argv) {
    const { values, positionals } = parse(
      'export',
      argv,
      {
        out: { type: 'string' },
        format: { type: 'string' },
        from: { type: 'string' },
        to: { type: 'string' },
        status: { type: 'string' },
        stage: { type: 'string' },
        delimiter: { type: 'string' },
        decimal: { type: 'string' },
      },
      true,
    );
    const def = EXPORTS.find((d) => d.name === positionals[0]);
    if (values.help) {
      console.log(def ? help(def) : this.help);
      return 0;
    }
    if (!def || positionals.length !== 1) {
      throw new UsageError(`export: expected what to export, claims or limbo, got ${positionals.length === 0 ? 'nothing' : positionals.map((p) => JSON.stringify(p)).join(' ')} (see cabinet-leads export --help)`);
    }
    const command = `export ${def.name}`;
    const wrong = def.filter.flag === 'status' ? 'stage' : 'status';
    if ((wrong === 'status' ? values.status : values.stage) !== undefined) throw new UsageError(`${command}: --${wrong} applies to export ${wrong === 'status' ? 'claims' : 'limbo'}; filter ${def.rows} with --${def.filter.flag}`);
    const format = formatOf(command, values.out, values.format);
    if (format === 'xlsx' && (values.delimiter !== undefined || values.decimal !== undefined)) {
      throw new UsageError(`${command}: --delimiter and --decimal apply to CSV; an xlsx holds numbers and dates as such`);
    }
    const delimiter = parseDelimiter(command, values.delimiter) ?? ';';
    const decimal = values.decimal ?? (delimiter === ';' ? ',' : '.');
    if (decimal !== ',' && decimal !== '.') throw new UsageError(`${command}: invalid --decimal ${JSON.stringify(values.decimal)}: expected "," or "."`);
    const from = dateFlag(command, 'from', values.from);
    const to = dateFlag(command, 'to', values.to);
    if (from !== null && to !== null && from > to) throw new UsageError(`${command}: --from ${from} is after --to ${to}`);
    const filterValues = valuesFlag(command, def.filter, def.filter.flag === 'status' ? values.status : values.stage);
    if (values.out === undefined && format === 'xlsx' && process.stdout.isTTY) {
      throw new UsageError(`${command}: an xlsx is not for a terminal: give --out FILE.xlsx (or redirect stdout)`);
    }
    const out = values.out === undefined ? undefined : path.resolve(values.out);

    return withDatabase(async ({ db, log }) => {
      const started = Date.now();
      const client = await db.pool.connect();
      let failed = false;
      try {
        const result = await writeTo(out, (stream) =>
          runExport(client, def, stream, { format, csv: { delimiter, decimal }, filters: { from, to, values: filterValues } }),
        );
        const duration_ms = Date.now() - started;
        log.info({ export: def.name, format, rows: result.rows, out: out ?? 'stdout', from, to, [def.filter.flag]: filterValues, duration_ms }, 'export written');
        if (out !== undefined) {
          const kb = Math.max(1, Math.round(statSync(out).size / 1024));
          const sheets = result.sheets !== null && result.sheets > 1 ? `, ${result.sheets} sheets` : '';
          console.log(`wrote ${out}: ${result.rows} ${def.rows}, ${format}${sheets} (${kb} kB, times in ${result.business_timezone}, ${duration_ms} ms)`);
        }
        return 0;
      } catch (err) {
        failed = true;
        throw err;
      } finally {
        client.release(failed);
      }
    });
  },
};
