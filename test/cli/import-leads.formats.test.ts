// cabinet-leads import-leads on the files ops staff really have: a cabinet export opened
// in Excel on a Spanish-locale Windows and saved (Windows-1252, ";", day-first dates,
// VERDADERO/FALSO), UTF-8 without BOM, Excel's "Unicode text" (UTF-16, tab), and .xlsx
// workbooks written by a real xlsx writer. A real process each time, its report and the
// rows it leaves.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { isUtf8 } from 'node:buffer';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import ExcelJS from 'exceljs';
import JSZip from 'jszip';
import { PROJECT_ROOT } from '../../src/config.js';
import { errorLine, runCli } from '../helpers/cli.js';
import { freshDb, type TestDb } from '../helpers/db.js';

const fixture = (name: string) => path.join(PROJECT_ROOT, 'test', 'fixtures', 'import', name);

function tempDir(t: ExecutionContext): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'import-formats-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function tempFile(t: ExecutionContext, name: string, content: Buffer | string): string {
  const file = path.join(tempDir(t), name);
  writeFileSync(file, content);
  return file;
}

function importLeads(db: TestDb, args: string[], env: NodeJS.ProcessEnv = {}) {
  return runCli(['import-leads', ...args], { DATABASE_URL: db.url, LOG_LEVEL: 'warn', ...env });
}

interface Row {
  external_id: string;
  lead_created_at: string;
  first_name: string | null;
  last_name: string | null;
  park_phone: string | null;
  active_1: boolean | null;
  active_5: boolean | null;
  last_active_date: string | null;
}

async function rows(db: TestDb): Promise<Row[]> {
  return db.query<Row>(
    `SELECT external_id, lead_created_at::text, first_name, last_name, park_phone, active_1, active_5, last_active_date::text
     FROM public.module_ct_cabinet_leads ORDER BY external_id`,
  );
}

const rejects = (stdout: string, unit = 'line') => stdout.split('\n').filter((l) => l.startsWith(`${unit} `));

test('a CSV saved by Excel on a Spanish Windows (Windows-1252, ";", day-first dates, VERDADERO/FALSO) loads without a flag', async (t) => {
  const raw = readFileSync(fixture('excel_es_windows1252.csv'));
  t.false(isUtf8(raw), 'the fixture is not UTF-8');
  t.true(raw.includes(Buffer.from([0x4d, 0x75, 0xf1, 0x6f, 0x7a])), 'the fixture holds "Muñoz" in Windows-1252 (ñ = 0xF1)');
  t.true(raw.includes(Buffer.from('\r\n')) && raw[0] === 0x65, 'CRLF line ends, no BOM');
  const db = await freshDb(t, 'import_formats');

  const r = await importLeads(db, [fixture('excel_es_windows1252.csv')]);
  t.is(r.code, 1, r.stderr);
  t.is(r.stdout.split('\n')[0], `${fixture('excel_es_windows1252.csv')}: CSV, Windows-1252 (detected), delimiter ";"`);
  t.deepEqual(rejects(r.stdout), [
    'line 6: lead_created_at "31/02/2026 10:00" is not a date (2026-02 has no day 31)',
    'line 7: lead_created_at "11/20/2026 9:15" is not a date (there is no month 20)',
    'line 8: active_5 "QUIZÁS" is not a boolean (expected true/false, 1/0, yes/no, t/f, y/n, verdadero/falso or sí/no)',
  ]);
  t.regex(r.stdout, /excel_es_windows1252\.csv: read 7, inserted 4, duplicates 0, rejected 3, 2 blank rows skipped/);
  t.deepEqual(await rows(db), [
    { external_id: 'es-001', lead_created_at: '2026-11-20 09:15:00', first_name: 'José', last_name: 'Muñoz Peña', park_phone: '977456321', active_1: true, active_5: false, last_active_date: '2026-11-25' },
    { external_id: 'es-002', lead_created_at: '2026-11-21 14:05:30', first_name: 'María Ángeles', last_name: 'Ñahui', park_phone: null, active_1: false, active_5: false, last_active_date: null },
    { external_id: 'es-003', lead_created_at: '2026-12-02 00:00:00', first_name: 'Raúl', last_name: 'Quispe; "El Rápido"', park_phone: '+51 977 000 111', active_1: true, active_5: false, last_active_date: '2026-12-02' },
    { external_id: 'es-004', lead_created_at: '2026-12-03 19:45:00', first_name: 'Iñigo', last_name: 'Ibáñez', park_phone: null, active_1: true, active_5: false, last_active_date: null },
  ]);
  const [run] = await db.query<{ params: Record<string, unknown> }>(`SELECT params FROM canon.ingestion_runs WHERE job_name = 'import_cabinet_leads'`);
  t.like(run!.params, { format: 'csv', encoding: 'windows-1252', delimiter: ';', sheet: null });
});

test('UTF-8 without BOM, tab-separated: detected; the summary says how the file was read', async (t) => {
  const db = await freshDb(t, 'import_formats');
  const file = tempFile(t, 'utf8_tab.csv', 'external_id\tlead_created_at\tfirst_name\nu-001\t20/11/2026 9:15:07\tÑandú\nu-002\t2026-11-21\tZoë "Zo" Pérez\n');
  const r = await importLeads(db, [file, '--json']);
  t.is(r.code, 0, r.stderr);
  t.like(JSON.parse(r.stdout), { format: 'csv', encoding: 'utf-8', encoding_source: 'content', delimiter: '\t', sheet: null, inserted: 2 });
  t.deepEqual((await rows(db)).map((x) => [x.external_id, x.lead_created_at, x.first_name]), [
    ['u-001', '2026-11-20 09:15:07', 'Ñandú'],
    ['u-002', '2026-11-21 00:00:00', 'Zoë "Zo" Pérez'],
  ]);
  const text = await importLeads(await freshDb(t, 'import_formats'), [file]);
  t.is(text.stdout.split('\n')[0], `${file}: CSV, UTF-8 (detected), delimiter tab`);
});

test('Excel\'s "Unicode text" (UTF-16LE with BOM, tab-separated) loads', async (t) => {
  const db = await freshDb(t, 'import_formats');
  const body = 'external_id\tlead_created_at\tfirst_name\tlast_name\r\nw-001\t20/11/2026 9:15\tÁngel\tNúñez\r\nw-002\t21/11/2026 10:00\t李\tДмитрий\r\n';
  const file = tempFile(t, 'unicode.txt', Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(body, 'utf16le')]));
  const r = await importLeads(db, [file]);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout.split('\n')[0], `${file}: CSV, UTF-16LE (BOM), delimiter tab`);
  t.deepEqual((await rows(db)).map((x) => [x.external_id, x.lead_created_at, x.first_name, x.last_name]), [
    ['w-001', '2026-11-20 09:15:00', 'Ángel', 'Núñez'],
    ['w-002', '2026-11-21 10:00:00', '李', 'Дмитрий'],
  ]);
});

test('a plain "CSV (comma delimited)" from Excel (Windows-1252, ",") loads with its accents', async (t) => {
  const db = await freshDb(t, 'import_formats');
  const r = await importLeads(db, [fixture('latin1.csv')]);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout.split('\n')[0], `${fixture('latin1.csv')}: CSV, Windows-1252 (detected), delimiter ","`);
  t.deepEqual((await rows(db)).map((x) => x.first_name), ['Jose', 'María']);
});

test('a file that turns from UTF-8 to Windows-1252 is refused naming both lines; --encoding windows-1252 reads it as told', async (t) => {
  const db = await freshDb(t, 'import_formats');
  const file = tempFile(t, 'mixed.csv', Buffer.concat([
    Buffer.from('external_id,lead_created_at,first_name\nm-001,2026-11-20,José\nm-002,2026-11-20,Luis\n', 'utf8'),
    Buffer.from('m-003,2026-11-20,Peña\n', 'latin1'),
  ]));
  const r = await importLeads(db, [file]);
  t.is(r.code, 2, r.stderr);
  t.is(
    errorLine(r),
    `cabinet-leads: error: import-leads: ${file} mixes encodings: read as UTF-8 from its first non-ASCII character (line 2), it is not UTF-8 further on: invalid byte at offset 103, line 4; save it again as "CSV UTF-8", or read it all as Windows-1252 with --encoding windows-1252; nothing was loaded`,
  );
  t.deepEqual(await rows(db), []);

  const forced = await importLeads(db, [file, '--encoding', 'windows-1252']);
  t.is(forced.code, 0, forced.stderr);
  t.is(forced.stdout.split('\n')[0], `${file}: CSV, Windows-1252 (--encoding), delimiter ","`);
  t.deepEqual((await rows(db)).map((x) => x.first_name), ['JosÃ©', 'Luis', 'Peña']);
});

test('a byte that is no Windows-1252 character (0x81) is refused with its offset and line', async (t) => {
  const db = await freshDb(t, 'import_formats');
  const file = tempFile(t, 'oem.csv', Buffer.from('external_id,lead_created_at,first_name\nx-1,2026-11-20,Pe\xf1a\nx-2,2026-11-20,Ca\x81a\n', 'latin1'));
  const r = await importLeads(db, [file]);
  t.is(r.code, 2, r.stderr);
  t.regex(errorLine(r), /oem\.csv is not Windows-1252: byte 0x81 at offset 76, line 3, is no character of it \(save it as "CSV UTF-8"\); nothing was loaded$/);
});

test('--delimiter and --encoding force what detection would guess; bad values are usage errors', async (t) => {
  const db = await freshDb(t, 'import_formats');
  // a header that is one column under ',' and ';' alike: forced, the ; inside the name splits
  const file = tempFile(t, 'forced.csv', 'external_id|lead_created_at|first_name\nf-1|2026-11-20|Ana; María\n');
  const r = await importLeads(db, [file, '--delimiter', '|']);
  t.is(r.code, 0, r.stderr);
  t.deepEqual((await rows(db)).map((x) => x.first_name), ['Ana; María']);
  for (const [args, pattern] of [
    [['--encoding', 'ebcdic'], /invalid --encoding "ebcdic": expected auto, utf-8, windows-1252/],
    [['--delimiter', ';;'], /invalid --delimiter ";;": expected one character other than a quote or a line break, or "tab"/],
    [['--sheet', 'Hoja1'], /is a CSV file: --sheet applies to xlsx workbooks only/],
  ] as const) {
    const bad = await importLeads(db, [file, ...args]);
    t.is(bad.code, 2, bad.stderr);
    t.regex(errorLine(bad), pattern);
  }
});

/** A workbook as ops staff save one: a header row, date cells, text, numbers, booleans. */
async function leadsWorkbook(file: string, opts: { date1904?: boolean } = {}): Promise<void> {
  const wb = new ExcelJS.Workbook();
  if (opts.date1904) wb.properties.date1904 = true;
  const ws = wb.addWorksheet('Leads');
  ws.addRow(['external_id', 'lead_created_at', 'first_name', 'last_name', 'park_phone', 'active_1', 'active_5', 'last_active_date']);
  // row 2: real date cells (Excel stores a serial number with a date format)
  const r2 = ws.addRow(['x-001', new Date(Date.UTC(2026, 10, 20, 9, 15)), 'José', 'Muñoz', 977456321, true, false, new Date(Date.UTC(2026, 10, 25))]);
  r2.getCell(2).numFmt = 'dd/mm/yyyy h:mm';
  r2.getCell(8).numFmt = 'dd/mm/yyyy';
  // row 3: a bare serial number (the date cell lost its format), rich text, Spanish booleans as text
  ws.addRow(['x-002', 46346.75, 'Ana', { richText: [{ text: 'Pé', font: { bold: true } }, { text: 'rez' }] }, null, 'VERDADERO', 'FALSO', 46351]);
  // row 4: a date typed as text the Spanish way, a formula with its computed value
  ws.addRow(['x-003', '21/11/2026 14:05:30', 'Luis', { formula: 'UPPER("cañas")', result: 'CAÑAS' }, '+51 977 000 111', 1, 0, null]);
  // row 5: an Excel error in a loaded column
  ws.addRow(['x-004', new Date(Date.UTC(2026, 10, 22)), 'Eva', { error: '#N/A' }, null, true, true, null]);
  // rows 6 and 7 absent (Excel writes no empty row), row 8: values the import refuses
  ws.getRow(8).values = ['x-008', 'mañana', 'Raúl', 'Díaz', null, 'tal vez', false, null];
  // row 9: a sparse row (cells left out after external_id's neighbours)
  ws.getRow(9).getCell(1).value = 'x-009';
  ws.getRow(9).getCell(2).value = '2026-11-23 08:00';
  const other = wb.addWorksheet('Notas');
  other.addRow(['external_id', 'lead_created_at']);
  other.addRow(['n-001', '2026-11-24']);
  await wb.xlsx.writeFile(file);
}

test('an xlsx workbook: date cells and serial numbers as wall-clock times whatever the machine\'s zone, rejects named by sheet row', async (t) => {
  const file = path.join(tempDir(t), 'leads.xlsx');
  await leadsWorkbook(file);
  const byZone: Row[][] = [];
  for (const tz of ['America/Lima', 'Asia/Tokyo', 'UTC']) {
    const db = await freshDb(t, 'import_formats');
    const r = await importLeads(db, [file], { TZ: tz });
    t.is(r.code, 1, r.stderr);
    t.is(r.stdout.split('\n')[0], `${file}: xlsx, sheet "Leads", rows numbered as in the sheet`);
    t.deepEqual(rejects(r.stdout, 'row'), [
      'row 5: last_name is the Excel error #N/A',
      'row 8: lead_created_at "mañana" is not a timestamp (expected YYYY-MM-DD HH:MM:SS[.ffffff], the same with T, YYYY-MM-DD, or day-first DD/MM/YYYY [H:MM[:SS]]); active_1 "tal vez" is not a boolean (expected true/false, 1/0, yes/no, t/f, y/n, verdadero/falso or sí/no)',
    ]);
    t.regex(r.stdout, /leads\.xlsx: read 6, inserted 4, duplicates 0, rejected 2 /);
    byZone.push(await rows(db));
  }
  t.deepEqual(byZone[0], [
    { external_id: 'x-001', lead_created_at: '2026-11-20 09:15:00', first_name: 'José', last_name: 'Muñoz', park_phone: '977456321', active_1: true, active_5: false, last_active_date: '2026-11-25' },
    { external_id: 'x-002', lead_created_at: '2026-11-20 18:00:00', first_name: 'Ana', last_name: 'Pérez', park_phone: null, active_1: true, active_5: false, last_active_date: '2026-11-25' },
    { external_id: 'x-003', lead_created_at: '2026-11-21 14:05:30', first_name: 'Luis', last_name: 'CAÑAS', park_phone: '+51 977 000 111', active_1: true, active_5: false, last_active_date: null },
    { external_id: 'x-009', lead_created_at: '2026-11-23 08:00:00', first_name: null, last_name: null, park_phone: null, active_1: null, active_5: null, last_active_date: null },
  ]);
  t.deepEqual(byZone[1], byZone[0], 'the machine\'s time zone changes nothing');
  t.deepEqual(byZone[2], byZone[0], 'the machine\'s time zone changes nothing');
});

test('an xlsx workbook in the 1904 date system: date cells and serial numbers read in it', async (t) => {
  const file = path.join(tempDir(t), 'mac.xlsx');
  await leadsWorkbook(file, { date1904: true });
  const db = await freshDb(t, 'import_formats');
  const r = await importLeads(db, [file]);
  t.is(r.code, 1, r.stderr);
  // (the serial 46346.75 is 1462 days later in the 1904 system)
  t.deepEqual((await rows(db)).slice(0, 2).map((x) => [x.external_id, x.lead_created_at, x.last_active_date]), [
    ['x-001', '2026-11-20 09:15:00', '2026-11-25'],
    ['x-002', '2030-11-21 18:00:00', '2030-11-26'],
  ]);
});

test('--sheet reads another sheet; an unknown sheet is named with the sheets there are', async (t) => {
  const file = path.join(tempDir(t), 'two.xlsx');
  await leadsWorkbook(file);
  const db = await freshDb(t, 'import_formats');
  const r = await importLeads(db, [file, '--sheet', 'Notas', '--json']);
  t.is(r.code, 0, r.stderr);
  t.like(JSON.parse(r.stdout), { format: 'xlsx', sheet: 'Notas', encoding: null, delimiter: null, inserted: 1 });
  t.deepEqual((await rows(db)).map((x) => x.external_id), ['n-001']);

  const missing = await importLeads(db, [file, '--sheet', 'Hoja1']);
  t.is(missing.code, 2, missing.stderr);
  t.regex(errorLine(missing), /two\.xlsx has no sheet "Hoja1"; its sheets: "Leads", "Notas"$/);
  const delimiter = await importLeads(db, [file, '--delimiter', ';']);
  t.is(delimiter.code, 2, delimiter.stderr);
  t.regex(errorLine(delimiter), /two\.xlsx is an xlsx workbook: --delimiter and --encoding apply to CSV files only$/);
});

/** The same workbook with its parts in the zip in the given order (writers differ: Excel puts workbook.xml first, openpyxl and exceljs last). */
async function reordered(from: string, to: string, first: (p: string) => number): Promise<void> {
  const zip = await JSZip.loadAsync(readFileSync(from));
  const parts = Object.keys(zip.files).filter((p) => !zip.files[p]!.dir);
  const out = new JSZip();
  for (const p of [...parts].sort((a, b) => first(a) - first(b))) out.file(p, await zip.files[p]!.async('nodebuffer'));
  writeFileSync(to, await out.generateAsync({ type: 'nodebuffer', compression: 'DEFLATE' }));
}

test('the sheet and its rows are the same whatever order the writer put the workbook\'s parts in', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'leads.xlsx');
  await leadsWorkbook(file);
  const orders: Record<string, (p: string) => number> = {
    // Excel: workbook.xml, then the sheets, then styles and shared strings
    excel: (p) => (p.endsWith('workbook.xml') ? 0 : p.includes('worksheets/') ? 1 : 2),
    // shared strings and styles first, the sheets, workbook.xml last (exceljs's reader used
    // to crash here: the sheet came before the sheet names)
    'workbook last': (p) => (p.endsWith('workbook.xml') ? 3 : p.includes('worksheets/') ? (p.includes('sheet2') ? 2 : 1) : 0),
  };
  for (const [label, order] of Object.entries(orders)) {
    const copy = path.join(dir, `${label.replace(' ', '_')}.xlsx`);
    await reordered(file, copy, order);
    for (const args of [[], ['--sheet', 'Notas']]) {
      const db = await freshDb(t, 'import_formats');
      const r = await importLeads(db, [copy, ...args, '--json']);
      const sheet = args.length ? 'Notas' : 'Leads';
      t.is(r.code, sheet === 'Leads' ? 1 : 0, `${label} ${sheet}: ${r.stderr}`);
      t.like(JSON.parse(r.stdout), { sheet, read: sheet === 'Leads' ? 6 : 1 }, label);
      if (sheet === 'Leads') {
        t.deepEqual((await rows(db)).slice(0, 2).map((x) => [x.external_id, x.lead_created_at, x.last_active_date]), [
          ['x-001', '2026-11-20 09:15:00', '2026-11-25'],
          ['x-002', '2026-11-20 18:00:00', '2026-11-25'],
        ], label);
      }
    }
  }
});

test('a workbook with a damaged part: an unknown --sheet is a usage error, any other import names the part and loads nothing', async (t) => {
  const dir = tempDir(t);
  const good = path.join(dir, 'good.xlsx');
  await leadsWorkbook(good);
  // workbook.xml names the sheets; the first sheet's compressed bytes are garbage (reading
  // it fails), so only a check made before reading names the missing sheet
  const zip = await JSZip.loadAsync(readFileSync(good));
  const bytes = await zip.generateAsync({ type: 'nodebuffer', compression: 'DEFLATE' });
  const name = Buffer.from('xl/worksheets/sheet1.xml');
  const header = bytes.indexOf(name) - 30;
  t.true(header >= 0 && bytes.readUInt32LE(header) === 0x04034b50, 'local header of sheet1');
  const data = header + 30 + bytes.readUInt16LE(header + 26) + bytes.readUInt16LE(header + 28);
  bytes.fill(0xff, data, data + Math.min(64, bytes.readUInt32LE(header + 18)));
  const file = path.join(dir, 'broken-sheets.xlsx');
  writeFileSync(file, bytes);
  const db = await freshDb(t, 'import_formats');
  const r = await importLeads(db, [file, '--sheet', 'Hoja1']);
  t.is(r.code, 2, r.stderr);
  t.regex(errorLine(r), /broken-sheets\.xlsx has no sheet "Hoja1"; its sheets: "Leads", "Notas"$/);
  const [runs] = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM canon.ingestion_runs`);
  t.is(runs!.n, 0, 'nothing was started');
  // the sheets that are there: the damaged part is named (the streaming reader used to wait forever)
  for (const sheet of [[], ['--sheet', 'Leads'], ['--sheet', 'Notas']]) {
    const r2 = await importLeads(db, [file, ...sheet]);
    t.is(r2.code, 1, r2.stderr);
    t.regex(errorLine(r2), /broken-sheets\.xlsx is not a readable xlsx workbook: its part xl\/worksheets\/sheet1\.xml is damaged \(.+\); nothing was loaded$/);
  }
  t.deepEqual(await rows(db), []);
});

test('workbooks the import cannot read: .xls, a truncated .xlsx, a .xlsx that is not a zip', async (t) => {
  const db = await freshDb(t, 'import_formats');
  const dir = tempDir(t);
  const good = path.join(dir, 'good.xlsx');
  await leadsWorkbook(good);
  const cases: [string, Buffer, number, RegExp][] = [
    ['old.xls', Buffer.concat([Buffer.from([0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1]), Buffer.alloc(512)]), 2, /old\.xls is an Excel 97-2003 workbook \(\.xls\): open it in Excel and save it as "Excel Workbook \(\.xlsx\)" or "CSV UTF-8"$/],
    ['cut.xlsx', readFileSync(good).subarray(0, 3000), 1, /cut\.xlsx is not a readable xlsx workbook: .+; nothing was loaded$/],
    ['text.xlsx', Buffer.from('external_id,lead_created_at\n'), 2, /text\.xlsx is named \.xlsx but is not an Excel workbook \(no zip signature\)$/],
  ];
  for (const [name, bytes, code, pattern] of cases) {
    const file = path.join(dir, name);
    writeFileSync(file, bytes);
    const r = await importLeads(db, [file]);
    t.is(r.code, code, `${name}: ${r.stderr}`);
    t.regex(errorLine(r), pattern);
  }
  t.deepEqual(await rows(db), []);
});
