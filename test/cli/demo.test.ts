// `cabinet-leads demo` then `reconcile`, as a newcomer runs them: every demo lead is within
// the default days_back (none left in NO_IDENTITY only for its age), the data has leads a
// person must decide (AMBIGUOUS, CONFLICT, WEAK_MATCH_ONLY, SHARED_KEY), and the demo names
// the next step.
import test from 'ava';
import { runCli } from '../helpers/cli.js';
import { createTestDb } from '../helpers/db.js';

test('demo then reconcile with the defaults: every dated lead evaluated, and leads for review of each kind', async (t) => {
  t.timeout(110_000);
  const db = await createTestDb('cli_demo');
  t.teardown(() => db.drop());
  const demo = await runCli(['demo', '--leads', '1200', '--drivers', '2500'], { DATABASE_URL: db.url }, 100_000);
  t.is(demo.code, 0, demo.stderr);
  t.regex(demo.stdout, /\nnext: cabinet-leads reconcile {3}\(then: cabinet-leads status, cabinet-leads review, cabinet-leads report\)\n$/);
  const [dates] = await db.query<{ oldest: number }>(
    `SELECT max(canon.business_today() - lead_created_at::date) AS oldest FROM public.module_ct_cabinet_leads WHERE isfinite(lead_created_at)`);
  t.true(dates!.oldest < 30, `oldest lead ${dates!.oldest} days ago`);
  const run = await runCli(['reconcile'], { DATABASE_URL: db.url }, 100_000);
  t.is(run.code, 0, run.stderr);
  const [left] = await db.query<{ n: string }>(
    `SELECT count(*) AS n FROM ops.v_cabinet_leads_limbo WHERE limbo_stage = 'NO_IDENTITY' AND reason_code IS NULL`);
  t.is(left!.n, '0', 'no dated lead is left unevaluated by the first run');
  const reasons = await db.query<{ reason_code: string; n: string }>(
    `SELECT reason_code, count(*) AS n FROM canon.identity_unmatched GROUP BY 1 ORDER BY 1`);
  const codes = reasons.map((r) => r.reason_code);
  for (const code of ['AMBIGUOUS', 'CONFLICT', 'WEAK_MATCH_ONLY', 'SHARED_KEY']) t.true(codes.includes(code), `${code} in ${codes.join(', ')}`);
  const review = await runCli(['review', '--json', '--limit', '1000'], { DATABASE_URL: db.url });
  const kinds = new Set((JSON.parse(review.stdout) as { reason_code: string }[]).map((r) => r.reason_code));
  t.deepEqual([...kinds].sort(), ['AMBIGUOUS', 'CONFLICT', 'SHARED_KEY', 'WEAK_MATCH_ONLY']);
  // --trip-days beyond the default days_back: the next step says how far back to reconcile
  const older = await runCli(['demo', '--leads', '10', '--drivers', '20', '--trip-days', '60'], { DATABASE_URL: db.url });
  t.regex(older.stdout, /\nnext: cabinet-leads reconcile --days-back 60 /);
});
