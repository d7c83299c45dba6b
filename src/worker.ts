// The scheduled worker: graphile-worker 0.17 in library mode with our task list and
// the crontab file, logging through pino. Several workers on several hosts may run
// against one database: graphile-worker schedules each cron slot once, the serial
// queue and the job key keep runs from piling up, and the SQL job lock forbids overlap.
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Logger as WorkerLogger, parseCrontab, run, type LogLevel, type ParsedCronItem, type Runner, type Task, type WorkerEvents } from 'graphile-worker';
import { PROJECT_ROOT } from './config.js';
import { openPool } from './db.js';
import { ConfigError } from './errors.js';
import type { Logger } from './logger.js';
import { JobOutcomeRecorder } from './worker-outcomes.js';

export const DEFAULT_CRONTAB = path.join(PROJECT_ROOT, 'crontab');

/** A task of the worker (tasks/index.ts lists them): its payload check, for the crontab, and the task. */
export interface WorkerTask {
  /** Throws an Error naming what is wrong with a payload. */
  checkPayload(payload: unknown): unknown;
  make(log: Logger): Task;
}
export type WorkerTasks = Record<string, WorkerTask>;

/**
 * The crontab file, checked line by line before anything starts: a syntax error, an
 * unknown task, a repeated identifier or a bad payload is a ConfigError (exit code 2)
 * naming the file and the line.
 */
export function loadCrontab(tasks: WorkerTasks, file: string = DEFAULT_CRONTAB): ParsedCronItem[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read crontab file ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  const items: ParsedCronItem[] = [];
  const lineOf = new Map<string, number>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const n = i + 1;
    const bad = (reason: string) => new ConfigError(`invalid crontab ${file} line ${n}: ${reason}`);
    let item: ParsedCronItem;
    try {
      // One line at a time, so graphile-worker's "line 1" is ours to replace by the real one.
      [item] = parseCrontab(line) as [ParsedCronItem];
    } catch (err) {
      const reason = (err as Error).message
        .replace(/^Could not process line '1' of crontab: /, 'expected "<minute> <hour> <day> <month> <weekday> <task> [?options] [payload]", got ')
        .replace(/ (in|on) line 1 of crontab/g, '');
      throw bad(reason);
    }
    // A line naming a task this worker does not run would schedule jobs nobody runs.
    const task = tasks[item.task];
    if (!task) throw bad(`unknown task "${item.task}" (tasks: ${Object.keys(tasks).join(', ')})`);
    const first = lineOf.get(item.identifier);
    if (first !== undefined) throw bad(`identifier "${item.identifier}" is already used on line ${first}; give each line its own ?id=...`);
    lineOf.set(item.identifier, n);
    try {
      task.checkPayload(item.payload);
    } catch (err) {
      throw bad((err as Error).message);
    }
    items.push(item);
  });
  return items;
}

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

/**
 * When the crontab next fires after `from` (graphile-worker reads the crontab in UTC,
 * minute by minute), with the line's identifier; undefined when nothing fires within a year.
 */
export function nextRunDue(items: ParsedCronItem[], from: Date = new Date()): { at: Date; identifier: string } | undefined {
  const t = new Date(from.getTime());
  t.setUTCSeconds(0, 0);
  for (let i = 0; i < 366 * 24 * 60; i++) {
    t.setUTCMinutes(t.getUTCMinutes() + 1);
    const digest = { min: t.getUTCMinutes(), hour: t.getUTCHours(), date: t.getUTCDate(), month: t.getUTCMonth() + 1, dow: t.getUTCDay() };
    const item = items.find((c) => c.match(digest));
    if (item) return { at: new Date(t.getTime()), identifier: item.identifier };
  }
  return undefined;
}

/** Logs when the crontab runs next: at start and after each job, so a log reader knows what to expect. */
function logNextRun(log: Logger, items: ParsedCronItem[]): void {
  if (items.length === 0) {
    log.info({ cron_items: [] }, 'no run scheduled: the crontab has no line (runs only as jobs are added)');
    return;
  }
  const next = nextRunDue(items);
  if (next) log.info({ next_run_at: next.at.toISOString(), in_s: Math.round((next.at.getTime() - Date.now()) / 1000), cron_item: next.identifier }, 'next run due');
  else log.warn({ cron_items: items.map((c) => c.identifier) }, 'no run due within a year: check the crontab file');
}

export interface WorkerOptions {
  connectionString: string;
  tasks: WorkerTasks;
  crontabFile?: string;
  /** The crontab already read by loadCrontab (else crontabFile is read). */
  cronItems?: ParsedCronItem[];
  /** Milliseconds between polls for jobs (LISTEN/NOTIFY makes most pickups instant). */
  pollInterval?: number;
}

export interface CabinetWorker {
  runner: Runner;
  /**
   * Call once the runner has stopped: one last try at recording the outcome of jobs whose
   * bookkeeping is still pending (see JobOutcomeRecorder; logs what remains locked), then
   * every connection of the worker is closed, so that the server can stop under nobody.
   */
  close(): Promise<void>;
}

export async function startWorker(opts: WorkerOptions, log: Logger): Promise<CabinetWorker> {
  const crontabFile = opts.crontabFile ?? DEFAULT_CRONTAB;
  const parsedCronItems = opts.cronItems ?? loadCrontab(opts.tasks, crontabFile);
  const events: WorkerEvents = new EventEmitter();
  const outcomes = new JobOutcomeRecorder(opts.connectionString, log);
  // Emitted right after graphile-worker fired (not awaited) its failJob/completeJob.
  events.on('job:complete', ({ worker, job, error }) => outcomes.watch(worker.workerPool.id, job, error));
  events.on('pool:listen:success', () => outcomes.retryNow());
  events.on('job:complete', () => logNextRun(log, parsedCronItems));
  // Our pool, not one graphile-worker makes from the connection string: graphile-worker
  // 0.17 ends its own pool without awaiting it (dist/lib.js makeNewPool) and removes its
  // error handler first, so a server stopping right after the worker crashed the process
  // with an unhandled 'error' event. This one is closed (awaited, every connection) by close().
  const { pool, close: closePool } = openPool({ connectionString: opts.connectionString, max: 10, application_name: 'cabinet-leads-worker' }, log, 'graphile-worker');
  let runner: Runner;
  try {
    runner = await run({
      events,
      pgPool: pool,
      concurrency: 1,
      noHandleSignals: true,
      pollInterval: opts.pollInterval ?? 2000,
      taskList: Object.fromEntries(Object.entries(opts.tasks).map(([name, t]) => [name, t.make(log)])),
      parsedCronItems,
      logger: workerLogger(log),
    });
  } catch (err) {
    await closePool();
    throw err;
  }
  logNextRun(log, parsedCronItems);
  log.info({ crontab: crontabFile, cron_items: parsedCronItems.map((c) => c.identifier) }, 'worker started');
  return {
    runner,
    close: async () => {
      await outcomes.flush();
      await closePool();
    },
  };
}
