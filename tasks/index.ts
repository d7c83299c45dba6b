// The worker's tasks, by the name a crontab line gives them: each with the check of its
// payload (a bad crontab line fails the worker's start, naming the line) and the task.
import type { WorkerTasks } from '../src/worker.js';
import { parsePipelinePayload } from '../src/payload.js';
import { reconcileCabinetLeadsPipeline } from './reconcile_cabinet_leads_pipeline.js';

export const TASKS: WorkerTasks = {
  reconcile_cabinet_leads_pipeline: { checkPayload: parsePipelinePayload, make: (log) => reconcileCabinetLeadsPipeline(log) },
};
