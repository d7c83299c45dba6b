// Streams an export from PostgreSQL to a file or stdout: one read-only REPEATABLE READ
// transaction (one snapshot from the first row to the last), its session in the business
// time zone (canon.settings.business_timezone: every time written is that zone's wall
// clock), a server-side cursor read 2,000 rows at a time, each batch written before the
// next is fetched. Memory stays flat whatever the number of rows.
import type { Writable } from 'node:stream';
import type pg from 'pg';
import { CsvWriter, type CsvOptions } from './csv.js';
import { exportQuery, type ExportDefinition, type ExportFilters } from './definitions.js';

export type ExportFormat = 'csv' | 'xlsx';

export interface ExportOptions {
  format: ExportFormat;
  csv: CsvOptions;
  filters: ExportFilters;
  /** xlsx: rows per sheet (tests use a small one) */
  maxRowsPerSheet?: number;
}

export interface ExportResult {
  rows: number;
  sheets: number | null;
  business_timezone: string;
}

const FETCH_ROWS = 2000;

/** Every value as the text PostgreSQL sends: the writers convert by column kind, never by the machine's zone. */
const asText = { getTypeParser: () => (v: string) => v } as unknown as pg.CustomTypesConfig;

export async function runExport(client: pg.ClientBase, def: ExportDefinition, out: Writable, opts: ExportOptions): Promise<ExportResult> {
  // (exceljs is loaded for an xlsx only: every other command starts without it)
  const writer = opts.format === 'xlsx'
    ? new (await import('./xlsx.js')).XlsxWriter(out, def.name, def.columns, opts.maxRowsPerSheet)
    : new CsvWriter(out, def.columns, opts.csv);
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    const tz = await client.query<{ tz: string }>(`SELECT set_config('TimeZone', canon.setting('business_timezone'), true) AS tz`);
    await client.query(`DECLARE export_rows NO SCROLL CURSOR FOR ${exportQuery(def, opts.filters)}`);
    await writer.header();
    let rows = 0;
    for (;;) {
      const batch = await client.query<string[]>({ text: `FETCH FORWARD ${FETCH_ROWS} FROM export_rows`, rowMode: 'array', types: asText });
      for (const r of batch.rows) await writer.row(r);
      rows += batch.rows.length;
      if (batch.rows.length < FETCH_ROWS) break;
    }
    await client.query('COMMIT');
    await writer.end();
    return { rows, sheets: 'sheetCount' in writer ? writer.sheetCount : null, business_timezone: tz.rows[0]!.tz };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}
