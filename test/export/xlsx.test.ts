// The streaming xlsx writer: typed cells, and rows past a sheet's capacity on further
// sheets under the same header (Excel holds 1,048,576 rows a sheet; a small capacity here).
import { mkdtempSync, rmSync } from 'node:fs';
import { createWriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { finished } from 'node:stream/promises';
import test from 'ava';
import ExcelJS from 'exceljs';
import type { ExportColumn } from '../../src/export/definitions.js';
import { XlsxWriter } from '../../src/export/xlsx.js';

const columns: ExportColumn[] = [
  { name: 'key', kind: 'text', width: 10 },
  { name: 'day', kind: 'date', width: 10 },
  { name: 'at', kind: 'datetime', width: 10 },
  { name: 'amount', kind: 'money', width: 10 },
  { name: 'n', kind: 'integer', width: 10 },
  { name: 'ok', kind: 'boolean', width: 10 },
];

test('rows past a sheet\'s capacity go on the next sheet, under the same header', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'xlsx-writer-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'rows.xlsx');
  const out = createWriteStream(file);
  const w = new XlsxWriter(out, 'limbo', columns, 3);
  await w.header();
  for (let i = 1; i <= 5; i++) await w.row([`=k${i}`, '2026-11-20', '2026-11-20 09:15:30', '25.50', String(i), i % 2 ? 'true' : 'false']);
  await w.end();
  await finished(out);
  t.is(w.sheetCount, 3);

  const wb = new ExcelJS.Workbook();
  await wb.xlsx.readFile(file);
  t.deepEqual(wb.worksheets.map((s) => [s.name, s.rowCount]), [['limbo', 3], ['limbo 2', 3], ['limbo 3', 2]]);
  for (const s of wb.worksheets) t.deepEqual((s.getRow(1).values as unknown[]).slice(1), columns.map((c) => c.name));
  const row = wb.worksheets[2]!.getRow(2);
  t.deepEqual((row.values as unknown[]).slice(1), ['=k5', new Date('2026-11-20T00:00:00Z'), new Date('2026-11-20T09:15:30Z'), 25.5, 5, true]);
  t.is(row.getCell(1).type, ExcelJS.ValueType.String);
  t.is(row.getCell(4).numFmt, '"S/" #,##0.00');
});
