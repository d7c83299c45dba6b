// cabinet-leads import-leads: loads a cabinet export (CSV or xlsx) into
// public.module_ct_cabinet_leads (src/import/load-leads.ts does the work). Exit 0 all
// rows accounted for, 1 rows rejected (or the file is broken), 2 usage errors.
import { stat } from 'node:fs/promises';
import { importLeads, MAX_REPORTED_REJECTS, type ImportSummary } from '../import/load-leads.js';
import { RunFailedError, UsageError } from '../errors.js';
import { quoted } from '../printable.js';
import { isLockTimeout, lockTimeoutHint } from '../locks.js';
import { parse } from './args.js';
import type { Command } from './command.js';
import { withDatabase } from './context.js';
import { parseEncoding } from '../import/encoding.js';
import { parseDelimiter } from '../import/sniff.js';

/** Files at least this big get a progress line on a terminal. */
const PROGRESS_MIN_BYTES = 2 * 1024 * 1024;
/** Rejected rows printed in text mode (all are counted; --json gives up to MAX_REPORTED_REJECTS). */
const PRINTED_REJECTS = 100;

function mb(bytes: number): string {
  return (bytes / 1024 / 1024).toFixed(1);
}

/**
 * A one-line progress indicator on stderr, redrawn at most 5 times a second. Plain
 * text and \r, so it needs no dependency and works in any terminal (Windows included).
 */
function progressLine(file: string): { update: (p: { bytes: number; totalBytes: number; rows: number; phase: string }) => void; done: () => void } {
  const started = Date.now();
  let last = 0;
  let drawn = false;
  return {
    update(p) {
      const now = Date.now();
      if (now - last < 200 && p.phase === 'reading') return;
      last = now;
      const pct = p.totalBytes > 0 ? Math.floor((p.bytes / p.totalBytes) * 100) : 100;
      const rate = Math.round(p.rows / Math.max((now - started) / 1000, 0.001));
      const text = p.phase === 'inserting'
        ? `${file}: ${p.rows.toLocaleString('en-US')} rows read, inserting...`
        : `${file}: ${String(pct).padStart(3)}%  ${mb(p.bytes)}/${mb(p.totalBytes)} MB  ${p.rows.toLocaleString('en-US')} rows  ${rate.toLocaleString('en-US')} rows/s`;
      process.stderr.write(`\r${text}\x1b[K`);
      drawn = true;
    },
    done() {
      if (drawn) process.stderr.write('\r\x1b[K');
    },
  };
}

const ENCODING_NAMES: Record<string, string> = { 'utf-8': 'UTF-8', 'windows-1252': 'Windows-1252', 'utf-16le': 'UTF-16LE', 'utf-16be': 'UTF-16BE' };

/** How the file was read, in one line: what was detected can be checked at a glance. */
function readAsText(s: ImportSummary, shownFile: string): string {
  if (s.format === 'xlsx') return `${shownFile}: xlsx, sheet ${quoted(s.sheet ?? '')}, rows numbered as in the sheet`;
  const how = s.encoding_source === 'bom' ? ' (BOM)' : s.encoding_source === 'flag' ? ' (--encoding)' : s.encoding_source === 'ascii' ? ' (ASCII only)' : ' (detected)';
  const delimiter = s.delimiter === '\t' ? 'tab' : quoted(s.delimiter ?? ',');
  return `${shownFile}: CSV, ${ENCODING_NAMES[s.encoding ?? 'utf-8']}${how}, delimiter ${delimiter}`;
}

function summaryText(s: ImportSummary, shownFile: string): string {
  const lines: string[] = [readAsText(s, shownFile)];
  // an xlsx row is named by its sheet row number, as Excel shows it
  const unit = s.format === 'xlsx' ? 'row' : 'line';
  for (const r of s.rejected_rows.slice(0, PRINTED_REJECTS)) lines.push(`${unit} ${r.line}: ${r.reason}`);
  if (s.rejected > PRINTED_REJECTS) lines.push(`... and ${s.rejected - PRINTED_REJECTS} more rejected rows (--json lists up to ${MAX_REPORTED_REJECTS})`);
  if (s.ignored_columns.length > 0) {
    lines.push(`ignored columns: ${s.ignored_columns.map((c) => `${c.column} (${c.reason})`).join(', ')}`);
  }
  const dup = s.duplicates > 0 ? ` (${s.duplicates_in_table} already in the table, ${s.duplicates_in_file} repeated in the file)` : '';
  const inserted = s.dry_run || s.status === 'FAILED' ? `would insert ${s.new_rows}` : `inserted ${s.inserted}`;
  const counts = `read ${s.read}, ${inserted}, duplicates ${s.duplicates}${dup}, rejected ${s.rejected}`;
  const blank = s.blank_rows > 0 ? `, ${s.blank_rows} blank row${s.blank_rows === 1 ? '' : 's'} skipped` : '';
  const prefix = s.status === 'FAILED' ? `--strict: nothing loaded because ${s.rejected} row(s) were rejected; ` : s.dry_run ? 'dry run, nothing written: ' : '';
  lines.push(`${shownFile}: ${prefix}${counts}${blank} (${s.duration_ms} ms${s.run_id !== null ? `, run ${s.run_id}` : ''})`);
  return lines.join('\n');
}

export const importLeadsCommand: Command = {
  name: 'import-leads',
  summary: 'load a cabinet CSV export into public.module_ct_cabinet_leads',
  help: `Usage: cabinet-leads import-leads FILE [--dry-run] [--strict] [--delimiter C] [--encoding E] [--sheet NAME] [--json]

Loads a cabinet export into public.module_ct_cabinet_leads in one transaction, at COPY
speed. FILE is a CSV file or an Excel workbook (.xlsx), told apart by its content.

  CSV        encoding detected: UTF-8 (with or without BOM), Windows-1252 (what Excel
             saves as plain "CSV" on a Spanish Windows) or UTF-16 with a BOM. Delimiter
             detected from the header: ",", ";" or tab. CRLF, LF or CR line ends.
  xlsx       the first sheet (or --sheet NAME); the first non-empty row is the header;
             date cells and Excel serial numbers are read as the wall-clock time they
             show. Rejected rows are named by their sheet row.
  Header     matched by name, any order, any case. Required: external_id,
             lead_created_at. Optional: the other columns of the table (first_name,
             middle_name, last_name, park_phone, asset_plate_number, asset_model,
             asset_color, park_name, status, activation_city, target_city, tariff,
             last_active_date, active_1 ... active_100, created_at). Unknown columns
             are reported and ignored; id is always assigned by the database.
  Values     blank cells are NULL. Timestamps: YYYY-MM-DD HH:MM:SS[.ffffff], the same
             with T, YYYY-MM-DD, or day-first DD/MM/YYYY [H:MM[:SS]] (20/11/2026 9:15;
             never month-first; no time zone). Booleans: true/false, 1/0, yes/no, t/f,
             y/n, verdadero/falso, sí/no. external_id and lead_created_at must not be
             blank. A field over 1,000,000 characters rejects its row.
  Duplicates a row whose lead key (canon.lead_source_pk: the external_id without
             the blanks at its ends, so 'NB-1<TAB>' is 'NB-1') is already in the
             table, or appeared earlier in the file, is not inserted (counted).
  Rejects    a row that cannot be read is reported with its line number and reason and
             not loaded; the other rows load (with --strict nothing loads).

Options:
  --dry-run      read and check everything, report what would be inserted, write nothing
  --strict       load nothing when any row is rejected
  --delimiter C  CSV: force the field separator (",", ";", "tab" or another character)
  --encoding E   CSV: force the encoding: utf-8, windows-1252 (cp1252, latin1), utf-16le,
                 utf-16be (default auto)
  --sheet NAME   xlsx: the worksheet to read (default the first)
  --json         print the summary as JSON (with up to ${MAX_REPORTED_REJECTS} rejected rows)
  -h, --help     show this help

The first line printed says how the file was read (CSV with its encoding and delimiter,
or xlsx with its sheet). The import is logged in canon.ingestion_runs (job_name
import_cabinet_leads) with the file's name, size, sha256 and that. A progress line is
shown on a terminal for large files.
A table the import writes (the leads, canon.ingestion_runs) locked by another session
fails the import after 30 s (lock_timeout; less when the session asks for less, e.g.
PGOPTIONS='-c lock_timeout=5s'); waiting for another import to finish has no limit.

Exit codes: 0 every row inserted or a known duplicate, 1 rows rejected (or the file is
broken, or a lock wait timed out: nothing loaded), 2 usage error (missing file, missing
required column, a file in no encoding read, an .xls workbook, bad flag).`,
  async run(argv) {
    const { values, positionals } = parse(
      'import-leads',
      argv,
      {
        'dry-run': { type: 'boolean' },
        strict: { type: 'boolean' },
        delimiter: { type: 'string' },
        encoding: { type: 'string' },
        sheet: { type: 'string' },
        json: { type: 'boolean' },
      },
      true,
    );
    if (values.help) {
      console.log(this.help);
      return 0;
    }
    if (positionals.length !== 1) {
      throw new UsageError(`import-leads: expected one FILE, got ${positionals.length === 0 ? 'none' : positionals.map((p) => JSON.stringify(p)).join(' ')} (see cabinet-leads import-leads --help)`);
    }
    const delimiter = parseDelimiter('import-leads', values.delimiter);
    const encoding = parseEncoding('import-leads', values.encoding);
    const file = positionals[0]!;
    // A missing file is a usage error before any database is opened.
    const st = await stat(file).catch((err: NodeJS.ErrnoException) => {
      throw new UsageError(`import-leads: cannot read ${file}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`);
    });
    if (!st.isFile()) throw new UsageError(`import-leads: ${file} is not a file`);
    return withDatabase(async ({ db, log }) => {
      const client = await db.pool.connect();
      let failed = false;
      const showProgress = process.stderr.isTTY === true && !values.json;
      const bar = progressLine(file);
      let summary: ImportSummary;
      try {
        summary = await importLeads(
          client,
          {
            file,
            dryRun: values['dry-run'] ?? false,
            strict: values.strict ?? false,
            delimiter,
            encoding,
            sheet: values.sheet,
            ...(showProgress ? { onProgress: (p) => (p.totalBytes >= PROGRESS_MIN_BYTES ? bar.update(p) : undefined) } : {}),
          },
          log,
        );
      } catch (err) {
        failed = true;
        if (isLockTimeout(err)) {
          throw new RunFailedError(`import-leads: nothing was loaded: ${(err as Error).message}; ${await lockTimeoutHint(db.pool)}`, null);
        }
        throw err;
      } finally {
        bar.done();
        client.release(failed);
      }
      if (values.json) console.log(JSON.stringify(summary));
      else console.log(summaryText(summary, file));
      return summary.rejected > 0 ? 1 : 0;
    });
  },
};
