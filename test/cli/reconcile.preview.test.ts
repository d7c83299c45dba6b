// cabinet-leads reconcile --preview as a real process: the table a person reads, the JSON a
// tool reads, nothing written, and the flags it cannot be combined with (exit 2).
import test from 'ava';
import { errorLine, runCli } from '../helpers/cli.js';
import { createTestDb, type TestDb } from '../helpers/db.js';
import { runPipeline } from '../helpers/pipeline.js';
import { insertDriver, insertLead, type Lead } from '../helpers/rows.js';

let db: TestDb;
let lead: Lead;
test.before(async () => {
  db = await createTestDb('cli_preview');
  await insertDriver(db, { driver_id: 'd1', first_name: 'Juan', last_name: 'Perez', phone: '977456321' });
  lead = await insertLead(db, { first_name: 'Juan', last_name: 'Perez', park_phone: '977456321' });
  await runPipeline(db, 'p_days_back => 30, p_limit => 0'); // keys the lead, decides none
});
test.after.always(() => db.drop());

const written = () =>
  db.query<{ runs: number; links: number; unmatched: number }>(
    `SELECT (SELECT count(*)::int FROM canon.ingestion_runs) AS runs,
            (SELECT count(*)::int FROM canon.identity_links) AS links,
            (SELECT count(*)::int FROM canon.identity_unmatched) AS unmatched`);

test.serial('--preview prints the count per kind and the lead a run would link; it writes nothing, not even a run row', async (t) => {
  const before = await written();
  const r = await runCli(['reconcile', '--preview'], { DATABASE_URL: db.url });
  t.is(r.code, 0, r.stderr);
  const lines = r.stdout.split('\n');
  t.regex(lines[0]!, /^Leads and drivers as run \d+ keyed them \(\d{4}-\d\d-\d\d \d\d:\d\d, America\/Lima\); a run refreshes both first\.$/);
  t.regex(r.stdout, /^Preview of the current decisions on the leads dated from \d{4}-\d\d-\d\d \(days-back 30\), against what is stored; nothing was written\.$/m);
  t.regex(r.stdout, /^ {2}add {5}1 {6}1$/m);
  t.regex(r.stdout, /^ {2}remove {2}0 {6}0$/m);
  t.regex(r.stdout, /^ {2}change {2}0 {6}0$/m);
  const row = lines.find((l) => l.startsWith(lead.key));
  t.truthy(row, r.stdout);
  t.regex(row!, /\s+add\s+yes\s+not evaluated\s+d1 R1 95\.00\s+not evaluated yet: the next run links it$/);
  t.deepEqual(await written(), before);
});

test.serial('--preview --json prints one object: scope, summary per kind and every row', async (t) => {
  const r = await runCli(['reconcile', '--preview', '--json', '--days-back', '10'], { DATABASE_URL: db.url });
  t.is(r.code, 0, r.stderr);
  const p = JSON.parse(r.stdout) as {
    days_back: number; only_limbo: boolean; as_of_run: { id: number } | null;
    summary: Record<string, { leads: number; a_run_would_apply: number }>;
    changes: { lead_source_pk: string; change_kind: string; a_run_would_apply: boolean; proposed_driver_id: string; proposed_match_rule: string; proposed_match_score: number }[];
  };
  t.is(p.days_back, 10);
  t.false(p.only_limbo);
  t.is(typeof p.as_of_run?.id, 'number');
  t.deepEqual(p.summary, { add: { leads: 1, a_run_would_apply: 1 }, remove: { leads: 0, a_run_would_apply: 0 }, change: { leads: 0, a_run_would_apply: 0 } });
  t.like(p.changes[0], { lead_source_pk: lead.key, change_kind: 'add', a_run_would_apply: true, proposed_driver_id: 'd1', proposed_match_rule: 'R1_PHONE_EXACT', proposed_match_score: 95 });
  const events = r.stderr.trim().split('\n').map((l) => JSON.parse(l) as { msg: string; add?: number });
  t.true(events.some((e) => e.msg === 'reconcile preview' && e.add === 1));
});

test.serial('after the run links the lead, --preview says that no link would change', async (t) => {
  await runPipeline(db);
  const r = await runCli(['reconcile', '--preview'], { DATABASE_URL: db.url });
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^No link would change: the current decisions agree with what is stored for the leads dated from \d{4}-\d\d-\d\d \(days-back 30\)\. Nothing was written\.$/m);
});

for (const flags of [['--until-done'], ['--dry-run'], ['--limit', '5']]) {
  test(`--preview with ${flags.join(' ')} exits 2 and says why`, async (t) => {
    const r = await runCli(['reconcile', '--preview', ...flags], { DATABASE_URL: db.url });
    t.is(r.code, 2);
    t.is(errorLine(r), `cabinet-leads: error: reconcile: --preview cannot be combined with ${flags[0]}: the preview decides every lead of --days-back at once and writes nothing (see cabinet-leads reconcile --help)`);
    t.is(r.stdout, '');
  });
}

test('--help describes --preview', async (t) => {
  const r = await runCli(['reconcile', '--help']);
  t.is(r.code, 0);
  t.regex(r.stdout, /^ {7}cabinet-leads reconcile --preview \[--days-back N\] \[--only-limbo\] \[--json\]$/m);
  t.regex(r.stdout, /^ {2}--preview {10}write nothing: the links the current decisions would add, remove or change$/m);
});
