// The one-shot CLI as cron runs it: a real process, its exit code and its messages.
import net from 'node:net';
import test from 'ava';
import { createTestDb, type TestDb } from '../helpers/db.js';
import { errorLine, runCli } from '../helpers/cli.js';

let db: TestDb;
test.before(async () => {
  db = await createTestDb('cli');
});
test.after.always(() => db.drop());

test.serial('reconcile exits 0 and leaves a COMPLETED run that names module_ct_cabinet_leads', async (t) => {
  const r = await runCli(['reconcile', '--days-back', '30', '--limit', '2000'], { DATABASE_URL: db.url });
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^run \d+ COMPLETED/);
  const rows = await db.query<{ status: string; trigger: string; client_pid: number }>(
    `SELECT status, trigger, client_pid FROM canon.ingestion_runs
     WHERE source_tables::text LIKE '%module_ct_cabinet_leads%' ORDER BY created_at DESC LIMIT 1`,
  );
  t.is(rows[0]?.status, 'COMPLETED');
  t.is(rows[0]?.trigger, 'cli');
  t.true(Number(rows[0]?.client_pid) > 0);
});

test.serial('--json prints the run row; logs go to stderr as JSON lines', async (t) => {
  const r = await runCli(['reconcile', '--dry-run', '--json'], { DATABASE_URL: db.url });
  t.is(r.code, 0, r.stderr);
  const run = JSON.parse(r.stdout) as { status: string; dry_run: boolean };
  t.is(run.status, 'COMPLETED');
  t.true(run.dry_run);
  const events = r.stderr.trim().split('\n').map((l) => JSON.parse(l) as { msg: string; run_id?: number });
  t.true(events.some((e) => e.msg === 'pipeline run completed' && typeof e.run_id === 'number'));
});

for (const [flags, pattern] of [
  [['--limit', '-1'], /invalid --limit -1/],
  [['--days-back', 'abc'], /invalid --days-back "abc"/],
  [['--limit', '10x'], /invalid --limit "10x"/],
  [['--bogus'], /Unknown option '--bogus'/],
] as const) {
  test(`reconcile ${flags.join(' ')} exits 2 with a one-line message naming the value`, async (t) => {
    const r = await runCli(['reconcile', ...flags], { DATABASE_URL: db.url });
    t.is(r.code, 2);
    t.regex(errorLine(r), pattern);
    t.is(r.stdout, '');
  });
}

test('an unknown command exits 2', async (t) => {
  const r = await runCli(['reconcil'], { DATABASE_URL: db.url });
  t.is(r.code, 2);
  t.regex(errorLine(r), /unknown command "reconcil"/);
});

test('--help of every command exits 0 and describes its options', async (t) => {
  for (const cmd of ['migrate', 'reconcile', 'worker', 'status', 'review', 'explain', 'alerts', 'report', 'doctor', 'import-leads', 'resolve-lead', 'ignore-lead', 'unlink-lead', 'demo']) {
    const r = await runCli([cmd, '--help']);
    t.is(r.code, 0, cmd);
    t.regex(r.stdout, new RegExp(`^Usage: cabinet-leads ${cmd}`), cmd);
  }
  const top = await runCli(['--help']);
  t.is(top.code, 0);
  t.regex(top.stdout, /Commands:/);
});

test('a refused connection exits 2 with the server named and no password', async (t) => {
  const r = await runCli(['reconcile'], { DATABASE_URL: 'postgres://someone:s3cret@127.0.0.1:1/nowhere' });
  t.is(r.code, 2);
  t.regex(errorLine(r), /database unreachable at 127\.0\.0\.1:1\/nowhere/);
  t.false(r.stderr.includes('s3cret'));
});

test('a server that never answers fails within 15 seconds with exit 2', async (t) => {
  const sockets: net.Socket[] = [];
  const silent = net.createServer((s) => sockets.push(s)); // accepts, never speaks
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  const port = (silent.address() as net.AddressInfo).port;
  try {
    // The default connect timeout (5 s, see test/config.test.ts) plus start-up is well under
    // 15 s on a quiet machine; 2 s here keeps the margin on a loaded CI machine.
    const r = await runCli(['reconcile'], { DATABASE_URL: `postgres://postgres@127.0.0.1:${port}/x`, DATABASE_CONNECT_TIMEOUT: '2' }, 30_000);
    t.is(r.code, 2);
    t.regex(errorLine(r), /database unreachable/);
    t.true(r.ms < 15_000, `took ${r.ms} ms`);
  } finally {
    sockets.forEach((s) => s.destroy());
    silent.close();
  }
});

test('a bad environment value exits 2 naming it', async (t) => {
  const r = await runCli(['reconcile'], { DATABASE_URL: db.url, LOG_LEVEL: 'loud' });
  t.is(r.code, 2);
  t.regex(errorLine(r), /invalid LOG_LEVEL="loud"/);
});

test.serial('a failed run exits 1 and is logged FAILED', async (t) => {
  const r = await runCli(['reconcile'], { DATABASE_URL: db.url, PGOPTIONS: '-c cabinet.failpoint=after_claims' });
  t.is(r.code, 1, r.stderr);
  t.regex(errorLine(r), /run \d+ failed: failpoint "after_claims"/);
  const [run] = await db.query<{ status: string }>(`SELECT status FROM canon.ingestion_runs ORDER BY id DESC LIMIT 1`);
  t.is(run?.status, 'FAILED');
});

test.serial('a violated source contract exits 2 naming the column', async (t) => {
  const other = await createTestDb('cli_contract');
  try {
    await other.query(`ALTER TABLE public.drivers DROP COLUMN car_number`);
    const r = await runCli(['reconcile'], { DATABASE_URL: other.url });
    t.is(r.code, 2);
    t.regex(errorLine(r), /source contract violated: column public\.drivers\.car_number is missing/);
  } finally {
    await other.drop();
  }
});

test.serial('status prints the last runs', async (t) => {
  const r = await runCli(['status', '--json'], { DATABASE_URL: db.url });
  t.is(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { runs: { status: string }[] };
  t.true(out.runs.length >= 2);
  t.true(out.runs.every((x) => ['COMPLETED', 'FAILED', 'SKIPPED'].includes(x.status)));
});

test('an unknown time zone is refused where it is written; one stored behind the trigger\'s back fails every run with a FAILED row naming it, and doctor flags it', async (t) => {
  const other = await createTestDb('cli_timezone');
  try {
    await t.throwsAsync(other.query(`UPDATE canon.settings SET value = 'America/Lim' WHERE key = 'business_timezone'`), {
      code: '22023',
      message: /^invalid setting business_timezone = 'America\/Lim': unknown time zone/,
    });
    const c = await other.connect();
    await c.query(`SET session_replication_role = replica; UPDATE canon.settings SET value = 'America/Lim' WHERE key = 'business_timezone'`);
    const r = await runCli(['reconcile'], { DATABASE_URL: other.url });
    t.is(r.code, 1, r.stderr);
    t.regex(errorLine(r), /^cabinet-leads: error: run \d+ failed: time zone "America\/Lim" not recognized$/);
    const runs = await other.query<{ status: string; error_sqlstate: string; completed: boolean; today: string | null }>(
      `SELECT status, error_sqlstate, completed_at IS NOT NULL AS completed, params->>'business_today' AS today FROM canon.ingestion_runs`,
    );
    t.deepEqual(runs, [{ status: 'FAILED', error_sqlstate: '22023', completed: true, today: null }]);
    const doctor = await runCli(['doctor'], { DATABASE_URL: other.url });
    t.is(doctor.code, 1, doctor.stderr);
    t.regex(doctor.stdout, /^FAIL SETTING_INVALID +1 violation\(s\), e\.g\. business_timezone = 'America\/Lim': unknown time zone/m);
  } finally {
    await other.drop();
  }
});
