// graphile-worker task: adapts the job payload to runPipeline, the same code path as
// the CLI. A FAILED run throws so that graphile-worker retries it (bounded attempts).
import type { Task } from 'graphile-worker';
import type { Logger } from '../src/logger.js';
import { parsePipelinePayload } from '../src/payload.js';
import { runPipeline } from '../src/pipeline.js';

export function reconcileCabinetLeadsPipeline(log: Logger): Task {
  return async (payload, helpers) => {
    const opts = parsePipelinePayload(payload);
    const jobLog = log.child({ job_id: helpers.job.id, attempt: helpers.job.attempts });
    const run = await helpers.withPgClient((client) =>
      runPipeline(client, { ...opts, trigger: 'worker', workerJobId: helpers.job.id }, jobLog),
    );
    if (run.status === 'FAILED') throw new Error(`run ${run.id} FAILED: ${run.error_message ?? 'unknown error'}`);
  };
}
