// The record side of `cabinet-leads import-leads` (CSV and xlsx alike): which columns a
// cabinet export may have (SPEC 3), how the header maps to them, and how one cell becomes
// a COPY value. Accepted: the predecessor's upload contract (timestamps
// `YYYY-MM-DD HH:MM[:SS[.ffffff]]`, the same with `T`, or a bare date; booleans
// true/false, 1/0, yes/no, t/f, y/n) plus what Excel writes in a Spanish locale (day-first
// `20/11/2026 9:15[:30]`, `VERDADERO`/`FALSO`, `SÍ`/`NO`), any case; blank cells are NULL. external_id goes
// as written: its key (what is blank at its ends, whether it is blank) is SQL's to decide
// (canon.lead_source_pk), in load-leads.ts. Header cells and values in messages are
// escaped (src/printable.ts): a file cannot print control characters on the terminal.
import { UsageError } from '../errors.js';
import { quoted, shown } from '../printable.js';

export type ColumnType = 'text' | 'timestamp' | 'date' | 'boolean';

export interface LeadColumn {
  name: string;
  type: ColumnType;
}

/** Columns of public.module_ct_cabinet_leads a file may carry, in staging order. */
export const LEAD_COLUMNS: readonly LeadColumn[] = [
  { name: 'external_id', type: 'text' },
  { name: 'lead_created_at', type: 'timestamp' },
  { name: 'first_name', type: 'text' },
  { name: 'middle_name', type: 'text' },
  { name: 'last_name', type: 'text' },
  { name: 'park_phone', type: 'text' },
  { name: 'asset_plate_number', type: 'text' },
  { name: 'asset_model', type: 'text' },
  { name: 'asset_color', type: 'text' },
  { name: 'park_name', type: 'text' },
  { name: 'status', type: 'text' },
  { name: 'activation_city', type: 'text' },
  { name: 'target_city', type: 'text' },
  { name: 'tariff', type: 'text' },
  { name: 'last_active_date', type: 'date' },
  { name: 'active_1', type: 'boolean' },
  { name: 'active_5', type: 'boolean' },
  { name: 'active_10', type: 'boolean' },
  { name: 'active_15', type: 'boolean' },
  { name: 'active_25', type: 'boolean' },
  { name: 'active_50', type: 'boolean' },
  { name: 'active_100', type: 'boolean' },
  { name: 'created_at', type: 'timestamp' },
];

export const REQUIRED_COLUMNS = ['external_id', 'lead_created_at'] as const;

/** A field longer than this (characters) rejects its row: no lead value is a megabyte. */
export const MAX_FIELD_CHARS = 1_000_000;

/** What the target table says about a column (from information_schema). */
export interface TargetColumn {
  maxLength: number | null;
}

export interface MappedColumn extends LeadColumn {
  /** position of the column in the file's records */
  index: number;
  maxLength: number | null;
}

export interface IgnoredColumn {
  column: string;
  reason: string;
}

export interface HeaderMapping {
  /** file columns that are loaded, in LEAD_COLUMNS order */
  columns: MappedColumn[];
  /** file columns reported and not loaded */
  ignored: IgnoredColumn[];
  /** number of fields of the header */
  width: number;
  /** position of external_id in the file's records */
  keyIndex: number;
}

function headerName(raw: string): string {
  return raw.replace(/^\uFEFF/, '').trim().toLowerCase();
}

/**
 * Maps a header record to the lead columns by name (case-insensitive, trimmed). A
 * missing required column or a column named twice is a UsageError naming it.
 */
export function mapHeader(header: string[], target: ReadonlyMap<string, TargetColumn>, delimiter: string): HeaderMapping {
  const names = header.map(headerName);
  const seen = new Map<string, number>();
  names.forEach((n, i) => {
    if (n === '') return;
    if (seen.has(n)) throw new UsageError(`import-leads: column ${quoted(n)} appears twice in the header (fields ${seen.get(n)! + 1} and ${i + 1})`);
    seen.set(n, i);
  });
  const missing = REQUIRED_COLUMNS.filter((c) => !seen.has(c));
  if (missing.length > 0) {
    // (no hint for a workbook, whose delimiter is '': its cells are the fields)
    const other = [',', ';', '\t'].find((d) => d !== delimiter && delimiter !== '' && header.length === 1 && header[0]!.includes(d));
    const hint = other ? ` (the header looks "${other === '\t' ? 'tab' : other}"-separated: try --delimiter "${other === '\t' ? 'tab' : other}")` : '';
    throw new UsageError(
      `import-leads: required column${missing.length > 1 ? 's' : ''} ${missing.join(', ')} missing from the header${hint}; found: ${names.filter(Boolean).map(shown).join(', ') || '(nothing)'}`,
    );
  }
  for (const c of REQUIRED_COLUMNS) {
    if (!target.has(c)) throw new UsageError(`import-leads: public.module_ct_cabinet_leads has no column ${c}: the source contract is violated (see canon.source_contract_violations())`);
  }
  const known = new Map(LEAD_COLUMNS.map((c) => [c.name, c]));
  const columns: MappedColumn[] = [];
  const ignored: IgnoredColumn[] = [];
  names.forEach((n, i) => {
    const col = known.get(n);
    if (n === '') ignored.push({ column: `(field ${i + 1}, no name)`, reason: 'column without a name' });
    else if (n === 'id') ignored.push({ column: n, reason: 'assigned by the database' });
    else if (!col) ignored.push({ column: shown(header[i]!.trim()), reason: 'unknown column' });
    else if (!target.has(n)) ignored.push({ column: n, reason: 'not a column of public.module_ct_cabinet_leads' });
    else columns.push({ ...col, index: i, maxLength: target.get(n)!.maxLength });
  });
  columns.sort((a, b) => LEAD_COLUMNS.findIndex((c) => c.name === a.name) - LEAD_COLUMNS.findIndex((c) => c.name === b.name));
  return { columns, ignored, width: header.length, keyIndex: seen.get('external_id')! };
}

const TIMESTAMP_RE = /^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?)?$/;
/**
 * Day-first, as Excel writes a date in a Spanish (or any day-first) locale: D/M/YYYY, then
 * optionally H:MM[:SS] and a 12-hour suffix (a. m., p.m., AM ...). Never month-first.
 */
const DAY_FIRST_RE = /^(\d{1,2})\/(\d{1,2})\/(\d{4})(?: +(\d{1,2}):(\d{2})(?::(\d{2}))?(?: *([ap])\.? ?m\.?)?)?$/i;

function daysInMonth(year: number, month: number): number {
  if (month === 2) return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28;
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
}

/** String.prototype.trim, without a copy in the usual case (printable ASCII at both ends). */
function trimFast(v: string): string {
  if (v.length === 0) return v;
  const a = v.charCodeAt(0);
  const b = v.charCodeAt(v.length - 1);
  return a > 32 && a < 127 && b > 32 && b < 127 ? v : v.trim();
}

const pad2 = (v: string | number) => String(v).padStart(2, '0');

/** The parts of a timestamp checked and written for COPY, or an error text. */
function checked(y: string, mo: string, d: string, h: string | undefined, mi: string | undefined, s: string | undefined, f: string | undefined, dateOnly: boolean): { ok: string } | { error: string } {
  const year = Number(y);
  const month = Number(mo);
  const day = Number(d);
  if (month < 1 || month > 12) return { error: `is not a date (there is no month ${mo})` };
  if (year < 1 || day < 1 || day > daysInMonth(year, month)) {
    return { error: `is not a date (${y}-${pad2(mo)} has no day ${d})` };
  }
  if (h !== undefined && (Number(h) > 23 || Number(mi) > 59 || (s !== undefined && Number(s) > 59))) {
    return { error: 'is not a time of day' };
  }
  const date = `${y}-${pad2(mo)}-${pad2(d)}`;
  if (dateOnly) return { ok: date };
  return { ok: `${date} ${h === undefined ? '00' : pad2(h)}:${mi ?? '00'}:${s ?? '00'}${f ? `.${f}` : ''}` };
}

/**
 * 'YYYY-MM-DD HH:MM:SS[.ffffff]' for COPY, or an error text. When dateOnly, 'YYYY-MM-DD'
 * (a time of day, if any, is checked and dropped, as PostgreSQL's cast to date does).
 */
export function parseTimestamp(value: string, dateOnly: boolean): { ok: string } | { error: string } {
  const m = TIMESTAMP_RE.exec(value);
  if (m) {
    const [, y, mo, d, h, mi, s, f] = m;
    return checked(y!, mo!, d!, h, mi, s, f, dateOnly);
  }
  const dm = DAY_FIRST_RE.exec(value);
  if (dm) {
    const [, d, mo, y, h, mi, s, half] = dm;
    let hour = h;
    if (half !== undefined) {
      // 12-hour clock: 12 a. m. is midnight, 12 p. m. noon
      const n = Number(h);
      if (n < 1 || n > 12) return { error: 'is not a time of day' };
      hour = String((n % 12) + (half.toLowerCase() === 'p' ? 12 : 0));
    }
    return checked(y!, mo!, d!, hour, mi, s, undefined, dateOnly);
  }
  const zone = /^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?\s*(Z|[+-]\d{2}(:?\d{2})?)$/i.test(value);
  if (zone) return { error: 'has a time zone (lead times are local times, without zone)' };
  return {
    error: dateOnly
      ? 'is not a date (expected YYYY-MM-DD or DD/MM/YYYY)'
      : 'is not a timestamp (expected YYYY-MM-DD HH:MM:SS[.ffffff], the same with T, YYYY-MM-DD, or day-first DD/MM/YYYY [H:MM[:SS]])',
  };
}

// Spanish: what Excel shows for a boolean in a Spanish locale (VERDADERO/FALSO) and SÍ/NO.
const TRUE = new Set(['true', 't', '1', 'yes', 'y', 'verdadero', 'si', 'sí']);
const FALSE = new Set(['false', 'f', '0', 'no', 'n', 'falso']);
export const BOOLEAN_FORMS = 'true/false, 1/0, yes/no, t/f, y/n, verdadero/falso or sí/no';

export function parseBoolean(value: string): 't' | 'f' | undefined {
  const v = value.toLowerCase();
  if (TRUE.has(v)) return 't';
  if (FALSE.has(v)) return 'f';
  return undefined;
}

/** Characters that need a second look in a text value: COPY escapes, and NUL (never storable). */
const SPECIAL = /[\\\t\n\r\u0000]/;

/** Escapes a value for COPY ... FROM STDIN (text format). */
export function copyEscape(value: string): string {
  return /[\\\t\n\r]/.test(value)
    ? value.replace(/[\\\t\n\r]/g, (c) => (c === '\\' ? '\\\\' : c === '\t' ? '\\t' : c === '\n' ? '\\n' : '\\r'))
    : value;
}

function show(value: string): string {
  return quoted(value.length > 60 ? `${value.slice(0, 57)}...` : value);
}

function charLength(value: string): number {
  let n = 0;
  for (const _ of value) n++;
  return n;
}

export type RowResult = { copyLine: string } | { blank: true } | { errors: string[] };

/**
 * One data record of the file to a COPY line `line \t v1 \t v2 ...` with every
 * LEAD_COLUMNS value (\N where absent or blank), or the reasons it is rejected.
 * `slots` maps each LEAD_COLUMNS position to its mapped column (or undefined).
 */
export function convertRecord(record: string[], line: number, mapping: HeaderMapping, slots: (MappedColumn | undefined)[]): RowResult {
  const key = record[mapping.keyIndex];
  if ((key === undefined || key.trim() === '') && record.every((v) => v.trim() === '')) return { blank: true };
  const errors: string[] = [];
  if (record.length < mapping.width) {
    errors.push(`has ${record.length} field${record.length === 1 ? '' : 's'}, the header has ${mapping.width}`);
    return { errors };
  }
  if (record.length > mapping.width && record.slice(mapping.width).some((v) => v.trim() !== '')) {
    errors.push(`has ${record.length} fields, the header has ${mapping.width}`);
    return { errors };
  }
  for (let i = 0; i < record.length; i++) {
    const v = record[i]!;
    if (v.length > MAX_FIELD_CHARS && charLength(v) > MAX_FIELD_CHARS) {
      const name = mapping.columns.find((c) => c.index === i)?.name ?? `field ${i + 1}`;
      errors.push(`${name} is ${charLength(v)} characters long, a field holds at most ${MAX_FIELD_CHARS}`);
    }
  }
  if (errors.length > 0) return { errors };
  let out = String(line);
  for (const col of slots) {
    if (col === undefined) {
      out += '\t\\N';
      continue;
    }
    const raw = record[col.index]!;
    if (col.name === 'external_id') {
      // As written: the blanks at its ends, and whether it is blank, are the key's to decide.
      if (raw === '') errors.push('external_id is empty');
      else if (raw.includes('\u0000')) errors.push('external_id contains a NUL character');
      out += raw === '' ? '\t\\N' : `\t${copyEscape(raw)}`;
      continue;
    }
    const trimmed = trimFast(raw);
    if (trimmed === '') {
      if (col.name === 'lead_created_at') errors.push(`${col.name} is empty`);
      out += '\t\\N';
      continue;
    }
    let value: string;
    if (col.type === 'timestamp' || col.type === 'date') {
      const r = parseTimestamp(trimmed, col.type === 'date');
      if ('error' in r) {
        errors.push(`${col.name} ${show(trimmed)} ${r.error}`);
        continue;
      }
      value = r.ok;
    } else if (col.type === 'boolean') {
      const b = parseBoolean(trimmed);
      if (b === undefined) {
        errors.push(`${col.name} ${show(trimmed)} is not a boolean (expected ${BOOLEAN_FORMS})`);
        continue;
      }
      value = b;
    } else {
      value = raw;
      if (col.maxLength !== null && value.length > col.maxLength && charLength(value) > col.maxLength) {
        errors.push(`${col.name} is ${charLength(value)} characters long, the column holds at most ${col.maxLength}`);
        continue;
      }
      if (SPECIAL.test(value)) {
        if (value.includes('\u0000')) {
          errors.push(`${col.name} contains a NUL character`);
          continue;
        }
        value = copyEscape(value);
      }
    }
    out += `\t${value}`;
  }
  return errors.length > 0 ? { errors } : { copyLine: `${out}\n` };
}

/** Number of line breaks in a record's fields (\r\n counts once). */
export function lineBreaks(record: string[]): number {
  let n = 0;
  for (const v of record) {
    if (v.indexOf('\n') < 0 && v.indexOf('\r') < 0) continue;
    n += v.match(/\r\n|\r|\n/g)?.length ?? 0;
  }
  return n;
}
