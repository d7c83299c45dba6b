// The scheduled worker: graphile-worker 0.17 in library mode with our task list and
// the crontab file, logging through pino. Several workers on several hosts may run
// against one database: graphile-worker schedules each cron slot once, the serial
// queue and the job key keep runs from piling up, and the SQL job lock forbids overlap.
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Logger as WorkerLogger, parseCrontab, run, type LogLevel, type Runner, type WorkerEvents } from 'graphile-worker';
import pg from 'pg';
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

export interface CabinetWorker {
  runner: Runner;
  /**
   * Releases the jobs this process's workers still hold. graphile-worker 0.17 does not
   * await the query that records a failed job; when the database was down at that moment
   * the job (and its serial queue) stays locked for 4 hours. Called once the database is
   * back after such a rejection; safe because a worker of concurrency 1 whose job
   * promise settled runs nothing, and the SQL job lock forbids overlapping runs anyway.
   */
  releaseOwnLocks(): Promise<void>;
}

export async function startWorker(opts: WorkerOptions, log: Logger): Promise<CabinetWorker> {
  const crontabFile = opts.crontabFile ?? DEFAULT_CRONTAB;
  let crontab: string;
  try {
    crontab = readFileSync(crontabFile, 'utf8');
  } catch (err) {
    throw new Error(`cannot read crontab file ${crontabFile}: ${(err as Error).message}`);
  }
  const parsedCronItems = parseCrontab(crontab);
  const events: WorkerEvents = new EventEmitter();
  const workerIds = new Set<string>();
  events.on('worker:create', ({ worker }) => workerIds.add(worker.workerId));
  const runner = await run({
    events,
    connectionString: opts.connectionString,
    concurrency: 1,
    noHandleSignals: true,
    pollInterval: opts.pollInterval ?? 2000,
    taskList: { reconcile_cabinet_leads_pipeline: reconcileCabinetLeadsPipeline(log) },
    parsedCronItems,
    logger: workerLogger(log),
  });
  log.info({ crontab: crontabFile, cron_items: parsedCronItems.map((c) => c.identifier) }, 'worker started');
  const releaseOwnLocks = async () => {
    const ids = [...workerIds];
    if (ids.length === 0) return;
    const client = new pg.Client({ connectionString: opts.connectionString, connectionTimeoutMillis: 5000 });
    client.on('error', () => {});
    await client.connect();
    try {
      await client.query('SELECT graphile_worker.force_unlock_workers($1::text[])', [ids]);
    } finally {
      await client.end().catch(() => {});
    }
    log.warn({ worker_ids: ids }, 'released jobs left locked by a failed bookkeeping query');
  };
  return { runner, releaseOwnLocks };
}
