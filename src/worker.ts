// The scheduled worker: graphile-worker 0.17 in library mode with our task list and
// the crontab file, logging through pino. Several workers on several hosts may run
// against one database: graphile-worker schedules each cron slot once, the serial
// queue and the job key keep runs from piling up, and the SQL job lock forbids overlap.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Logger as WorkerLogger, parseCrontab, run, type LogLevel, type Runner } from 'graphile-worker';
import { reconcileCabinetLeadsPipeline } from '../tasks/reconcile_cabinet_leads_pipeline.js';
import { PROJECT_ROOT } from './config.js';
import type { Logger } from './logger.js';

export const DEFAULT_CRONTAB = path.join(PROJECT_ROOT, 'crontab');

/** graphile-worker's logger, writing through pino with its scope as fields. */
export function workerLogger(log: Logger): WorkerLogger {
  return new WorkerLogger((scope) => {
    const child = log.child({ component: 'graphile-worker', ...scope });
    return (level: LogLevel, message: string, meta?: Record<string, unknown>) => {
      const fields = meta ?? {};
      switch (level) {
        case 'error':
          child.error(fields, message);
          break;
        case 'warning':
          child.warn(fields, message);
          break;
        case 'info':
          child.info(fields, message);
          break;
        default:
          child.debug(fields, message);
      }
    };
  });
}

export interface WorkerOptions {
  connectionString: string;
  crontabFile?: string;
  /** Milliseconds between polls for jobs (LISTEN/NOTIFY makes most pickups instant). */
  pollInterval?: number;
}

export async function startWorker(opts: WorkerOptions, log: Logger): Promise<Runner> {
  const crontabFile = opts.crontabFile ?? DEFAULT_CRONTAB;
  let crontab: string;
  try {
    crontab = readFileSync(crontabFile, 'utf8');
  } catch (err) {
    throw new Error(`cannot read crontab file ${crontabFile}: ${(err as Error).message}`);
  }
  const parsedCronItems = parseCrontab(crontab);
  const runner = await run({
    connectionString: opts.connectionString,
    concurrency: 1,
    noHandleSignals: true,
    pollInterval: opts.pollInterval ?? 2000,
    taskList: { reconcile_cabinet_leads_pipeline: reconcileCabinetLeadsPipeline(log) },
    parsedCronItems,
    logger: workerLogger(log),
  });
  log.info({ crontab: crontabFile, cron_items: parsedCronItems.map((c) => c.identifier) }, 'worker started');
  return runner;
}
