// CSV for finance, made to open right in Excel with a double click: UTF-8 with a BOM (else
// Excel reads it as Windows-1252 and "Muñoz" shows as "MuÃ±oz"), CRLF line ends, ";" as
// the default delimiter (Excel in a Spanish locale splits on ";", its list separator,
// because "," is the decimal separator there), amounts with the decimal separator that goes
// with the delimiter ("25,00" with ";", "25.00" with ","), dates in ISO form (YYYY-MM-DD,
// which Excel reads as a date in every locale).
// Formulas: a text value that starts with = + - @ TAB or CR is written with a leading ' so
// that no spreadsheet runs it (OWASP, CSV injection), and every text value is quoted.
import type { Writable } from 'node:stream';
import type { ColumnKind, ExportColumn } from './definitions.js';

export interface CsvOptions {
  delimiter: string;
  decimal: string;
}

export const BOM = '\uFEFF';

/** What a spreadsheet reads as the start of a formula (OWASP: = + - @ TAB CR). */
const FORMULA_START = /^[=+\-@\t\r]/;

/** A text value a spreadsheet will show and never evaluate. */
export function guardFormula(value: string): string {
  return FORMULA_START.test(value) ? `'${value}` : value;
}

function quote(value: string): string {
  return `"${value.replace(/"/g, '""')}"`;
}

/** One field of a row: `value` is the view's text (null for NULL). */
export function csvField(value: string | null, kind: ColumnKind, opts: CsvOptions): string {
  if (value === null) return '';
  switch (kind) {
    case 'text':
      return quote(guardFormula(value));
    case 'money': {
      const v = opts.decimal === '.' ? value : value.replace('.', opts.decimal);
      return v.includes(opts.delimiter) ? quote(v) : v;
    }
    default:
      // integers, ISO dates and times, true/false: never a delimiter, a quote or a formula
      return value;
  }
}

/** Writes rows to a stream in chunks of about 64 kB, waiting when the stream is full. */
export class CsvWriter {
  private chunk = '';

  constructor(
    private readonly out: Writable,
    private readonly columns: readonly ExportColumn[],
    private readonly opts: CsvOptions,
  ) {}

  async header(): Promise<void> {
    this.chunk += `${BOM}${this.columns.map((c) => c.name).join(this.opts.delimiter)}\r\n`;
    await this.flushIfFull();
  }

  async row(values: (string | null)[]): Promise<void> {
    let line = '';
    for (let i = 0; i < this.columns.length; i++) {
      if (i > 0) line += this.opts.delimiter;
      line += csvField(values[i] ?? null, this.columns[i]!.kind, this.opts);
    }
    this.chunk += `${line}\r\n`;
    await this.flushIfFull();
  }

  async end(): Promise<void> {
    await this.write();
  }

  private async flushIfFull(): Promise<void> {
    if (this.chunk.length >= 65536) await this.write();
  }

  private async write(): Promise<void> {
    if (this.chunk === '') return;
    const ok = this.out.write(this.chunk, 'utf8');
    this.chunk = '';
    if (!ok) await new Promise<void>((resolve, reject) => {
      const done = (err?: Error) => {
        this.out.off('drain', done);
        this.out.off('error', done);
        if (err) reject(err);
        else resolve();
      };
      this.out.on('drain', done);
      this.out.on('error', done);
    });
  }
}
