// cabinet-leads import-leads as ops staff run it: a real process on the fixture files of
// test/fixtures/import/, its exit code, its report and the rows it leaves.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { PROJECT_ROOT } from '../../src/config.js';
import { errorLine, runCli } from '../helpers/cli.js';
import { freshDb, type TestDb } from '../helpers/db.js';

const FIXTURES = path.join(PROJECT_ROOT, 'test', 'fixtures', 'import');
const fixture = (name: string) => path.join(FIXTURES, name);

/** A real file in a temporary folder (removed after the test), for content too big or too invisible to commit. */
function tempFile(t: { teardown(fn: () => void): void }, name: string, content: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'import-leads-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, name);
  writeFileSync(file, content, 'utf8');
  return file;
}

function importLeads(db: TestDb, args: string[]) {
  return runCli(['import-leads', ...args], { DATABASE_URL: db.url, LOG_LEVEL: 'warn' });
}

interface LeadText {
  external_id: string;
  lead_created_at: string;
  first_name: string | null;
  last_name: string | null;
  park_phone: string | null;
  asset_plate_number: string | null;
  active_1: boolean | null;
  last_active_date: string | null;
}

async function leads(db: TestDb): Promise<LeadText[]> {
  return db.query<LeadText>(
    `SELECT external_id, lead_created_at::text, first_name, last_name, park_phone, asset_plate_number, active_1, last_active_date::text
     FROM public.module_ct_cabinet_leads ORDER BY id`,
  );
}

test('loads a file with a BOM, Windows line endings, quoted commas, quotes and line breaks, headers in any order and case', async (t) => {
  const raw = readFileSync(fixture('bom_crlf.csv'));
  t.deepEqual([...raw.subarray(0, 3)], [0xef, 0xbb, 0xbf], 'the fixture starts with a UTF-8 BOM');
  t.true(raw.toString('utf8').includes('\r\n'), 'the fixture has Windows line endings (check .gitattributes if not)');
  const db = await freshDb(t, 'import');

  const r = await importLeads(db, [fixture('bom_crlf.csv')]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^ignored columns: cabinet_notes \(unknown column\)$/m);
  t.regex(r.stdout, /bom_crlf\.csv: read 4, inserted 4, duplicates 0, rejected 0 \(\d+ ms, run \d+\)$/m);
  t.deepEqual(await leads(db), [
    { external_id: 'imp-001', lead_created_at: '2026-01-10 09:15:00', first_name: 'Juan', last_name: 'Pérez, Jr.', park_phone: '977456321', asset_plate_number: 'ABC-123', active_1: true, last_active_date: '2026-01-20' },
    { external_id: 'imp-002', lead_created_at: '2026-01-11 10:00:00.123456', first_name: 'María', last_name: "O'Neil", park_phone: '+51 977 000 111', asset_plate_number: null, active_1: true, last_active_date: null },
    { external_id: 'imp-003', lead_created_at: '2026-01-12 00:00:00', first_name: 'José', last_name: 'Quispe "El Rápido"', park_phone: null, asset_plate_number: 'B2C-456', active_1: false, last_active_date: null },
    { external_id: 'imp-004', lead_created_at: '2026-01-13 08:00:00', first_name: 'Ñandú', last_name: 'Multi\r\nline\r\nname', park_phone: null, asset_plate_number: null, active_1: false, last_active_date: null },
  ]);
  const [run] = await db.query<{ job_name: string; status: string; trigger: string; stats: { read: number; inserted: number }; params: { sha256: string; bytes: number } }>(
    `SELECT job_name, status, trigger, stats, params FROM canon.ingestion_runs WHERE source_tables::text LIKE '%module_ct_cabinet_leads%'`,
  );
  t.like(run!, { job_name: 'import_cabinet_leads', status: 'COMPLETED', trigger: 'cli', stats: { read: 4, inserted: 4 }, params: { bytes: raw.length } });
  t.regex(run!.params.sha256, /^[0-9a-f]{64}$/);
});

test('reports every broken row with its line number and reason, loads the valid rows, exits 1', async (t) => {
  const db = await freshDb(t, 'import');
  const r = await importLeads(db, [fixture('broken.csv')]);
  t.is(r.code, 1, r.stderr);
  const reported = r.stdout.split('\n').filter((l) => l.startsWith('line '));
  t.deepEqual(reported, [
    'line 3: lead_created_at "31-02-2026" is not a timestamp (expected YYYY-MM-DD HH:MM:SS[.ffffff], the same with T, YYYY-MM-DD, or day-first DD/MM/YYYY [H:MM[:SS]])',
    'line 4: lead_created_at "2026-02-31 10:00:00" is not a date (2026-02 has no day 31)',
    'line 5: active_5 "maybe" is not a boolean (expected true/false, 1/0, yes/no, t/f, y/n, verdadero/falso or sí/no)',
    'line 7: external_id is empty',
    'line 8: has 2 fields, the header has 5',
    'line 10: lead_created_at "2026-01-12T10:00:00Z" has a time zone (lead times are local times, without zone)',
    'line 13: lead_created_at is empty',
    'line 14: lead_created_at "2026-01-14 25:00:00" is not a time of day',
  ]);
  t.regex(r.stdout, /broken\.csv: read 10, inserted 2, duplicates 0, rejected 8, 2 blank rows skipped/);
  t.deepEqual((await leads(db)).map((l) => [l.external_id, l.first_name]), [['brk-001', 'Ana'], ['brk-008', 'Pedro "Pepe"']]);

  const json = await importLeads(db, [fixture('broken.csv'), '--json', '--dry-run']);
  t.is(json.code, 1);
  const s = JSON.parse(json.stdout) as { read: number; rejected: number; duplicates_in_table: number; rejected_rows: { line: number; reason: string }[] };
  t.like(s, { read: 10, rejected: 8, duplicates_in_table: 2 });
  t.deepEqual(s.rejected_rows.map((x) => x.line), [3, 4, 5, 7, 8, 10, 13, 14]);
});

test('a NUL character (never storable in PostgreSQL text) rejects its row', async (t) => {
  const db = await freshDb(t, 'import');
  const r = await importLeads(db, [fixture('nul_char.csv')]);
  t.is(r.code, 1, r.stderr);
  t.regex(r.stdout, /^line 2: first_name contains a NUL character$/m);
  t.deepEqual((await leads(db)).map((l) => l.external_id), ['nul-002']);
});

test('--strict loads nothing when a row is rejected', async (t) => {
  const db = await freshDb(t, 'import');
  const r = await importLeads(db, [fixture('broken.csv'), '--strict']);
  t.is(r.code, 1);
  t.regex(r.stdout, /--strict: nothing loaded because 8 row\(s\) were rejected; read 10, would insert 2/);
  t.deepEqual(await leads(db), []);
  const [run] = await db.query<{ status: string; error_message: string }>(`SELECT status, error_message FROM canon.ingestion_runs`);
  t.like(run!, { status: 'FAILED', error_message: '8 row(s) rejected and --strict given: nothing was loaded' });

  const ok = await importLeads(db, [fixture('bom_crlf.csv'), '--strict']);
  t.is(ok.code, 0, 'a clean file loads with --strict');
  t.is((await leads(db)).length, 4);
});

test('never duplicates an external_id already in the table or earlier in the file', async (t) => {
  const db = await freshDb(t, 'import');
  t.is((await importLeads(db, [fixture('already.csv')])).code, 0);
  const r = await importLeads(db, [fixture('duplicates.csv')]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /read 6, inserted 3, duplicates 3 \(1 already in the table, 2 repeated in the file\), rejected 0/);
  t.deepEqual((await leads(db)).map((l) => [l.external_id, l.first_name]), [
    ['dup-100', null],
    ['dup-001', 'Primero'],
    ['dup-002', 'Segundo'],
    ['dup-003', 'Tercero'],
  ]);
  const again = await importLeads(db, [fixture('duplicates.csv'), '--json']);
  t.is(again.code, 0);
  const s = JSON.parse(again.stdout) as { inserted: number; duplicates: number; duplicate_examples: { line: number; external_id: string; first_line: number | null }[] };
  t.like(s, { inserted: 0, duplicates: 6 });
  t.is((await leads(db)).length, 4);

  const first = JSON.parse((await importLeads(await freshDb(t, 'import'), [fixture('duplicates.csv'), '--json'])).stdout) as typeof s;
  t.deepEqual(first.duplicate_examples, [
    { line: 4, external_id: 'dup-001', first_line: 2 },
    { line: 7, external_id: 'dup-002', first_line: 3 },
  ]);
});

test('--dry-run checks everything and writes nothing but the run log', async (t) => {
  const db = await freshDb(t, 'import');
  const r = await importLeads(db, [fixture('bom_crlf.csv'), '--dry-run']);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /dry run, nothing written: read 4, would insert 4, duplicates 0, rejected 0/);
  t.deepEqual(await leads(db), []);
  const [run] = await db.query<{ status: string; dry_run: boolean }>(`SELECT status, dry_run FROM canon.ingestion_runs`);
  t.deepEqual(run, { status: 'COMPLETED', dry_run: true });
});

test('--delimiter reads a ;-separated export', async (t) => {
  const db = await freshDb(t, 'import');
  const r = await importLeads(db, [fixture('semicolon.csv'), '--delimiter', ';']);
  t.is(r.code, 0, r.stderr);
  t.deepEqual((await leads(db)).map((l) => [l.external_id, l.first_name]), [['sc-001', 'Ana'], ['sc-002', 'Ruiz; Luis']]);
});

for (const [label, args, code, pattern] of [
  ['a missing file', ['no-such-file.csv'], 2, /import-leads: cannot read no-such-file\.csv: no such file/],
  ['no FILE', [], 2, /import-leads: expected one FILE, got none/],
  ['a missing required column', ['missing_header.csv'], 2, /required column lead_created_at missing from the header; found: external_id, created, first_name/],
  ['an empty file', ['empty.csv'], 2, /empty\.csv is empty: expected a header with external_id and lead_created_at/],
  ['a ;-separated header read with --delimiter ","', ['semicolon.csv', '--delimiter', ','], 2, /required columns external_id, lead_created_at missing from the header \(the header looks ";"-separated: try --delimiter ";"\)/],
  ['a file that is not UTF-8 read with --encoding utf-8', ['latin1.csv', '--encoding', 'utf-8'], 2, /latin1\.csv is not UTF-8: invalid byte at offset 81, line 3 \(save it as "CSV UTF-8"\); nothing was loaded/],
  ['a quote never closed', ['unclosed_quote.csv'], 1, /unclosed_quote\.csv line 3: a quoted field is never closed \(unbalanced "\); nothing was loaded/],
  ['an unknown flag', ['bom_crlf.csv', '--fast'], 2, /Unknown option '--fast'/],
] as const) {
  test(`${label} exits ${code} with a one-line message, nothing loaded`, async (t) => {
    const db = await freshDb(t, 'import');
    const r = await importLeads(db, args.map((a) => (a.endsWith('.csv') && a !== 'no-such-file.csv' ? fixture(a) : a)));
    t.is(r.code, code, r.stderr);
    t.regex(errorLine(r), pattern);
    t.deepEqual(await leads(db), []);
  });
}

test('a field of 1,000,001 characters rejects its row, named by its line; the other rows load', async (t) => {
  const db = await freshDb(t, 'import');
  const file = tempFile(t, 'long_field.csv', [
    'external_id,lead_created_at,first_name',
    'long-002,2026-01-10,Ana',
    'long-003,2026-01-10,"Luis',
    'Alberto"',
    `long-005,2026-01-11,${'x'.repeat(1_000_001)}`,
    'long-006,2026-01-12,Eva',
    '',
  ].join('\n'));
  const r = await importLeads(db, [file]);
  t.is(r.code, 1, r.stderr);
  t.deepEqual(r.stdout.split('\n').filter((l) => l.startsWith('line ')), ['line 5: first_name is 1000001 characters long, a field holds at most 1000000']);
  t.regex(r.stdout, /long_field\.csv: read 4, inserted 3, duplicates 0, rejected 1 /);
  t.deepEqual((await leads(db)).map((l) => l.external_id), ['long-002', 'long-003', 'long-006']);
});

test('a record of over 16 million characters (a quote never closed) refuses the file, naming the line it starts on', async (t) => {
  const db = await freshDb(t, 'import');
  const junk = `${'x'.repeat(99)}\n`.repeat(170_000);
  const file = tempFile(t, 'runaway_quote.csv', `external_id,lead_created_at,first_name\nrq-002,2026-01-10,"two\nlines"\nrq-004,2026-01-10,"never closed\n${junk}`);
  const r = await importLeads(db, [file]);
  t.is(r.code, 1, r.stderr);
  t.regex(errorLine(r), /runaway_quote\.csv line 4: a record is longer than 16000000 characters \(probably an unbalanced "\); nothing was loaded$/);
  t.deepEqual(await leads(db), []);
});

test('an LF header with CRLF rows: no \\r stored, the right line numbers', async (t) => {
  const raw = readFileSync(fixture('lf_header_crlf_rows.csv'), 'utf8');
  t.true(raw.startsWith('external_id,lead_created_at,first_name\ncrlf-001,2026-01-10,Ana\r\n'), 'the fixture has an LF header and CRLF rows (check .gitattributes if not)');
  const db = await freshDb(t, 'import');
  const r = await importLeads(db, [fixture('lf_header_crlf_rows.csv')]);
  t.is(r.code, 1, r.stderr);
  t.deepEqual(r.stdout.split('\n').filter((l) => l.startsWith('line ')), [
    'line 5: lead_created_at "31-02-2026" is not a timestamp (expected YYYY-MM-DD HH:MM:SS[.ffffff], the same with T, YYYY-MM-DD, or day-first DD/MM/YYYY [H:MM[:SS]])',
  ]);
  t.deepEqual((await leads(db)).map((l) => [l.external_id, l.first_name]), [['crlf-001', 'Ana'], ['crlf-002', 'Luis\r\nAlberto'], ['crlf-004', 'Eva']]);
});

test('a header cell with a line break or an ANSI escape is printed escaped, never raw', async (t) => {
  const db = await freshDb(t, 'import');
  const r = await importLeads(db, [fixture('header_controls.csv')]);
  t.is(r.code, 1, r.stderr);
  t.regex(r.stdout, /^ignored columns: "notes\\nsecond line" \(unknown column\), "\\u001b\[31mred\\u001b\[0m" \(unknown column\)$/m);
  // the header spans lines 1 and 2: the second data row is line 4
  t.regex(r.stdout, /^line 4: lead_created_at "2026-02-31" is not a date \(2026-02 has no day 31\)$/m);
  t.false(/[\u001b\u009b]/.test(r.stdout + r.stderr), 'no escape character reaches the terminal');

  const missing = await importLeads(db, [fixture('header_escape_missing.csv')]);
  t.is(missing.code, 2);
  t.is(errorLine(missing), 'cabinet-leads: error: import-leads: required column external_id missing from the header; found: "\\u001b[2j\\u001b[hexternal_id", lead_created_at');
  t.false(/[\u001b\u009b]/.test(missing.stdout + missing.stderr), 'no escape character reaches the terminal');
});

test('external ids that differ only by blanks at their ends are one lead (canon.lead_source_pk decides, not the import)', async (t) => {
  const db = await freshDb(t, 'import');
  const [b] = await db.query<{ blanks: string }>(`SELECT canon.blank_characters() AS blanks`);
  const blanks = [...b!.blanks];
  t.is(blanks.length, 29);
  // Upstream wrote 'NB-1<TAB>' (the issue's case: the import made a second lead of 'NB-1').
  await db.query(`INSERT INTO public.module_ct_cabinet_leads (external_id, lead_created_at) VALUES (E'NB-1\\t', '2026-01-09')`);
  const csv = (v: string) => `"${v.replace(/"/g, '""')}"`;
  const rows = [
    ['NB-1', 'table'],
    ['NB-2', 'first'],
    ...blanks.flatMap((c) => [[`NB-2${c}`, 'end'], [`${c}NB-2`, 'start']]),
    ['\u00a0\t \u200b', 'blank'],
    ['NB 3', 'inner space kept'],
  ];
  const file = tempFile(t, 'blank_ends.csv', `external_id,lead_created_at,first_name\n${rows.map(([id, name]) => `${csv(id!)},2026-01-10,${name}`).join('\n')}\n`);
  const r = await importLeads(db, [file, '--json']);
  t.is(r.code, 1, r.stderr);
  const s = JSON.parse(r.stdout) as { read: number; inserted: number; duplicates_in_table: number; duplicates_in_file: number; rejected_rows: { line: number; reason: string }[] };
  t.like(s, { read: rows.length, inserted: 2, duplicates_in_table: 1, duplicates_in_file: blanks.length * 2 });
  // (line numbers count the line breaks inside quoted ids: 'NB-2<LF>', '<LF>NB-2', 'NB-2<CR>', '<CR>NB-2')
  t.deepEqual(s.rejected_rows, [{ line: rows.length + 4, reason: 'external_id "\\u00a0\\t \\u200b" is blank (spaces or other blank characters only)' }]);
  t.deepEqual((await leads(db)).map((l) => [l.external_id, l.first_name]), [['NB-1\t', null], ['NB-2', 'first'], ['NB 3', 'inner space kept']]);
});

test('--help describes the file format', async (t) => {
  const r = await runCli(['import-leads', '--help']);
  t.is(r.code, 0);
  t.regex(r.stdout, /^Usage: cabinet-leads import-leads FILE /);
  for (const flag of ['--strict', '--delimiter', '--encoding', '--sheet']) t.regex(r.stdout, new RegExp(`^  ${flag} `, 'm'));
});
