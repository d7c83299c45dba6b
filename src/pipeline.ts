// The one code path of a reconciliation run, shared by the worker task and the CLI:
// reconcile() CALLs ops.reconcile_cabinet_leads_pipeline, which does all the work in SQL,
// turns the logged run row into a result, then checks the alerts. TypeScript adds
// nothing to the decisions.
import { hostname } from 'node:os';
import type pg from 'pg';
import { checkAlertsAfterRun, type AfterRunOptions } from './alerts.js';
import { CONTRACT_VIOLATION_SQLSTATE, RunFailedError } from './errors.js';
import { LOCK_NOT_AVAILABLE, boundedQueryable, isLockTimeout, lockTimeoutHint } from './locks.js';
import type { Logger } from './logger.js';
import { runFigures } from './run-summary.js';

export interface PipelineOptions {
  daysBack: number;
  limit: number;
  dryRun: boolean;
  onlyLimbo: boolean;
  trigger: 'cli' | 'worker';
  workerJobId?: string;
  /** statement_timeout for the whole run, in seconds (0 = none). */
  timeoutSeconds: number;
}

export type RunStatus = 'RUNNING' | 'COMPLETED' | 'FAILED' | 'SKIPPED';

export interface RunRow {
  id: number;
  job_name: string;
  status: RunStatus;
  dry_run: boolean;
  params: Record<string, unknown>;
  stats: Record<string, unknown>;
  error_message: string | null;
  error_sqlstate: string | null;
  started_at: string;
  completed_at: string | null;
  scope_date_from: string;
  scope_date_to: string;
  /** Who held the lock a run FAILED waiting for (55P03), looked up as the run ended: not a column of the run. */
  lock_hint?: string;
}

export const PIPELINE_DEFAULTS = { daysBack: 30, limit: 2000, timeoutSeconds: 900 } as const;

/**
 * The values each option may take, for the CLI flags and the job payload alike: limit is
 * an integer parameter of the procedure, the timeout becomes statement_timeout (at most
 * 2147483647 ms).
 */
export const PIPELINE_LIMITS = {
  daysBack: { min: 0, max: 36500 },
  limit: { min: 0, max: 2147483647 },
  timeoutSeconds: { min: 0, max: 2147483 },
} as const;

export function isContractViolation(run: RunRow): boolean {
  return run.status === 'FAILED' && run.error_sqlstate === CONTRACT_VIOLATION_SQLSTATE;
}

export async function runPipeline(client: pg.ClientBase, opts: PipelineOptions, log: Logger): Promise<RunRow> {
  const context = {
    trigger: opts.trigger,
    client_host: hostname(),
    client_pid: process.pid,
    ...(opts.workerJobId !== undefined ? { worker_job_id: opts.workerJobId } : {}),
  };
  log.info(
    { days_back: opts.daysBack, limit: opts.limit, dry_run: opts.dryRun, only_limbo: opts.onlyLimbo, trigger: opts.trigger },
    'pipeline run starting',
  );
  await client.query(`SELECT set_config('statement_timeout', $1, false)`, [`${opts.timeoutSeconds}s`]);
  let run: RunRow;
  try {
    const res = await client.query<{ run: RunRow }>(
      `CALL ops.reconcile_cabinet_leads_pipeline(
         p_days_back => $1, p_limit => $2, p_dry_run => $3, p_only_limbo => $4,
         p_context => $5::jsonb, p_raise_on_failure => false, run => NULL)`,
      [opts.daysBack, opts.limit, opts.dryRun, opts.onlyLimbo, JSON.stringify(context)],
    );
    const row = res.rows[0];
    if (!row) throw new Error('ops.reconcile_cabinet_leads_pipeline returned no run row');
    run = row.run;
  } catch (err) {
    // The procedure logs every failure in canon.ingestion_runs except one writing that
    // table: the run is not logged (or stays RUNNING until the next run marks it FAILED).
    if (!isLockTimeout(err)) throw err;
    const hint = await lockTimeoutHint(client);
    log.error({ error: (err as Error).message, sqlstate: '55P03', hint }, 'pipeline run failed: lock timeout on canon.ingestion_runs');
    throw new RunFailedError(
      `run failed, not logged: ${(err as Error).message} on canon.ingestion_runs (a run left RUNNING is marked FAILED by the next one); ${hint}`,
      null,
    );
  } finally {
    await client.query(`RESET statement_timeout`).catch(() => {});
  }
  const duration_ms = (run.stats['durations_ms'] as Record<string, number> | undefined)?.['total'];
  const fields = { run_id: run.id, status: run.status, dry_run: run.dry_run, duration_ms };
  // Who holds the lock the run gave up on, looked up at once (it may let go soon).
  if (run.status === 'FAILED' && run.error_sqlstate === LOCK_NOT_AVAILABLE) run.lock_hint = await lockTimeoutHint(client);
  if (run.status === 'FAILED') log.error({ ...fields, error: run.error_message, sqlstate: run.error_sqlstate, hint: run.lock_hint }, 'pipeline run failed');
  else if (run.status === 'SKIPPED') {
    // Who keeps the run out: a run of ours, or any session that took the lock (psql, a hung client).
    const holders = await client
      .query<{ pid: number; application_name: string | null; run_id: string | null; held_since: Date | null; too_long: boolean | null }>(
        `SELECT h.pid, h.application_name, h.run_id::text AS run_id, h.held_since, h.too_long FROM ops.job_lock_holders() h`,
      )
      .then((r) => r.rows, () => undefined);
    log.warn({ ...fields, lock_holders: holders }, 'pipeline run skipped: another run holds the lock');
  }
  // The figures of the one line `reconcile` prints (src/run-summary.ts), as fields.
  else log.info(runFigures(run), 'pipeline run completed');
  return run;
}

/** Runs fn with a connection: the worker's helpers.withPgClient, or a client the CLI holds. */
export type WithClient = <T>(fn: (client: pg.PoolClient) => Promise<T>) => Promise<T>;

/**
 * One run and the alert check after it, the same for the worker task and the CLI. The
 * alerts are checked after every run that wrote (a FAILED one too: LAST_RUN_FAILED), not
 * after a dry run (it changes nothing) nor a SKIPPED one (the run holding the lock checks
 * them); each query of the check borrows its connection with lock waits bounded, and a
 * failed check is logged, never the run's failure.
 */
export async function reconcile(withClient: WithClient, opts: PipelineOptions, log: Logger, alerting: AfterRunOptions): Promise<RunRow> {
  const run = await withClient((client) => runPipeline(client, opts, log));
  if (!run.dry_run && run.status !== 'SKIPPED') await checkAlertsAfterRun(boundedQueryable(withClient), run, alerting, log);
  return run;
}
