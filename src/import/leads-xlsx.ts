// The xlsx side of `cabinet-leads import-leads`: the rows of one worksheet (the first tab,
// or --sheet NAME) read with exceljs's streaming reader (rows are not kept: a sheet of a
// million rows reads in bounded memory), each with its sheet row number, and each cell
// turned into the text the CSV path checks (src/import/leads-csv.ts), so both formats
// accept and reject the same values.
// Dates: a cell formatted as a date arrives as a Date holding the wall-clock value in UTC
// fields (Excel dates have no zone); a plain number in a date column is an Excel serial
// number (1900 or 1904 date system, as the workbook says). Either is written as the same
// wall-clock 'YYYY-MM-DD HH:MM:SS' that lead_created_at (timestamp without time zone, the
// business time zone's local time) stores: never shifted by the machine's time zone.
import { Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
// (exceljs and unzipper are loaded when a workbook is read: every other command starts without them)
import type ExcelJS from 'exceljs';
import { UsageError } from '../errors.js';
import { quoted } from '../printable.js';
import type { ColumnType } from './leads-csv.js';

/** A row of the sheet: its number and its cells, 0-based (holes are null). */
export interface SheetRow {
  line: number;
  cells: unknown[];
}

export interface SheetInfo {
  /** the sheet read (known once it is found) */
  name: string | undefined;
  /** the workbook's sheets, in tab order */
  sheets: string[];
  date1904: boolean;
}

/** A sheet of the workbook as workbook.xml lists it, in tab order. */
interface WorkbookSheet {
  name: string;
  sheetId: number;
  rId: string;
  state: string;
}

/** The parts of exceljs's WorkbookReader that are set from workbook.xml. */
interface ReaderWorkbookModel {
  model?: { sheets?: { name: string; id: number; rId: string; state: string }[] };
  /** the workbookPr of workbook.xml (an xform: its model holds the values) */
  properties?: { model?: { date1904?: boolean } };
}

type NamedWorksheetReader = ExcelJS.stream.xlsx.WorksheetReader & { name: string };

function xmlText(v: string): string {
  return v.replace(/&(lt|gt|quot|apos|amp|#x[0-9a-f]+|#\d+);/gi, (_, e: string) =>
    e === 'lt' ? '<' : e === 'gt' ? '>' : e === 'quot' ? '"' : e === 'apos' ? "'" : e === 'amp' ? '&'
      : String.fromCodePoint(e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : Number(e.slice(1))));
}

function attribute(tag: string, name: string): string | undefined {
  const m = new RegExp(`\\s${name}\\s*=\\s*(?:"([^"]*)"|'([^']*)')`).exec(tag);
  return m ? xmlText(m[1] ?? m[2] ?? '') : undefined;
}

/**
 * The workbook's sheets in tab order and its date system, read first from workbook.xml
 * through the zip's central directory. exceljs learns them only when it meets
 * workbook.xml in the zip, and writers that put it after the sheets (exceljs's own,
 * openpyxl) would otherwise leave the sheet names unknown, or crash its reader.
 */
export async function workbookSheets(file: string): Promise<{ sheets: WorkbookSheet[]; date1904: boolean }> {
  const { default: unzipper } = await import('unzipper');
  const dir = await unzipper.Open.file(file);
  const part = dir.files.find((f) => f.path.replace(/^\//, '') === 'xl/workbook.xml');
  if (!part) return { sheets: [], date1904: false };
  const xml = (await part.buffer()).toString('utf8');
  const sheets: WorkbookSheet[] = [];
  for (const m of xml.matchAll(/<(?:\w+:)?sheet\s[^>]*>/g)) {
    const tag = m[0];
    const name = attribute(tag, 'name');
    const rId = attribute(tag, '(?:\\w+:)?id');
    if (name === undefined || rId === undefined) continue;
    sheets.push({ name, sheetId: Number(attribute(tag, 'sheetId') ?? sheets.length + 1), rId, state: attribute(tag, 'state') ?? 'visible' });
  }
  const pr = /<(?:\w+:)?workbookPr\s[^>]*>/.exec(xml)?.[0];
  const d = pr ? attribute(pr, 'date1904') : undefined;
  return { sheets, date1904: d === '1' || d === 'true' };
}

/**
 * The first part of the workbook whose compressed data does not inflate, with why, or
 * undefined. exceljs's streaming reader waits forever on such a part (unzipper reports the
 * inflate error on the zip stream, not on the part it is reading), so the import checks
 * every part first: one more inflate of the file, far cheaper than the parse.
 */
export async function unreadableWorkbookPart(file: string): Promise<{ part: string; reason: string } | undefined> {
  const { default: unzipper } = await import('unzipper');
  const dir = await unzipper.Open.file(file);
  for (const f of dir.files) {
    if (f.type !== 'File') continue;
    try {
      await pipeline(f.stream(), new Writable({ write: (_chunk, _enc, done) => done() }));
    } catch (err) {
      return { part: f.path, reason: (err as Error).message };
    }
  }
  return undefined;
}

/**
 * The rows of the sheet named `sheet` (default: the first tab). Reads the whole file (the
 * caller hashes every byte), the other sheets are skipped unread.
 */
export async function* sheetRows(input: Readable, file: string, sheet: string | undefined, info: SheetInfo): AsyncGenerator<SheetRow> {
  const book = await workbookSheets(file);
  info.sheets = book.sheets.map((s) => s.name);
  info.date1904 = book.date1904;
  const { default: excel } = await import('exceljs');
  const reader = new excel.stream.xlsx.WorkbookReader(input, {
    worksheets: 'emit',
    sharedStrings: 'cache',
    styles: 'cache',
    hyperlinks: 'ignore',
    entries: 'ignore',
  });
  // what exceljs would set when it meets workbook.xml, known before any sheet
  const known = reader as unknown as ReaderWorkbookModel;
  known.model = { sheets: book.sheets.map((s) => ({ name: s.name, id: s.sheetId, rId: s.rId, state: s.state })) };
  known.properties = { model: { date1904: book.date1904 } };
  const wanted = sheet ?? info.sheets[0];
  let found = false;
  for await (const ws of reader as AsyncIterable<NamedWorksheetReader>) {
    if (found || ws.name !== wanted) continue;
    found = true;
    info.name = ws.name;
    for await (const row of ws) {
      const values = row.values as unknown[];
      // row.values is 1-based and sparse
      const cells: unknown[] = [];
      for (let i = 1; i < values.length; i++) cells.push(values[i] ?? null);
      yield { line: row.number, cells };
    }
  }
  if (!found) {
    throw new UsageError(
      sheet === undefined || info.sheets.length === 0
        ? `import-leads: ${file} has no worksheet`
        : `import-leads: ${file} has no sheet ${quoted(sheet)}; its sheets: ${info.sheets.map((n) => quoted(n)).join(', ')}`,
    );
  }
}

const MS_PER_DAY = 86_400_000;
/** Excel's largest date, 9999-12-31 (serial of the 1900 system). */
const MAX_SERIAL = 2_958_465;

/** The wall-clock fields of a Date read in UTC, as 'YYYY-MM-DD HH:MM:SS[.mmm]'. */
export function wallClock(d: Date): string {
  const iso = d.toISOString(); // 'YYYY-MM-DDTHH:MM:SS.mmmZ' (years 0000-9999)
  const ms = iso.slice(20, 23);
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)}${ms === '000' ? '' : `.${ms}`}`;
}

/**
 * An Excel serial number as a wall-clock timestamp, or undefined when it is no date. 1900
 * system: serial 1 is 1900-01-01 and 60 is the 1900-02-29 Excel invented (no date), so
 * from 61 on day 0 is 1899-12-30. 1904 system: serial 0 is 1904-01-01.
 */
export function serialToWallClock(serial: number, date1904: boolean): string | undefined {
  if (!Number.isFinite(serial)) return undefined;
  let base: number;
  if (date1904) {
    if (serial < 0 || serial > MAX_SERIAL - 1462) return undefined;
    base = Date.UTC(1904, 0, 1);
  } else {
    if (serial < 1 || serial >= MAX_SERIAL + 1 || (serial >= 60 && serial < 61)) return undefined;
    base = serial < 60 ? Date.UTC(1899, 11, 31) : Date.UTC(1899, 11, 30);
  }
  return wallClock(new Date(base + Math.round(serial * MS_PER_DAY)));
}

function numberText(n: number): string {
  return Number.isInteger(n) && Math.abs(n) < 1e21 ? n.toFixed(0) : String(n);
}

/** A cell as text for the column's checks, or the reason the cell cannot be read. */
export function cellText(value: unknown, type: ColumnType | undefined, date1904: boolean): { text: string } | { error: string } {
  if (value === null || value === undefined) return { text: '' };
  if (typeof value === 'string') return { text: value };
  if (typeof value === 'boolean') return { text: value ? 'true' : 'false' };
  if (typeof value === 'number') {
    if (type === 'timestamp' || type === 'date') {
      const t = serialToWallClock(value, date1904);
      return { text: t ?? numberText(value) };
    }
    return { text: numberText(value) };
  }
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) return { error: 'is a date Excel cannot show' };
    const t = wallClock(value);
    // a date column takes the day: a time of day, if any, is dropped (as for a CSV value)
    return { text: type === 'text' || type === undefined ? t.replace(/ 00:00:00$/, '') : t };
  }
  if (typeof value === 'object') {
    const v = value as Record<string, unknown>;
    if ('error' in v) return { error: `is the Excel error ${String(v.error)}` };
    if (Array.isArray(v.richText)) return { text: (v.richText as { text?: string }[]).map((r) => r.text ?? '').join('') };
    if ('formula' in v || 'sharedFormula' in v) {
      if (v.result === undefined) return { error: 'is a formula without a computed value (open and save the file in Excel)' };
      if (typeof v.result === 'number' && Number.isNaN(v.result)) return { error: 'is a formula whose result is an Excel error' };
      return cellText(v.result, type, date1904);
    }
    if (typeof v.text === 'string') return { text: v.text }; // a hyperlink cell
  }
  return { error: 'is a cell the import cannot read' };
}
