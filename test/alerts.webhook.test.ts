// The alert webhook and the worker's check after each run, against a real HTTP server on
// 127.0.0.1 started here: JSON payload, only when an alert is new, bounded retries and
// timeouts, and never a failed run because of alerts.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import test from 'ava';
import type { JobHelpers } from 'graphile-worker';
import { pino } from 'pino';
import { reconcileCabinetLeadsPipeline } from '../tasks/reconcile_cabinet_leads_pipeline.js';
import { type WebhookPayload, checkAlertsAfterRun, postWebhook } from '../src/alerts.js';
import type { Logger } from '../src/logger.js';
import { createTestDb, type TestDb } from './helpers/db.js';

interface Received {
  method: string;
  contentType: string | undefined;
  body: string;
}

/** An HTTP server on 127.0.0.1 that answers each request with the next status of `statuses` (the last one repeats); 0 = never answer. */
async function server(t: { teardown(fn: () => void): void }, statuses: number[] = [200]) {
  const received: Received[] = [];
  const hanging: http.ServerResponse[] = [];
  const srv = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString('utf8')));
    req.on('end', () => {
      received.push({ method: req.method ?? '', contentType: req.headers['content-type'], body });
      const status = statuses[Math.min(received.length - 1, statuses.length - 1)]!;
      if (status === 0) hanging.push(res);
      else res.writeHead(status, { 'content-type': 'text/plain' }).end('ok');
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const r of hanging) r.destroy();
    srv.closeAllConnections();
    srv.close();
  });
  return { url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}/hooks/alerts?token=secret`, received };
}

/** A logger whose lines are kept in memory, to assert on what was logged. */
function memoryLogger(): { log: Logger; lines: () => { level: number; msg: string; [k: string]: unknown }[] } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk.toString('utf8'));
      cb();
    },
  });
  const log = pino({ level: 'debug' }, stream);
  return {
    log,
    lines: () =>
      chunks
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { level: number; msg: string }),
  };
}

let db: TestDb;
test.before(async () => {
  db = await createTestDb('webhook');
});
test.after.always(() => db.drop());

/** A database of its own where no run ever happened: LAST_COMPLETED_RUN_STALE fires, new. */
async function staleDb(t: { teardown(fn: () => Promise<void>): void }): Promise<TestDb> {
  const d = await createTestDb('webhook_stale');
  t.teardown(() => d.drop());
  return d;
}

test('a new alert is logged at warn and posted as JSON with every firing alert', async (t) => {
  const d = await staleDb(t);
  const hook = await server(t);
  const { log, lines } = memoryLogger();
  const result = await checkAlertsAfterRun(d.pool, { id: 41, status: 'COMPLETED' }, { webhookUrl: hook.url }, log);
  t.deepEqual(result.alerts.map((a) => a.rule_code), ['LAST_COMPLETED_RUN_STALE']);
  t.deepEqual(result.webhook, { delivered: true, attempts: 1, status: 200 });
  t.is(hook.received.length, 1);
  t.is(hook.received[0]!.method, 'POST');
  t.is(hook.received[0]!.contentType, 'application/json');
  const payload = JSON.parse(hook.received[0]!.body) as WebhookPayload;
  t.like(payload, { source: 'cabinet-leads', event: 'limbo_alerts', run_id: 41, run_status: 'COMPLETED', firing: 1, new: 1 });
  t.like(payload.alerts[0], {
    rule_code: 'LAST_COMPLETED_RUN_STALE',
    severity: 'CRITICAL',
    metric: 'HOURS_SINCE_LAST_COMPLETED_RUN',
    threshold: 2,
    current_value: null,
    is_new: true,
  });
  t.regex(payload.alerts[0]!.message, /No COMPLETED run yet/);
  const warn = lines().filter((l) => l.level === 40 && l.msg === 'limbo alert firing');
  t.is(warn.length, 1);
  t.like(warn[0], { rule_code: 'LAST_COMPLETED_RUN_STALE', run_id: 41, threshold: 2 });
  t.false(JSON.stringify(lines()).includes('secret'), 'the URL query (a token) is never logged');
});

test('a persisting alert is not posted again; it is still logged at warn', async (t) => {
  const d = await staleDb(t);
  const hook = await server(t);
  const first = memoryLogger();
  await checkAlertsAfterRun(d.pool, null, { webhookUrl: hook.url }, first.log);
  const second = memoryLogger();
  const again = await checkAlertsAfterRun(d.pool, null, { webhookUrl: hook.url }, second.log);
  t.is(again.alerts.length, 1);
  t.false(again.alerts[0]!.is_new);
  t.is(again.webhook, null);
  t.is(hook.received.length, 1);
  t.is(second.lines().filter((l) => l.msg === 'limbo alert firing').length, 1);
});

test('an alert the webhook did not accept is sent again after the next run, then never again', async (t) => {
  const d = await staleDb(t);
  const down = await server(t, [500]);
  const { log } = memoryLogger();
  const first = await checkAlertsAfterRun(d.pool, null, { webhookUrl: down.url, webhook: { attempts: 1 } }, log);
  t.false(first.webhook?.delivered);
  const up = await server(t);
  const second = await checkAlertsAfterRun(d.pool, null, { webhookUrl: up.url }, log);
  t.true(second.webhook?.delivered);
  t.false(second.alerts[0]!.is_new, 'the alert persists: it is the same incident');
  t.is((JSON.parse(up.received[0]!.body) as WebhookPayload).new, 1);
  const third = await checkAlertsAfterRun(d.pool, null, { webhookUrl: up.url }, log);
  t.is(third.webhook, null);
  t.is(up.received.length, 1);
  const [row] = await d.query<{ notified: boolean }>(`SELECT notified_at IS NOT NULL AS notified FROM ops.alerts`);
  t.true(row!.notified);
});

test('5xx answers are retried with backoff until delivered', async (t) => {
  const hook = await server(t, [503, 500, 200]);
  const { log } = memoryLogger();
  const r = await postWebhook(hook.url, { hello: 1 }, log, { attempts: 3, backoffMs: 10, timeoutMs: 2000 });
  t.deepEqual(r, { delivered: true, attempts: 3, status: 200 });
  t.is(hook.received.length, 3);
  t.deepEqual(hook.received.map((x) => JSON.parse(x.body)), [{ hello: 1 }, { hello: 1 }, { hello: 1 }]);
});

test('a 4xx answer is final: no retry', async (t) => {
  const hook = await server(t, [404]);
  const { log, lines } = memoryLogger();
  const r = await postWebhook(hook.url, {}, log, { attempts: 3, backoffMs: 10 });
  t.deepEqual(r, { delivered: false, attempts: 1, status: 404, error: 'HTTP 404' });
  t.is(hook.received.length, 1);
  t.true(lines().some((l) => l.level === 50 && l.msg === 'alert webhook not delivered'));
});

test('a server that never answers times out; attempts are bounded and nothing throws', async (t) => {
  const hook = await server(t, [0]);
  const { log } = memoryLogger();
  const started = Date.now();
  const r = await postWebhook(hook.url, {}, log, { attempts: 2, backoffMs: 10, timeoutMs: 500 });
  t.false(r.delivered);
  t.is(r.attempts, 2);
  t.regex(r.error ?? '', /timed out after 500 ms/);
  t.true(hook.received.length >= 1);
  t.true(Date.now() - started < 3000);
});

test('a refused connection is reported, not thrown', async (t) => {
  const closed = http.createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const port = (closed.address() as AddressInfo).port;
  await new Promise<void>((r) => closed.close(() => r()));
  const { log } = memoryLogger();
  const r = await postWebhook(`http://127.0.0.1:${port}/`, {}, log, { attempts: 2, backoffMs: 10 });
  t.false(r.delivered);
  t.is(r.attempts, 2);
  t.regex(r.error ?? '', /ECONNREFUSED|connect/i);
});

test('the check after a run never throws, even when the database refuses it', async (t) => {
  const d = await createTestDb('webhook_broken');
  t.teardown(() => d.drop());
  await d.query(`DROP TABLE ops.alert_rules CASCADE`);
  const { log, lines } = memoryLogger();
  const r = await checkAlertsAfterRun(d.pool, { id: 1, status: 'COMPLETED' }, { webhookUrl: 'http://127.0.0.1:9/' }, log);
  t.deepEqual(r.alerts, []);
  t.regex(r.error ?? '', /alert_rules/);
  t.true(lines().some((l) => l.level === 50 && l.msg === 'alert check failed'));
});

function fakeHelpers(d: TestDb): JobHelpers {
  return {
    job: { id: 'test-job-1', attempts: 1 },
    query: (text: string, values?: unknown[]) => d.pool.query(text, values),
    withPgClient: async <T>(fn: (c: import('pg').PoolClient) => Promise<T>): Promise<T> => {
      const c = await d.pool.connect();
      try {
        return await fn(c);
      } finally {
        c.release();
      }
    },
  } as unknown as JobHelpers;
}

test('the worker task completes the run, logs the alerts and survives a webhook that never answers', async (t) => {
  const hook = await server(t, [0]);
  const { log, lines } = memoryLogger();
  // A FAILED run recorded before: this run's check resolves it, the stale rule never fired.
  await db.query(
    `INSERT INTO canon.ingestion_runs (job_name, status, source_tables, started_at, created_at, completed_at, error_message)
     VALUES ('reconcile_cabinet_leads_pipeline', 'FAILED', '["module_ct_cabinet_leads"]', now(), now(), now(), 'boom')`,
  );
  await db.query(`UPDATE ops.alert_rules SET threshold = -1, comparison = '>' WHERE rule_code = 'NO_IDENTITY_ABOVE'`);
  const task = reconcileCabinetLeadsPipeline(log, { alertWebhookUrl: hook.url, alertWebhook: { timeoutMs: 300, attempts: 2, backoffMs: 10 } });
  const started = Date.now();
  await t.notThrowsAsync(Promise.resolve(task({ days_back: 30, limit: 10 }, fakeHelpers(db))));
  t.true(Date.now() - started < 30_000);
  const [run] = await db.query<{ status: string; trigger: string }>(
    `SELECT status, trigger FROM canon.ingestion_runs ORDER BY id DESC LIMIT 1`,
  );
  t.deepEqual(run, { status: 'COMPLETED', trigger: 'worker' });
  const firing = lines().filter((l) => l.msg === 'limbo alert firing');
  t.deepEqual(firing.map((l) => l['rule_code']), ['NO_IDENTITY_ABOVE']);
  t.true(firing.every((l) => l.level === 40 && l['job_id'] === 'test-job-1'));
  t.true(hook.received.length >= 1, 'the webhook was tried');
  t.true(lines().some((l) => l.msg === 'alert webhook not delivered'));
});

test('the worker task checks alerts by the CLI\'s rule: not after a dry run, nor after a run SKIPPED by the lock', async (t) => {
  const own = await createTestDb('webhook_rule');
  t.teardown(() => own.drop());
  const hook = await server(t, [200, 200, 200]);
  const { log, lines } = memoryLogger();
  await own.query(`UPDATE ops.alert_rules SET threshold = -1, comparison = '>' WHERE rule_code = 'NO_IDENTITY_ABOVE'`);
  const task = reconcileCabinetLeadsPipeline(log, { alertWebhookUrl: hook.url, alertWebhook: { timeoutMs: 300, attempts: 1, backoffMs: 10 } });
  await task({ days_back: 30, limit: 10, dry_run: true }, fakeHelpers(own));
  const holder = await own.connect();
  try {
    await holder.query(`BEGIN`);
    await holder.query(`SELECT canon.take_job_lock()`);
    await task({ days_back: 30, limit: 10 }, fakeHelpers(own));
  } finally {
    await holder.query(`ROLLBACK`);
    await holder.end();
  }
  const runs = await own.query<{ status: string; dry_run: boolean }>(`SELECT status, dry_run FROM canon.ingestion_runs ORDER BY id`);
  t.deepEqual(runs, [{ status: 'COMPLETED', dry_run: true }, { status: 'SKIPPED', dry_run: false }]);
  t.deepEqual(lines().filter((l) => l.msg === 'limbo alert firing'), []);
  t.is(hook.received.length, 0);
  t.deepEqual(await own.query(`SELECT rule_code FROM ops.alerts`), []);
});
