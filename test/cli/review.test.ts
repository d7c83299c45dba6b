// `cabinet-leads review` and `cabinet-leads explain KEY`: the leads a person must decide with
// their candidates and the exact commands, and one lead explained as text, sentence first.
import { execFileSync } from 'node:child_process';
import test from 'ava';
import { errorLine, runCli } from '../helpers/cli.js';
import { createTestDb, type TestDb } from '../helpers/db.js';
import { runPipeline } from '../helpers/pipeline.js';
import { addDays, businessToday, insertDriver, insertLead } from '../helpers/rows.js';

let db: TestDb;
test.before(async () => {
  db = await createTestDb('cli_review');
  await insertDriver(db, { driver_id: 'a1', first_name: 'Ana', last_name: 'Lopez', car_number: 'SHF001', phone: '51911000001' });
  await insertDriver(db, { driver_id: 'b2', first_name: 'Ana', last_name: 'Lopes', car_number: 'SHF001' });
  await insertLead(db, { external_id: "AMB'1", first_name: 'Ana', last_name: 'López', asset_plate_number: 'shf-001' });
  await insertDriver(db, { driver_id: 'owner', first_name: 'Carmen', last_name: 'Salas', car_number: 'WEA004' });
  await insertLead(db, { external_id: 'WEAK', first_name: 'Jorge', last_name: 'Tello', asset_plate_number: 'WEA004',
                         lead_created_at: `${addDays(await businessToday(db), -20)} 10:00` });
  await insertLead(db, { external_id: 'NONE', first_name: 'Rosa', last_name: 'Vega', park_phone: '944000004' });
  const run = await runPipeline(db);
  if (run.status !== 'COMPLETED') throw new Error(run.error_message ?? run.status);
});
test.after.always(() => db.drop());

test('review lists the leads a person must decide, candidates side by side, with the exact commands', async (t) => {
  const r = await runCli(['review'], { DATABASE_URL: db.url });
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^2 leads wait for a person; most money at stake first, then the oldest\./);
  t.regex(r.stdout, /#1 {2}WEAK {2}WEAK_MATCH_ONLY {2}at stake S\/ 0\.00\n {4}lead \d{4}-\d\d-\d\d \(20 days ago\), Jorge Tello, phone -, plate WEA004/);
  t.regex(r.stdout, / {4}driver +name +park +phone +plate +hired +rule +score +name sim\. +trips 14d +would claim +why not linked\n {4}owner +Carmen Salas +target +- +WEA004 +\d{4}-\d\d-\d\d +R3 +85 +0\.\d\d +0 +S\/ 0\.00 +the plate is the same, the name is not similar enough/);
  t.false(r.stdout.includes('NONE'), 'NO_CANDIDATES waits for drivers, not for a person');
  // the commands, quoted for a shell, run as printed
  const resolve = /cabinet-leads resolve-lead ('AMB'\\''1') a1 --note "why this driver"/.exec(r.stdout);
  t.truthy(resolve, r.stdout);
  t.regex(r.stdout, /cabinet-leads resolve-lead 'AMB'\\''1' b2 --note "why this driver"/);
  t.regex(r.stdout, /or ignore: +cabinet-leads ignore-lead WEAK --note "why no driver"/);
  const [key] = execFileSync('sh', ['-c', `printf '%s' ${resolve![1]}`], { encoding: 'utf8' }).split('\n');
  const done = await runCli(['resolve-lead', key!, 'a1', '--note', 'checked: same person'], { DATABASE_URL: db.url });
  t.is(done.code, 0, done.stderr);
  const after = await runCli(['review', '--json'], { DATABASE_URL: db.url });
  t.deepEqual((JSON.parse(after.stdout) as { lead_source_pk: string }[]).map((x) => x.lead_source_pk), ['WEAK']);
});

test('review --reason filters; a bad reason exits 2', async (t) => {
  const r = await runCli(['review', '--reason', 'conflict'], { DATABASE_URL: db.url });
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, 'No lead waits for a person (CONFLICT).\n');
  const bad = await runCli(['review', '--reason', 'LATE'], { DATABASE_URL: db.url });
  t.is(bad.code, 2);
  t.regex(errorLine(bad), /invalid --reason "LATE": expected one of AMBIGUOUS, CONFLICT, WEAK_MATCH_ONLY, SHARED_KEY/);
});

test('explain prints the sentence first, then keys, state, scope and every candidate', async (t) => {
  const r = await runCli(['explain', 'WEAK'], { DATABASE_URL: db.url });
  t.is(r.code, 0, r.stderr);
  const lines = r.stdout.split('\n');
  t.regex(lines[0]!, /^WEAK: Its plate is known but no driver of that plate has a similar name/);
  t.regex(r.stdout, /\nkeys +phone -, plate WEA004, licence -, name /);
  t.regex(r.stdout, /\nstate +WEAK_MATCH_ONLY, OPEN, 1 attempt, last at \d{4}-\d\d-\d\d \d\d:\d\d\n/);
  t.regex(r.stdout, /\nscope +the runs evaluate lead dates from \d{4}-\d\d-\d\d \(days_back 30 of run \d+\): in scope\n/);
  t.regex(r.stdout, /Candidates \(driver index as of .*, America\/Lima\):\n +driver +name .*\n +owner +Carmen Salas +target/);
  const json = await runCli(['explain', 'NONE', '--json'], { DATABASE_URL: db.url });
  t.is((JSON.parse(json.stdout) as { decision_now: { decision: string } }).decision_now.decision, 'NO_CANDIDATES');
  const unknown = await runCli(['explain', 'nope'], { DATABASE_URL: db.url });
  t.is(unknown.code, 1);
  t.regex(errorLine(unknown), /unknown lead 'nope'/);
  const missing = await runCli(['explain'], { DATABASE_URL: db.url });
  t.is(missing.code, 2);
});
