// Why this module exists, once: graphile-worker 0.17.3 records a job's outcome without
// awaiting it (dist/worker.js calls failJob/completeJob and never awaits them) and retries
// that query only on a few error codes (dist/lib.js RETRYABLE_ERROR_CODES). A job that ends
// while the database is unreachable therefore stays locked, with its serial queue, until
// graphile-worker's resetLockedAt clears it 4 hours later: no run starts meanwhile. The
// recorder below records the same outcome again, with graphile-worker's own SQL restricted
// to this pool's lock, until the database answers. Remove it once graphile-worker awaits
// these queries (0.18 needs Node 22, which this product does not require yet).
import type { Job } from 'graphile-worker';
import pg from 'pg';
import type { Logger } from './logger.js';

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
 * Records again the outcome of every job this process ran (locked_by is the pool id, not
 * a worker id), retrying with backoff until the database answers. When graphile-worker's
 * own query succeeded, ours matches no row.
 */
export class JobOutcomeRecorder {
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
