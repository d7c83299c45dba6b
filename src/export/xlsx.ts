// xlsx for finance, streamed (exceljs WorkbookWriter: each row is written and forgotten,
// inline strings, so a million rows take bounded memory): amounts are numbers with the
// currency format "S/" #,##0.00 (they sum), dates and times are real dates (the wall clock
// in UTC fields, so the file shows the business time zone's time whatever the machine's
// zone), flags are booleans, text is a text cell (never a formula: "=HYPERLINK(...)" stays
// that text, exactly). The header row is frozen and filterable. A sheet holds at most
// 1,048,576 rows: the rows after that go on a next sheet ("claims 2", ...) under the same
// header.
import type { Writable } from 'node:stream';
import ExcelJS from 'exceljs';
import type { ExportColumn } from './definitions.js';

/** Rows of an Excel sheet, the header included. */
export const XLSX_MAX_ROWS = 1_048_576;

export const MONEY_FORMAT = '"S/" #,##0.00';
export const DATE_FORMAT = 'dd/mm/yyyy';
export const DATETIME_FORMAT = 'dd/mm/yyyy hh:mm:ss';

/** 'YYYY-MM-DD[ HH:MM:SS]' as a Date whose UTC fields are that wall clock. */
function wallClockDate(v: string): Date {
  const [y, mo, d, h, mi, s] = v.split(/[- :]/).map(Number);
  return new Date(Date.UTC(y!, mo! - 1, d!, h ?? 0, mi ?? 0, s ?? 0));
}

export function xlsxValue(value: string | null, kind: ExportColumn['kind']): ExcelJS.CellValue {
  if (value === null) return null;
  switch (kind) {
    case 'integer':
    case 'money':
      return Number(value);
    case 'date':
    case 'datetime':
      return wallClockDate(value);
    case 'boolean':
      return value === 'true';
    default:
      return value;
  }
}

function numFmt(kind: ExportColumn['kind']): string | undefined {
  return kind === 'money' ? MONEY_FORMAT : kind === 'date' ? DATE_FORMAT : kind === 'datetime' ? DATETIME_FORMAT : undefined;
}

export class XlsxWriter {
  private readonly workbook: ExcelJS.stream.xlsx.WorkbookWriter;
  private sheet: ExcelJS.Worksheet | undefined;
  private sheets = 0;
  private rowsInSheet = 0;

  constructor(
    out: Writable,
    private readonly name: string,
    private readonly columns: readonly ExportColumn[],
    private readonly maxRowsPerSheet = XLSX_MAX_ROWS,
  ) {
    this.workbook = new ExcelJS.stream.xlsx.WorkbookWriter({ stream: out, useStyles: true, useSharedStrings: false });
    this.workbook.creator = 'cabinet-leads';
  }

  /** sheets written so far */
  get sheetCount(): number {
    return this.sheets;
  }

  async header(): Promise<void> {
    this.newSheet();
  }

  async row(values: (string | null)[]): Promise<void> {
    if (this.rowsInSheet >= this.maxRowsPerSheet) {
      this.sheet!.commit();
      this.newSheet();
    }
    this.sheet!.addRow(this.columns.map((c, i) => xlsxValue(values[i] ?? null, c.kind))).commit();
    this.rowsInSheet++;
  }

  async end(): Promise<void> {
    await this.workbook.commit();
  }

  private newSheet(): void {
    this.sheets++;
    const ws = this.workbook.addWorksheet(this.sheets === 1 ? this.name : `${this.name} ${this.sheets}`, {
      views: [{ state: 'frozen', ySplit: 1 }],
    });
    ws.columns = this.columns.map((c) => {
      const fmt = numFmt(c.kind);
      return { header: c.name, key: c.name, width: c.width, ...(fmt ? { style: { numFmt: fmt } } : {}) };
    });
    ws.getRow(1).font = { bold: true };
    ws.autoFilter = { from: { row: 1, column: 1 }, to: { row: 1, column: this.columns.length } };
    ws.getRow(1).commit();
    this.sheet = ws;
    this.rowsInSheet = 1;
  }
}
