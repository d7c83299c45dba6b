// The database side of `cabinet-leads import-leads`: one transaction that streams the
// file (a CSV in UTF-8, Windows-1252 or UTF-16 through csv-parse, or an xlsx worksheet
// through exceljs: src/import/encoding.ts, sniff.ts, leads-xlsx.ts) into a temporary
// staging table with COPY FROM STDIN
// (pg-copy-streams), keys every row with canon.lead_source_pk (the one definition: the
// import computes no key, so 'NB-1<TAB>' is 'NB-1' here as everywhere), finds the first
// line of each key and whether it is already a lead key of public.module_ct_cabinet_leads
// in one hashed pass over narrow rows, then adds the new rows with one INSERT ... SELECT,
// external_id stored as its key. Rows the file cannot hold (bad values) never reach the
// database; rows whose external_id is blank by the key's definition are rejected there,
// with their line. The import is logged in canon.ingestion_runs (job_name import_cabinet_leads).
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { hostname, userInfo } from 'node:os';
import path from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CsvError, parse } from 'csv-parse';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { oneLine, UsageError } from '../errors.js';
import { boundLockWaits } from '../locks.js';
import type { Logger } from '../logger.js';
import { quoted } from '../printable.js';
import { DecodeToUtf8, decodeHead, type Encoding, type EncodingChoice, type EncodingSource } from './encoding.js';
import { convertRecord, LEAD_COLUMNS, lineBreaks, mapHeader, MAX_FIELD_CHARS, type HeaderMapping, type IgnoredColumn, type MappedColumn, type ColumnType, type RowResult, type TargetColumn } from './leads-csv.js';
import { cellText, sheetRows, unreadableWorkbookPart, workbookSheets, type SheetInfo, type SheetRow } from './leads-xlsx.js';
import { formatOf, readHead, sniffDelimiter, type FileFormat } from './sniff.js';

export const IMPORT_JOB_NAME = 'import_cabinet_leads';
/** Rejected rows kept in the summary (all are counted). */
export const MAX_REPORTED_REJECTS = 1000;
const MAX_EXAMPLES = 20;
/**
 * A record longer than this (characters) is a broken file, a quote never closed that
 * swallows the rest of it: nothing loads, the line where the record starts is named. (A
 * field over MAX_FIELD_CHARS in a record under this only rejects its row.)
 */
const MAX_RECORD_CHARS = 16 * MAX_FIELD_CHARS;

export interface ImportOptions {
  file: string;
  dryRun: boolean;
  strict: boolean;
  /** CSV: the field separator; undefined: found from the header (src/import/sniff.ts) */
  delimiter?: string | undefined;
  /** CSV: the character encoding; 'auto' decides from the bytes (src/import/encoding.ts) */
  encoding?: EncodingChoice;
  /** xlsx: the worksheet to read (default the first tab) */
  sheet?: string | undefined;
  /** called often while the file streams (bytes read so far, data rows so far) */
  onProgress?: (p: { bytes: number; totalBytes: number; rows: number; phase: 'reading' | 'inserting' }) => void;
}

export interface RejectedRow {
  line: number;
  reason: string;
}

export interface DuplicateExample {
  line: number;
  external_id: string;
  /** line of the first row with that key in the file, or null when the key is already in the table */
  first_line: number | null;
}

export interface ImportSummary {
  status: 'COMPLETED' | 'FAILED';
  file: string;
  bytes: number;
  sha256: string;
  /** how the file was read: csv (encoding, delimiter) or xlsx (sheet); line numbers of an xlsx are sheet rows */
  format: FileFormat;
  encoding: Encoding | null;
  /** what decided the encoding: a BOM, the first non-ASCII character, the flag, or nothing (ASCII only) */
  encoding_source: EncodingSource | null;
  delimiter: string | null;
  sheet: string | null;
  dry_run: boolean;
  strict: boolean;
  /** data rows read (header and blank rows excluded) */
  read: number;
  /** rows inserted (0 for a dry run or a --strict import with rejected rows) */
  inserted: number;
  /** rows that would be / were new */
  new_rows: number;
  duplicates: number;
  duplicates_in_table: number;
  duplicates_in_file: number;
  rejected: number;
  blank_rows: number;
  columns_loaded: string[];
  ignored_columns: IgnoredColumn[];
  rejected_rows: RejectedRow[];
  duplicate_examples: DuplicateExample[];
  run_id: number | null;
  duration_ms: number;
  /** time per phase: read_and_copy (parse, check, COPY into staging), dedupe_and_insert */
  durations_ms: Record<string, number>;
  error?: string;
}

/** A file that cannot be read as a whole (broken quoting, not UTF-8 ...): nothing loads. */
export class ImportFileError extends Error {
  readonly exitCode: number;
  override name = 'ImportFileError';
  constructor(message: string, exitCode = 1) {
    super(message);
    this.exitCode = exitCode;
  }
}

/** Bytes read so far and their sha256 (the file as it is on disk, whatever its format). */
class FileTap extends Transform {
  bytes = 0;
  private readonly hash = createHash('sha256');
  constructor(private readonly onBytes: (bytes: number) => void) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    this.onBytes(this.bytes);
    cb(null, chunk);
  }

  digest(): string {
    return this.hash.digest('hex');
  }
}

/** A record of the file with the line it starts on. */
interface ParsedRecord {
  line: number;
  fields: string[];
}

interface ParseState {
  /** line where the last record the parser produced ends (the parser runs ahead of the COPY) */
  lastLine: number;
  mapping: HeaderMapping | undefined;
  read: number;
  blank: number;
  rejected: number;
  rejectedRows: RejectedRow[];
}

/**
 * The cells of a sheet row as the text fields of a record (up to the header's width, the
 * cells Excel leaves out of a short row as blanks), typed by the column each is loaded
 * into, and the reasons a loaded cell cannot be read (an Excel error such as #N/A).
 */
function sheetRecord(cells: unknown[], types: (ColumnType | undefined)[], mapping: HeaderMapping | undefined, date1904: boolean): { record: string[]; cellErrors: string[] } {
  const record: string[] = [];
  const cellErrors: string[] = [];
  const width = Math.max(cells.length, mapping?.width ?? 0);
  for (let i = 0; i < width; i++) {
    const type = types[i];
    const r = cellText(cells[i], type, date1904);
    if ('text' in r) record.push(r.text);
    else {
      record.push('');
      const col = mapping?.columns.find((c) => c.index === i);
      if (col) cellErrors.push(`${col.name} ${r.error}`);
    }
  }
  return { record, cellErrors };
}

/** An error PostgreSQL returned (it has a SQLSTATE), not one of reading the file. */
function isDatabaseError(err: unknown): boolean {
  return typeof err === 'object' && err !== null && typeof (err as { code?: unknown }).code === 'string' && /^[0-9A-Z]{5}$/.test((err as { code: string }).code) && 'severity' in err;
}

async function targetColumns(client: pg.ClientBase): Promise<Map<string, TargetColumn>> {
  const res = await client.query<{ column_name: string; character_maximum_length: number | null }>(
    `SELECT column_name, character_maximum_length
     FROM information_schema.columns
     WHERE table_schema = 'public' AND table_name = 'module_ct_cabinet_leads'`,
  );
  if (res.rows.length === 0) throw new UsageError('import-leads: table public.module_ct_cabinet_leads does not exist (run cabinet-leads migrate)');
  return new Map(res.rows.map((r) => [r.column_name, { maxLength: r.character_maximum_length }]));
}

const STAGING_TYPES: Record<string, string> = { text: 'text', timestamp: 'timestamp', date: 'date', boolean: 'boolean' };
const ident = (name: string) => `"${name.replace(/"/g, '""')}"`;

/**
 * A workbook's problems that need no row read, found before the transaction: an unknown
 * --sheet (a usage error naming the sheets there are) and a part that does not inflate (the
 * streaming reader would wait forever on it). A file that is no zip at all is left to the
 * reader, which names it.
 */
async function checkWorkbook(file: string, opts: ImportOptions): Promise<void> {
  const book = await workbookSheets(file).catch(() => undefined);
  if (book === undefined) return;
  const names = book.sheets.map((s) => s.name);
  if (opts.sheet !== undefined && names.length > 0 && !names.includes(opts.sheet)) {
    throw new UsageError(`import-leads: ${opts.file} has no sheet ${quoted(opts.sheet)}; its sheets: ${names.map((n) => quoted(n)).join(', ')}`);
  }
  const bad = await unreadableWorkbookPart(file);
  if (bad) throw new ImportFileError(`import-leads: ${opts.file} is not a readable xlsx workbook: its part ${bad.part} is damaged (${bad.reason}); nothing was loaded`);
}

export async function importLeads(client: pg.ClientBase, opts: ImportOptions, log: Logger): Promise<ImportSummary> {
  const started = Date.now();
  const file = path.resolve(opts.file);
  let size: number;
  try {
    const st = await stat(file);
    if (!st.isFile()) throw new UsageError(`import-leads: ${opts.file} is not a file`);
    size = st.size;
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError(`import-leads: cannot read ${opts.file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  log.info({ file, bytes: size, dry_run: opts.dryRun, strict: opts.strict }, 'import started');

  const state: ParseState = { lastLine: 0, mapping: undefined, read: 0, blank: 0, rejected: 0, rejectedRows: [] };
  let slots: (MappedColumn | undefined)[] = [];
  const progress = (bytes: number) => opts.onProgress?.({ bytes, totalBytes: size, rows: state.read, phase: 'reading' });
  const tap = new FileTap(progress);

  // What the file is, from its first bytes: csv (which encoding, which delimiter) or xlsx.
  const head = await readHead(file);
  const format = formatOf(opts.file, head);
  if (format === 'xlsx' && (opts.delimiter !== undefined || (opts.encoding ?? 'auto') !== 'auto')) {
    throw new UsageError(`import-leads: ${opts.file} is an xlsx workbook: --delimiter and --encoding apply to CSV files only`);
  }
  if (format === 'csv' && opts.sheet !== undefined) throw new UsageError(`import-leads: ${opts.file} is a CSV file: --sheet applies to xlsx workbooks only`);
  if (format === 'xlsx') await checkWorkbook(file, opts);
  const delimiter = format === 'csv' ? opts.delimiter ?? sniffDelimiter(decodeHead(head, opts.encoding ?? 'auto')) : '';
  const decoder = format === 'csv' ? new DecodeToUtf8(opts.file, opts.encoding ?? 'auto') : undefined;
  const sheet: SheetInfo = { name: undefined, sheets: [], date1904: false };
  const readAs = () => ({
    format,
    encoding: decoder ? decoder.encoding ?? 'utf-8' : null,
    encoding_source: decoder ? decoder.source : null,
    delimiter: format === 'csv' ? delimiter : null,
    sheet: format === 'xlsx' ? sheet.name ?? null : null,
  });

  await client.query('BEGIN');
  try {
    // A table locked by someone else (the leads, canon.ingestion_runs) fails the import after 30 s.
    await boundLockWaits(client, 'transaction');
    // One import at a time: two concurrent imports of overlapping files must not both insert a key.
    const got = await client.query<{ ok: boolean }>(`SELECT pg_try_advisory_xact_lock(hashtext('cabinet_leads'), hashtext($1)) AS ok`, [IMPORT_JOB_NAME]);
    if (!got.rows[0]?.ok) {
      log.warn({ file }, 'another import is running: waiting for it to finish');
      // Queueing behind another import (whose own lock waits are bounded) is not a stuck lock.
      const bound = await client.query<{ v: string }>(`SELECT current_setting('lock_timeout') AS v`);
      await client.query(`SET LOCAL lock_timeout = 0`);
      await client.query(`SELECT pg_advisory_xact_lock(hashtext('cabinet_leads'), hashtext($1))`, [IMPORT_JOB_NAME]);
      await client.query(`SELECT set_config('lock_timeout', $1, true)`, [bound.rows[0]!.v]);
    }
    // Sorts and hashes of a million rows stay in memory; no JIT for these one-off statements.
    await client.query(`SET LOCAL work_mem = '256MB'`);
    await client.query(`SET LOCAL jit = off`);
    const target = await targetColumns(client);
    await client.query(
      `CREATE TEMP TABLE import_leads (line integer NOT NULL, ${LEAD_COLUMNS.map((c) => `${ident(c.name)} ${STAGING_TYPES[c.type]}`).join(', ')}) ON COMMIT DROP`,
    );

    // Empty lines are records too ([""]), so every record starts on the line after the
    // previous one ends: line numbers need no help from the parser. Counted as the parser
    // produces records, so that a parse error names the line of the record it stopped in.
    // Any of CRLF, LF, CR ends a record, whatever the first line used (an LF header on CRLF
    // rows must not leave a \r in the last field, nor count it as a line).
    const withLine = (fields: string[]): ParsedRecord => {
      const line = state.lastLine + 1;
      state.lastLine = line + lineBreaks(fields);
      return { line, fields };
    };
    const csvParser = () => parse({
      bom: true,
      delimiter,
      record_delimiter: ['\r\n', '\n', '\r'],
      relax_column_count: true,
      relax_quotes: true,
      max_record_size: MAX_RECORD_CHARS,
      // (csv-parse's types tie on_record's result to the record type; it may return any value)
      on_record: withLine as unknown as (fields: string[]) => string[],
    });

    // Records to COPY text lines, in chunks of about 64 kB.
    let columnTypes: (ColumnType | undefined)[] = [];
    const toCopy = async function* (records: AsyncIterable<ParsedRecord | SheetRow>): AsyncGenerator<string> {
      let chunk = '';
      for await (const rec of records) {
        const line = rec.line;
        let record: string[];
        let cellErrors: string[] = [];
        if ('cells' in rec) ({ record, cellErrors } = sheetRecord(rec.cells, columnTypes, state.mapping, sheet.date1904));
        else record = rec.fields;
        if (state.mapping === undefined) {
          if (record.every((v) => v.trim() === '')) continue; // blank lines before the header
          state.mapping = mapHeader(record, target, delimiter);
          const byName = new Map(state.mapping.columns.map((c) => [c.name, c]));
          slots = LEAD_COLUMNS.map((c) => byName.get(c.name));
          columnTypes = [];
          for (const c of state.mapping.columns) columnTypes[c.index] = c.type;
          continue;
        }
        const r: RowResult = cellErrors.length > 0 && !record.every((v) => v.trim() === '')
          ? { errors: cellErrors }
          : convertRecord(record, line, state.mapping, slots);
        if ('blank' in r) {
          state.blank++;
          continue;
        }
        state.read++;
        if ('errors' in r) {
          state.rejected++;
          if (state.rejectedRows.length < MAX_REPORTED_REJECTS) state.rejectedRows.push({ line, reason: r.errors.join('; ') });
          continue;
        }
        chunk += r.copyLine;
        if (chunk.length >= 65536) {
          yield chunk;
          chunk = '';
        }
      }
      if (state.mapping === undefined) throw new UsageError(`import-leads: ${opts.file} is empty: expected a header with external_id and lead_created_at`);
      if (chunk) yield chunk;
    };

    const copy = client.query(copyFrom(`COPY pg_temp.import_leads (line, ${LEAD_COLUMNS.map((c) => ident(c.name)).join(', ')}) FROM STDIN`));
    const bytes = createReadStream(file, { highWaterMark: 1 << 20 });
    try {
      if (format === 'csv') await pipeline(bytes, tap, decoder!, csvParser(), toCopy, copy);
      else {
        bytes.on('error', (err) => tap.destroy(err));
        await pipeline(sheetRows(bytes.pipe(tap), opts.file, opts.sheet, sheet), toCopy, copy);
      }
    } catch (err) {
      if (err instanceof CsvError) {
        const line = state.lastLine + 1;
        const what = err.code === 'CSV_QUOTE_NOT_CLOSED'
          ? 'a quoted field is never closed (unbalanced ")'
          : err.code === 'CSV_MAX_RECORD_SIZE'
            ? `a record is longer than ${MAX_RECORD_CHARS} characters (probably an unbalanced ")`
            : err.message;
        throw new ImportFileError(`import-leads: ${opts.file} line ${line}: ${what}; nothing was loaded`);
      }
      if (format === 'xlsx' && !(err instanceof UsageError) && !isDatabaseError(err)) {
        throw new ImportFileError(`import-leads: ${opts.file} is not a readable xlsx workbook: ${oneLine(err)}; nothing was loaded`);
      }
      throw err;
    }
    const mapping = state.mapping!;
    const copied = Date.now();
    opts.onProgress?.({ bytes: size, totalBytes: size, rows: state.read, phase: 'inserting' });

    // The key of every row (canon.lead_source_pk of its external_id: NULL when blank), the
    // first line of each key, and whether the key is already a lead key of the table:
    // narrow rows, hashed (no sort of the wide staging rows).
    await client.query(
      `CREATE TEMP TABLE import_keys ON COMMIT DROP AS
       SELECT k.lead_source_pk, k.line, k.rows_in_file, (e.lead_source_pk IS NOT NULL) AS in_table
       FROM (SELECT canon.lead_source_pk(s.external_id, NULL) AS lead_source_pk, min(s.line) AS line, count(*) AS rows_in_file
             FROM pg_temp.import_leads s GROUP BY 1) k
       LEFT JOIN (SELECT DISTINCT canon.lead_source_pk(l.external_id, l.id) AS lead_source_pk
                  FROM public.module_ct_cabinet_leads l) e ON e.lead_source_pk = k.lead_source_pk`,
    );
    // Rows the key refuses: an external_id of blanks only (it would be keyed by its id, and
    // so could never be found again by its cabinet id), or a key longer than the column.
    const keyMax = mapping.columns.find((c) => c.name === 'external_id')?.maxLength ?? null;
    const badKey = (key: string) => `(${key} IS NULL OR length(${key}) > ${keyMax ?? 'NULL'})`;
    const [bad] = (await client.query<{ rows: string }>(`SELECT coalesce(sum(rows_in_file), 0) AS rows FROM pg_temp.import_keys WHERE ${badKey('lead_source_pk')}`)).rows;
    const keyRejected = Number(bad!.rows);
    if (keyRejected > 0) {
      const r = await client.query<{ line: number; external_id: string; key_length: number | null }>(
        `SELECT s.line, s.external_id, length(k.lead_source_pk) AS key_length
         FROM pg_temp.import_leads s
         CROSS JOIN LATERAL (SELECT canon.lead_source_pk(s.external_id, NULL) AS lead_source_pk) k
         WHERE ${badKey('k.lead_source_pk')}
         ORDER BY s.line LIMIT ${MAX_REPORTED_REJECTS}`,
      );
      const reasons = r.rows.map((x) => ({
        line: x.line,
        reason: x.key_length === null
          ? `external_id ${quoted(x.external_id.length > 60 ? `${x.external_id.slice(0, 57)}...` : x.external_id)} is blank (spaces or other blank characters only)`
          : `external_id is ${x.key_length} characters long, the column holds at most ${keyMax}`,
      }));
      state.rejectedRows = [...state.rejectedRows, ...reasons].sort((x, y) => x.line - y.line).slice(0, MAX_REPORTED_REJECTS);
      state.rejected += keyRejected;
      await client.query(`DELETE FROM pg_temp.import_keys WHERE ${badKey('lead_source_pk')}`);
    }
    const keys = await client.query<{ distinct_keys: string; in_table: string }>(
      `SELECT count(*) AS distinct_keys, count(*) FILTER (WHERE in_table) AS in_table FROM pg_temp.import_keys`,
    );
    const staged = state.read - state.rejected;
    const distinctKeys = Number(keys.rows[0]!.distinct_keys);
    const dupInTable = Number(keys.rows[0]!.in_table);
    const dupInFile = staged - distinctKeys;
    const newRows = distinctKeys - dupInTable;
    const failStrict = opts.strict && state.rejected > 0;
    const countOnly = opts.dryRun || failStrict;

    const present = mapping.columns.map((c) => c.name);
    let inserted = 0;
    if (!countOnly && newRows > 0) {
      await client.query('ANALYZE pg_temp.import_keys');
      const res = await client.query(
        `INSERT INTO public.module_ct_cabinet_leads (${present.map(ident).join(', ')})
         SELECT ${present.map((c) => (c === 'created_at' ? 'coalesce(s.created_at, localtimestamp)' : c === 'external_id' ? 'k.lead_source_pk' : `s.${ident(c)}`)).join(', ')}
         FROM pg_temp.import_leads s
         JOIN pg_temp.import_keys k ON k.line = s.line
         WHERE NOT k.in_table`,
      );
      inserted = res.rowCount ?? 0;
    }
    const insertedAt = Date.now();

    const examples: DuplicateExample[] = [];
    if (dupInTable > 0) {
      const r = await client.query<{ line: number; external_id: string }>(
        `SELECT line, lead_source_pk AS external_id FROM pg_temp.import_keys WHERE in_table ORDER BY line LIMIT ${MAX_EXAMPLES}`,
      );
      examples.push(...r.rows.map((x) => ({ ...x, first_line: null })));
    }
    if (dupInFile > 0) {
      const r = await client.query<{ line: number; external_id: string; first_line: number }>(
        `SELECT s.line, k.lead_source_pk AS external_id, k.line AS first_line
         FROM pg_temp.import_leads s
         JOIN pg_temp.import_keys k ON k.lead_source_pk = canon.lead_source_pk(s.external_id, NULL) AND k.rows_in_file > 1
         WHERE s.line <> k.line
         ORDER BY s.line LIMIT ${MAX_EXAMPLES}`,
      );
      examples.push(...r.rows);
    }

    const summary: ImportSummary = {
      status: failStrict ? 'FAILED' : 'COMPLETED',
      file,
      bytes: size,
      sha256: tap.digest(),
      ...readAs(),
      dry_run: opts.dryRun,
      strict: opts.strict,
      read: state.read,
      inserted,
      new_rows: newRows,
      duplicates: dupInFile + dupInTable,
      duplicates_in_table: dupInTable,
      duplicates_in_file: dupInFile,
      rejected: state.rejected,
      blank_rows: state.blank,
      columns_loaded: present,
      ignored_columns: mapping.ignored,
      rejected_rows: state.rejectedRows,
      duplicate_examples: examples.sort((a, b) => a.line - b.line).slice(0, MAX_EXAMPLES),
      run_id: null,
      duration_ms: 0,
      durations_ms: { read_and_copy: copied - started, dedupe_and_insert: insertedAt - copied },
      ...(failStrict ? { error: `${state.rejected} row(s) rejected and --strict given: nothing was loaded` } : {}),
    };

    if (countOnly) {
      await client.query('ROLLBACK');
      summary.duration_ms = Date.now() - started;
      summary.run_id = await logRun(client, summary, log);
    } else {
      summary.duration_ms = Date.now() - started;
      summary.run_id = await logRun(client, summary, log);
      await client.query('COMMIT');
    }
    log.info(
      {
        run_id: summary.run_id, status: summary.status, dry_run: summary.dry_run, read: summary.read, inserted: summary.inserted,
        duplicates: summary.duplicates, rejected: summary.rejected, duration_ms: summary.duration_ms,
      },
      'import finished',
    );
    return summary;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    const message = err instanceof Error ? err.message : String(err);
    if (!(err instanceof UsageError)) {
      log.error({ file, err: message }, 'import failed: nothing was loaded');
      await logRun(client, {
        status: 'FAILED', file, bytes: size, sha256: '', ...readAs(), dry_run: opts.dryRun, strict: opts.strict, read: state.read,
        inserted: 0, new_rows: 0, duplicates: 0, duplicates_in_table: 0, duplicates_in_file: 0, rejected: state.rejected,
        blank_rows: state.blank, columns_loaded: [], ignored_columns: [], rejected_rows: [], duplicate_examples: [],
        run_id: null, duration_ms: Date.now() - started, durations_ms: {}, error: message,
      }, log).catch(() => null);
    }
    throw err;
  }
}

/** The import as a run of the product in canon.ingestion_runs (in the caller's transaction, if any). */
async function logRun(client: pg.ClientBase, s: ImportSummary, log: Logger): Promise<number | null> {
  let osUser = 'unknown';
  try {
    osUser = userInfo().username;
  } catch {
    // no passwd entry (containers): keep 'unknown'
  }
  try {
    const res = await client.query<{ id: string }>(
      `INSERT INTO canon.ingestion_runs (job_name, status, dry_run, source_tables, params, stats, error_message,
                                         started_at, completed_at, trigger, client_host, client_pid)
       VALUES ($1, $2, $3, '["module_ct_cabinet_leads"]'::jsonb, $4::jsonb, $5::jsonb, $6,
               clock_timestamp() - make_interval(secs => $7::double precision / 1000), clock_timestamp(), 'cli', $8, $9)
       RETURNING id`,
      [
        IMPORT_JOB_NAME,
        s.status,
        s.dry_run,
        JSON.stringify({
          file: s.file, bytes: s.bytes, sha256: s.sha256, format: s.format, encoding: s.encoding, delimiter: s.delimiter, sheet: s.sheet,
          strict: s.strict, dry_run: s.dry_run, os_user: osUser,
        }),
        JSON.stringify({
          read: s.read, inserted: s.inserted, new_rows: s.new_rows, duplicates: s.duplicates,
          duplicates_in_table: s.duplicates_in_table, duplicates_in_file: s.duplicates_in_file, rejected: s.rejected,
          blank_rows: s.blank_rows, columns_loaded: s.columns_loaded, ignored_columns: s.ignored_columns,
          rejected_rows_sample: s.rejected_rows.slice(0, 20), durations_ms: { ...s.durations_ms, total: s.duration_ms },
        }),
        s.error ?? null,
        s.duration_ms,
        hostname(),
        process.pid,
      ],
    );
    return Number(res.rows[0]!.id);
  } catch (err) {
    log.warn({ err: (err as Error).message }, 'import could not be logged in canon.ingestion_runs');
    throw err;
  }
}
