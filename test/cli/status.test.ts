// `cabinet-leads status`: every time in one stated zone (the business time zone), and the
// job of each run (an import is not a pipeline run).
import test from 'ava';
import { runCli } from '../helpers/cli.js';
import { createTestDb } from '../helpers/db.js';

test('status prints every time in the business time zone, named once, and the job of each run', async (t) => {
  const db = await createTestDb('cli_status');
  t.teardown(() => db.drop());
  await db.query(`UPDATE canon.settings SET value = 'Asia/Tokyo' WHERE key = 'business_timezone'`);
  await db.query(`INSERT INTO public.module_ct_cabinet_leads (external_id, lead_created_at, first_name) VALUES ('S1', canon.business_today() + time '01:00', 'Ana')`);
  t.is((await runCli(['reconcile'], { DATABASE_URL: db.url })).code, 0);
  await db.query(`INSERT INTO canon.ingestion_runs (job_name, status, source_tables, started_at, completed_at, trigger)
                  VALUES ('import_cabinet_leads', 'COMPLETED', '["module_ct_cabinet_leads"]', now(), now() + interval '2 seconds', 'cli')`);
  t.is((await runCli(['alerts'], { DATABASE_URL: db.url })).code, 1); // recorded: firing since then
  const r = await runCli(['status'], { DATABASE_URL: db.url });
  t.is(r.code, 0, r.stderr);
  const lines = r.stdout.split('\n');
  t.is(lines[0], 'Times in Asia/Tokyo (the business time zone).');
  const expected = await db.query<{ id: string; local: string }>(
    `SELECT id::text, to_char(started_at AT TIME ZONE 'Asia/Tokyo', 'YYYY-MM-DD HH24:MI:SS') AS local FROM canon.ingestion_runs ORDER BY created_at DESC`);
  t.regex(r.stdout, new RegExp(`\\n  #${expected[0]!.id} +import +COMPLETED +${expected[0]!.local} +cli +2\\.0 s`));
  t.regex(r.stdout, new RegExp(`\\n  #${expected[1]!.id} +reconcile +COMPLETED +${expected[1]!.local} +cli `));
  t.notRegex(r.stdout, /\d\dZ\b|UTC/, 'no other zone anywhere');
  t.regex(r.stdout, /\(firing since \d{4}-\d\d-\d\d \d\d:\d\d Asia\/Tokyo\)/);
  const json = JSON.parse((await runCli(['status', '--json'], { DATABASE_URL: db.url })).stdout) as { timezone: string; runs: { job_name: string }[] };
  t.is(json.timezone, 'Asia/Tokyo');
  t.deepEqual(json.runs.map((x) => x.job_name), ['import_cabinet_leads', 'reconcile_cabinet_leads_pipeline']);
});
