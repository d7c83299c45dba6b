// No secret is ever written anywhere (issue 15, item 3): with LOG_LEVEL=trace, a webhook
// URL holding user:password@, a Slack-style token in its path and a token in its query,
// and a DATABASE_URL holding a password, the real processes (migrate, reconcile, alerts,
// status, doctor, a worker running a job, a command on an unreachable server) print no
// part of any of them on stdout or stderr, and none reaches canon.ingestion_runs or
// ops.alerts. The webhook is delivered all the same: its credentials as an
// Authorization: Basic header (fetch refuses them in a URL), its path and query as given.
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import test from 'ava';
import { runCli, type CliResult } from '../helpers/cli.js';
import { freshDb } from '../helpers/db.js';
import { emptyCrontab, seedDemo, startWorker, stopProcess, waitFor, waitForLog } from '../reliability/support.js';

interface Received {
  url: string;
  authorization: string | undefined;
}

/** A webhook receiver on 127.0.0.1: answers 503 to the first request (a retry is logged), then 200. */
async function webhookServer(t: { teardown(fn: () => void): void }): Promise<{ port: number; received: Received[] }> {
  const received: Received[] = [];
  const srv = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      received.push({ url: req.url ?? '', authorization: req.headers.authorization });
      res.statusCode = received.length === 1 ? 503 : 200;
      res.end();
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => srv.close());
  return { port: (srv.address() as AddressInfo).port, received };
}

test('at LOG_LEVEL=trace no part of a webhook or database secret reaches stdout, stderr, the run log or the alerts', async (t) => {
  const db = await freshDb(t, 'secrets');
  await seedDemo(db, { seed: 41, leads: 60, drivers: 120, tripDays: 30 });
  // An alert that fires on this data set, so that every run has one to send.
  await db.query(`UPDATE ops.alert_rules SET threshold = 0, comparison = '>', min_current_value = NULL WHERE rule_code = 'NO_IDENTITY_ABOVE'`);
  const hex = () => randomBytes(6).toString('hex');
  const secret = {
    hookUser: `hookuser${hex()}`,
    hookPassword: `hookpw${hex()}`,
    team: `T${hex()}`,
    bot: `B${hex()}`,
    token: `xoxb${hex()}`,
    query: `q${hex()}`,
    dbPassword: `dbpw${hex()}`,
  };
  const hook = await webhookServer(t);
  const path = `/services/${secret.team}/${secret.bot}/${secret.token}?token=${secret.query}`;
  const dbUrl = new URL(db.url);
  dbUrl.password = secret.dbPassword;
  const env = {
    DATABASE_URL: dbUrl.toString(),
    ALERT_WEBHOOK_URL: `http://${secret.hookUser}:${secret.hookPassword}@127.0.0.1:${hook.port}${path}`,
    LOG_LEVEL: 'trace',
    LOG_FORMAT: 'json',
  };

  const outputs: Record<string, CliResult | { stdout: string; stderr: string }> = {};
  outputs['migrate'] = await runCli(['migrate'], env);
  const reconcile = await runCli(['reconcile'], env);
  t.is(reconcile.code, 0, reconcile.stderr);
  outputs['reconcile'] = reconcile;
  outputs['alerts'] = await runCli(['alerts'], env);
  outputs['status'] = await runCli(['status', '--json'], env);
  outputs['doctor'] = await runCli(['doctor', '--json'], env);
  const unreachable = new URL(env.DATABASE_URL);
  unreachable.port = '1';
  const down = await runCli(['status'], { ...env, DATABASE_URL: unreachable.toString() });
  t.is(down.code, 2);
  outputs['unreachable'] = down;

  // The worker: its alert check after the job sends the alerts again (marked unsent here).
  await db.query(`UPDATE ops.alerts SET notified_at = NULL`);
  const worker = startWorker('worker', env.DATABASE_URL, emptyCrontab(), env);
  t.teardown(() => void stopProcess(worker));
  await waitForLog(worker, '"worker started"');
  await db.query(`SELECT graphile_worker.add_job('reconcile_cabinet_leads_pipeline', '{"days_back": 30, "limit": 2000}'::json, max_attempts => 1)`);
  await waitForLog(worker, '"alert webhook delivered"');
  t.is(await stopProcess(worker), 0);
  outputs['worker'] = { stdout: worker.stdout.join('\n'), stderr: worker.stderr.join('\n') };

  // Delivered: first a 503 (retried), then accepted, by the CLI and by the worker.
  const basic = `Basic ${Buffer.from(`${secret.hookUser}:${secret.hookPassword}`).toString('base64')}`;
  t.true(hook.received.length >= 3, JSON.stringify(hook.received));
  t.true(hook.received.every((r) => r.url === path && r.authorization === basic), JSON.stringify(hook.received));
  t.true(outputs['reconcile'].stderr.includes('"msg":"alert webhook attempt failed"'), 'the retry was logged');
  t.true(outputs['reconcile'].stderr.includes(`"webhook":"http://127.0.0.1:${hook.port}"`), 'the webhook is logged by scheme and host');

  const rows = await db.query<{ t: string }>(
    `SELECT r::text AS t FROM canon.ingestion_runs r UNION ALL SELECT a::text FROM ops.alerts a`,
  );
  t.true(rows.length >= 4);
  const everything = [...Object.entries(outputs).map(([name, o]) => [name, `${o.stdout}\n${o.stderr}`]), ...rows.map((r, i) => [`row ${i}`, r.t])];
  t.true(everything.some(([, text]) => /"level":(10|20),/.test(text!)), 'debug and trace lines were written');
  for (const [name, text] of everything) {
    for (const [part, value] of Object.entries(secret)) {
      t.false(text!.includes(value), `${part} appears in ${name}: ${text!.split('\n').find((l) => l.includes(value))}`);
    }
  }
});
