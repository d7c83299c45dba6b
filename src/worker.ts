// The scheduled worker: graphile-worker 0.17 in library mode with our task list and
// the crontab file, logging through pino. Several workers on several hosts may run
// against one database: graphile-worker schedules each cron slot once, the serial
// queue and the job key keep runs from piling up, and the SQL job lock forbids overlap.
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Logger as WorkerLogger, parseCrontab, run, type Job, type LogLevel, type ParsedCronItem, type Runner, type WorkerEvents } from 'graphile-worker';
import pg from 'pg';
import { reconcileCabinetLeadsPipeline } from '../tasks/reconcile_cabinet_leads_pipeline.js';
import { PROJECT_ROOT } from './config.js';
import { openPool } from './db.js';
import { ConfigError } from './errors.js';
import type { Logger } from './logger.js';
import { parsePipelinePayload } from './payload.js';

export const DEFAULT_CRONTAB = path.join(PROJECT_ROOT, 'crontab');

const PIPELINE_TASK = 'reconcile_cabinet_leads_pipeline';
/** The tasks this worker runs: a crontab line naming another would schedule jobs nobody runs. */
export const TASK_NAMES = [PIPELINE_TASK];

/**
 * The crontab file, checked line by line before anything starts: a syntax error, an
 * unknown task, a repeated identifier or a bad payload is a ConfigError (exit code 2)
 * naming the file and the line.
 */
export function loadCrontab(file: string = DEFAULT_CRONTAB): ParsedCronItem[] {
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
    if (!TASK_NAMES.includes(item.task)) throw bad(`unknown task "${item.task}" (tasks: ${TASK_NAMES.join(', ')})`);
    const first = lineOf.get(item.identifier);
    if (first !== undefined) throw bad(`identifier "${item.identifier}" is already used on line ${first}; give each line its own ?id=...`);
    lineOf.set(item.identifier, n);
    if (item.task === PIPELINE_TASK) {
      try {
        parsePipelinePayload(item.payload);
      } catch (err) {
        throw bad((err as Error).message);
      }
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

const SCHEMA = 'graphile_worker';

// The guard of both statements: the row this pool locked for this very attempt. Another
// host's pool has its own id; a later pickup of the same job sets a new locked_at (at
// least e^1 s later: failJob's backoff); pg gives locked_at to the millisecond only.
const OWN_LOCK = `id = $1::bigint AND locked_by = $2::text
    AND locked_at BETWEEN $3::timestamptz - interval '1 millisecond' AND $3::timestamptz + interval '1 millisecond'`;
const UNLOCK_QUEUE = `q AS (
    UPDATE ${SCHEMA}._private_job_queues AS job_queues SET locked_by = NULL, locked_at = NULL
    FROM j WHERE job_queues.id = j.job_queue_id AND job_queues.locked_by = $2::text
    RETURNING job_queues.id)
  SELECT (SELECT count(*) FROM j)::int AS jobs, (SELECT count(*) FROM q)::int AS queues`;
// What graphile-worker 0.17.3's failJobs / completeJobs do (dist/sql/failJobs.js,
// dist/sql/completeJobs.js), restricted to our own lock so that either copy may run first.
const FAIL_SQL = `WITH j AS (
    UPDATE ${SCHEMA}._private_jobs AS jobs
    SET last_error = $4::text, run_at = greatest(now(), run_at) + (exp(least(attempts, 10)) * interval '1 second'),
        locked_by = NULL, locked_at = NULL
    WHERE ${OWN_LOCK}
    RETURNING jobs.job_queue_id), ${UNLOCK_QUEUE}`;
const COMPLETE_SQL = `WITH j AS (
    DELETE FROM ${SCHEMA}._private_jobs AS jobs WHERE ${OWN_LOCK}
    RETURNING jobs.job_queue_id), ${UNLOCK_QUEUE}`;

interface PendingOutcome {
  poolId: string;
  job: Job;
  /** graphile-worker's last_error text when the job failed; null when it succeeded. */
  failure: string | null;
  attempt: number;
  timer: NodeJS.Timeout | undefined;
  inFlight: boolean;
}

/**
 * graphile-worker 0.17.3 records a job's outcome without awaiting it (dist/worker.js:
 * `failJob({...})` and `completeJob(job)` are called, never awaited) and retries that
 * query only on 40001/40P01/57P03/EHOSTUNREACH/ETIMEDOUT (dist/lib.js
 * RETRYABLE_ERROR_CODES). A job that ends while the database is unreachable therefore
 * stays locked, with its serial queue, by this pool (locked_by is the pool id, not a
 * worker id) until resetLockedAt clears it 4 hours later; no run of the queue starts
 * meanwhile. So after every job this process records the same outcome again, retrying
 * with backoff until the database answers. When graphile-worker's own query succeeded,
 * ours matches no row.
 */
class JobOutcomeRecorder {
  private readonly pending = new Set<PendingOutcome>();
  private stopped = false;

  constructor(
    private readonly connectionString: string,
    private readonly log: Logger,
  ) {}

  watch(poolId: string, job: Job, error: unknown): void {
    if (this.stopped || !job.locked_at) return;
    const failure = error == null ? null : (error instanceof Error && error.message) || String(error) || 'Non error or error without message thrown.';
    const p: PendingOutcome = { poolId, job, failure, attempt: 0, timer: undefined, inFlight: false };
    this.pending.add(p);
    // A little later than graphile-worker's own query, which normally does the work.
    this.schedule(p, 1000);
  }

  /** The database answers again (graphile-worker's LISTEN reconnected): retry now, not after the backoff. */
  retryNow(): void {
    for (const p of this.pending) {
      if (p.timer !== undefined && p.attempt > 0) {
        clearTimeout(p.timer);
        this.schedule(p, 0);
      }
    }
  }

  private schedule(p: PendingOutcome, ms: number): void {
    p.timer = setTimeout(() => void this.attempt(p), ms);
    p.timer.unref();
  }

  private async attempt(p: PendingOutcome): Promise<void> {
    p.timer = undefined;
    if (this.stopped || p.inFlight) return;
    p.attempt++;
    p.inFlight = true;
    try {
      await this.record(p);
    } catch (err) {
      if (this.stopped) return;
      // At most 10 s: one connection attempt per pending job, and the queue is free soon
      // after the database is back.
      const delay = Math.min(10_000, 1000 * 2 ** (p.attempt - 1));
      const fields = { job_id: p.job.id, attempt: p.attempt, retry_in_ms: delay, error: err instanceof Error ? err.message : String(err) };
      if (p.attempt === 1) this.log.warn(fields, 'database unavailable after a job ended; will record its outcome once it answers');
      else this.log.debug(fields, 'still cannot record the outcome of the job');
      this.schedule(p, delay);
    } finally {
      p.inFlight = false;
    }
  }

  private async record(p: PendingOutcome): Promise<void> {
    const client = new pg.Client({
      connectionString: this.connectionString,
      connectionTimeoutMillis: 5000,
      query_timeout: 30_000,
      application_name: 'cabinet-leads-worker',
    });
    client.on('error', () => {});
    try {
      await client.connect();
      const values: unknown[] = [p.job.id, p.poolId, p.job.locked_at];
      if (p.failure !== null) values.push(p.failure);
      const { rows } = await client.query<{ jobs: number; queues: number }>(p.failure !== null ? FAIL_SQL : COMPLETE_SQL, values);
      this.pending.delete(p);
      const r = rows[0];
      if (r && r.jobs > 0) {
        this.log.warn(
          { job_id: p.job.id, locked_by: p.poolId, outcome: p.failure !== null ? 'failed' : 'completed', queue_unlocked: r.queues > 0 },
          "recorded the outcome of a job graphile-worker could not record (database unavailable when it ended); its queue is free again",
        );
      }
    } finally {
      await client.end().catch(() => {});
    }
  }

  /** Stops retrying; tries each pending outcome once more and logs those still locked. */
  async flush(): Promise<void> {
    this.stopped = true;
    const left = [...this.pending];
    for (const p of left) clearTimeout(p.timer);
    for (const p of left) {
      try {
        await this.record(p);
      } catch (err) {
        this.log.error(
          { job_id: p.job.id, locked_by: p.poolId, error: err instanceof Error ? err.message : String(err) },
          'could not record the outcome of a job; it stays locked: see docs/operations.md (The worker)',
        );
      }
    }
  }
}

export async function startWorker(opts: WorkerOptions, log: Logger): Promise<CabinetWorker> {
  const crontabFile = opts.crontabFile ?? DEFAULT_CRONTAB;
  const parsedCronItems = opts.cronItems ?? loadCrontab(crontabFile);
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
      taskList: { [PIPELINE_TASK]: reconcileCabinetLeadsPipeline(log) },
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
