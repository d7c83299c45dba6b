// `cabinet-leads alerts` as cron or a monitoring probe runs it, a real process: exit 0 when
// no alert fires, 1 when some fire (in plain words, or --json), 2 on any error; and
// `cabinet-leads status` showing the same alerts and the limbo change since the previous snapshot.
import test from 'ava';
import { errorLine, runCli } from '../helpers/cli.js';
import { createTestDb, type TestDb } from '../helpers/db.js';

async function db(t: { teardown(fn: () => Promise<void>): void }, label: string): Promise<TestDb> {
  const d = await createTestDb(label);
  t.teardown(() => d.drop());
  return d;
}

async function completedRun(d: TestDb, ago = '5 minutes'): Promise<void> {
  await d.query(
    `INSERT INTO canon.ingestion_runs (job_name, status, source_tables, started_at, created_at, completed_at)
     VALUES ('reconcile_cabinet_leads_pipeline', 'COMPLETED', '["module_ct_cabinet_leads"]',
             now() - $1::interval, now() - $1::interval, now() - $1::interval)`,
    [ago],
  );
}

test('exits 0 and says so when no alert fires', async (t) => {
  const d = await db(t, 'cli_alerts_none');
  await completedRun(d);
  const r = await runCli(['alerts'], { DATABASE_URL: d.url });
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, 'No alert fires.\n');
  const json = await runCli(['alerts', '--json'], { DATABASE_URL: d.url });
  t.is(json.code, 0, json.stderr);
  t.like(JSON.parse(json.stdout), { firing: 0, new: 0, alerts: [] });
});

test('exits 1 and prints each firing alert in plain words; a second check shows it persisting', async (t) => {
  const d = await db(t, 'cli_alerts_some');
  await completedRun(d, '3 hours');
  await d.query(
    `INSERT INTO canon.ingestion_runs (job_name, status, source_tables, started_at, created_at, completed_at, error_message)
     VALUES ('reconcile_cabinet_leads_pipeline', 'FAILED', '["module_ct_cabinet_leads"]', now(), now(), now(),
             'source contract violated: column public.drivers.car_number is missing')`,
  );
  const r = await runCli(['alerts'], { DATABASE_URL: d.url });
  t.is(r.code, 1, r.stderr);
  const lines = r.stdout.trimEnd().split('\n');
  t.is(lines[0], '2 alerts firing:');
  t.regex(lines[1]!, /^ {2}CRITICAL LAST_COMPLETED_RUN_STALE: The last COMPLETED run \(#\d+\) finished 3(\.\d+)? hours ago, .* \(new\)$/);
  t.regex(lines[2]!, /^ {2}CRITICAL LAST_RUN_FAILED: The last run \(#\d+, finished .*\) FAILED: source contract violated: column public\.drivers\.car_number is missing\. .*\(new\)$/);
  t.false(r.stderr.includes('error'), 'alerts are results, not errors');

  const again = await runCli(['alerts', '--json'], { DATABASE_URL: d.url });
  t.is(again.code, 1);
  const out = JSON.parse(again.stdout) as { firing: number; new: number; alerts: Record<string, unknown>[] };
  t.is(out.firing, 2);
  t.is(out.new, 0);
  t.like(out.alerts[1], { rule_code: 'LAST_RUN_FAILED', metric: 'LAST_RUN_FAILED', threshold: 1, current_value: 1, previous_value: null, is_new: false });
  t.true(typeof out.alerts[1]!['message'] === 'string' && typeof out.alerts[1]!['first_seen_at'] === 'string');
  const [state] = await d.query<{ n: number; times: number }>(`SELECT count(*)::int AS n, max(times_seen) AS times FROM ops.alerts`);
  t.deepEqual(state, { n: 2, times: 2 });
});

test('exits 2 with a one-line message when the check itself fails', async (t) => {
  const d = await db(t, 'cli_alerts_broken');
  await d.query(`DROP TABLE ops.alert_rules CASCADE`);
  const r = await runCli(['alerts'], { DATABASE_URL: d.url });
  t.is(r.code, 2);
  t.regex(errorLine(r), /^cabinet-leads: error: alert check failed: .*alert_rules/);
  t.is(r.stdout, '');
});

test('exits 2 when the database is unreachable or a flag is wrong, never 1', async (t) => {
  const down = await runCli(['alerts'], { DATABASE_URL: 'postgres://someone:s3cret@127.0.0.1:1/nowhere' });
  t.is(down.code, 2);
  t.regex(errorLine(down), /database unreachable at 127\.0\.0\.1:1\/nowhere/);
  t.false(down.stderr.includes('s3cret'));
  const bad = await runCli(['alerts', '--jsn']);
  t.is(bad.code, 2);
  t.regex(errorLine(bad), /Unknown option '--jsn'/);
  const help = await runCli(['alerts', '--help']);
  t.is(help.code, 0);
  t.regex(help.stdout, /^Usage: cabinet-leads alerts/);
});

test('status shows the limbo counts with the change since the previous snapshot and the firing alerts, recording nothing', async (t) => {
  const d = await db(t, 'cli_status_alerts');
  await runCli(['reconcile'], { DATABASE_URL: d.url });
  await d.query(
    `INSERT INTO public.module_ct_cabinet_leads (external_id, lead_created_at, first_name)
     SELECT 'ST-' || g, canon.business_today() + time '10:00', 'Nadie' FROM generate_series(1, 3) g`,
  );
  const second = await runCli(['reconcile'], { DATABASE_URL: d.url });
  t.is(second.code, 0, second.stderr);
  await d.query(`UPDATE ops.alert_rules SET threshold = 2 WHERE rule_code = 'NO_IDENTITY_ABOVE'`);
  await d.query(`UPDATE ops.alert_rules SET enabled = false WHERE rule_code = 'IDENTITY_SHARE_BELOW'`);
  const r = await runCli(['status'], { DATABASE_URL: d.url });
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /Limbo \(leads per stage now; change since the snapshot of run #\d+, /);
  t.regex(r.stdout, /\n {2}NO_IDENTITY +3 +\+3\n/);
  t.regex(r.stdout, /Alerts: 1 firing\n {2}WARNING NO_IDENTITY_ABOVE: Leads in NO_IDENTITY \(no person matched\): 3, above the threshold of 2/);
  const json = JSON.parse((await runCli(['status', '--json'], { DATABASE_URL: d.url })).stdout) as {
    limbo: { limbo_stage: string; count: number; change: number | null }[];
    alerts: { rule_code: string }[];
  };
  t.deepEqual(json.limbo.find((l) => l.limbo_stage === 'NO_IDENTITY'), { limbo_stage: 'NO_IDENTITY', count: 3, previous: 0, change: 3 });
  t.deepEqual(json.alerts.map((a) => a.rule_code), ['NO_IDENTITY_ABOVE']);
  t.deepEqual(await d.query(`SELECT id FROM ops.alerts WHERE rule_code = 'NO_IDENTITY_ABOVE'`), [], 'status records nothing');
});
