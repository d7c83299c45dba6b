// graphile-worker task: the job payload handed to reconcile(), the same path as the CLI
// (the run, then the alert check). A FAILED run throws so that graphile-worker retries it
// (bounded attempts).
import type { Task } from 'graphile-worker';
import type { WebhookOptions } from '../src/alerts.js';
import { loadConfig } from '../src/config.js';
import type { Logger } from '../src/logger.js';
import { parsePipelinePayload } from '../src/payload.js';
import { reconcile } from '../src/pipeline.js';

export function reconcileCabinetLeadsPipeline(log: Logger, opts: { alertWebhookUrl?: string; alertWebhook?: WebhookOptions } = {}): Task {
  const webhookUrl = 'alertWebhookUrl' in opts ? opts.alertWebhookUrl : loadConfig().alertWebhookUrl;
  return async (payload, helpers) => {
    const jobLog = log.child({ job_id: helpers.job.id, attempt: helpers.job.attempts });
    const run = await reconcile(
      helpers.withPgClient,
      { ...parsePipelinePayload(payload), trigger: 'worker', workerJobId: helpers.job.id },
      jobLog,
      { webhookUrl, webhook: opts.alertWebhook },
    );
    if (run.status === 'FAILED') throw new Error(`run ${run.id} FAILED: ${run.error_message ?? 'unknown error'}`);
  };
}
