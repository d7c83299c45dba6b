// Deterministic interleavings of real connections, without sleeps that guess: a statement
// is started on one connection, and the test waits until PostgreSQL itself reports it
// blocked by another connection (pg_blocking_pids), or until it finished without waiting.
import type pg from 'pg';
import type { TestDb } from './db.js';

/** What a statement came to: its rows, or the error PostgreSQL raised (code = SQLSTATE). */
export type Outcome<R> = { ok: true; rows: R[]; rowCount: number } | { ok: false; error: Error & { code?: string } };

/** A statement started on a connection, not awaited yet. */
export interface Started<R> {
  pid: number;
  outcome: Promise<Outcome<R>>;
}

export async function backendPid(c: pg.Client): Promise<number> {
  const { rows } = await c.query<{ pid: number }>(`SELECT pg_backend_pid() AS pid`);
  return rows[0]!.pid;
}

/** Sends sql on c and returns at once; the outcome never rejects (errors are values). */
export async function start<R extends pg.QueryResultRow = Record<string, unknown>>(
  c: pg.Client,
  sql: string,
  params: unknown[] = [],
): Promise<Started<R>> {
  const pid = await backendPid(c);
  const outcome = c.query<R>(sql, params).then(
    (r): Outcome<R> => ({ ok: true, rows: r.rows, rowCount: r.rowCount ?? 0 }),
    (error: Error & { code?: string }): Outcome<R> => ({ ok: false, error }),
  );
  return { pid, outcome };
}

/**
 * Waits until the started statement is blocked by a lock of the backend holderPid
 * ('blocked'), or has finished without ever being seen blocked by it ('finished': the
 * statement did not wait for that transaction). Polls pg_blocking_pids every 10 ms.
 */
export async function blockedBy(db: Pick<TestDb, 'query'>, s: Started<unknown>, holderPid: number, ms = 30_000): Promise<'blocked' | 'finished'> {
  let finished = false;
  void s.outcome.then(() => {
    finished = true;
  });
  const until = Date.now() + ms;
  for (;;) {
    const [r] = await db.query<{ blocked: boolean }>(`SELECT $2::int = ANY (pg_blocking_pids($1::int)) AS blocked`, [s.pid, holderPid]);
    if (r!.blocked) return 'blocked';
    if (finished) return 'finished';
    if (Date.now() > until) throw new Error(`backend ${s.pid} neither blocked by ${holderPid} nor finished after ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** The advisory lock a 'wait:<point>' failpoint waits on (canon.failpoint). */
export const FAILPOINT_LOCK = `hashtext('cabinet_leads'), hashtext('failpoint')`;

/** Polls fn every 100 ms until it returns a value (not undefined); fails after ms. */
export async function waitFor<T>(fn: () => Promise<T | undefined>, what: string, ms = 30_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
