// graphile-worker task: adapts the job payload to runPipeline, the same code path as
// the CLI. After every run it checks the alerts (logged at warn, posted to the optional
// ALERT_WEBHOOK_URL), which can never fail the run. A FAILED run throws so that
// graphile-worker retries it (bounded attempts).
import type { Task } from 'graphile-worker';
import { checkAlertsAfterRun, type WebhookOptions } from '../src/alerts.js';
import { loadConfig } from '../src/config.js';
import { boundedQueryable } from '../src/locks.js';
import type { Logger } from '../src/logger.js';
import { parsePipelinePayload } from '../src/payload.js';
import { runPipeline } from '../src/pipeline.js';

export function reconcileCabinetLeadsPipeline(log: Logger, opts: { alertWebhookUrl?: string; alertWebhook?: WebhookOptions } = {}): Task {
  const webhookUrl = 'alertWebhookUrl' in opts ? opts.alertWebhookUrl : loadConfig().alertWebhookUrl;
  return async (payload, helpers) => {
    const pipelineOpts = parsePipelinePayload(payload);
    const jobLog = log.child({ job_id: helpers.job.id, attempt: helpers.job.attempts });
    const run = await helpers.withPgClient((client) =>
      runPipeline(client, { ...pipelineOpts, trigger: 'worker', workerJobId: helpers.job.id }, jobLog),
    );
    // A connection borrowed per query (none is held while the webhook is posted), each
    // query's lock waits bounded like the run's: a locked table fails the check, not the job.
    await checkAlertsAfterRun(boundedQueryable(helpers.withPgClient), run, { webhookUrl, webhook: opts.alertWebhook }, jobLog).catch((err: unknown) =>
      jobLog.error({ run_id: run.id, error: String(err) }, 'alert check failed'),
    );
    if (run.status === 'FAILED') throw new Error(`run ${run.id} FAILED: ${run.error_message ?? 'unknown error'}`);
  };
}
