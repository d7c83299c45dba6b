// One pipeline step called on its own (test/sql/canon.<step>.test.ts): its stats, and one
// connection in a transaction for the steps whose temp tables (ON COMMIT DROP: the batch,
// the decisions, the lead state to-do list, the marks taken) the next step or the test reads.
import type pg from 'pg';
import type { TestDb } from './db.js';

type Conn = pg.Pool | pg.ClientBase;

/** What `SELECT <call>` returns, e.g. step(db.pool, 'canon.mark_retries_due(NULL)'). */
export async function step<T = Record<string, unknown>>(c: Conn, call: string, params: unknown[] = []): Promise<T> {
  const res = await c.query<{ s: T }>(`SELECT ${call} AS s`, params);
  return res.rows[0]!.s;
}

/** fn on one connection between BEGIN and COMMIT (ROLLBACK when it throws). */
export async function inTransaction<T>(db: Pick<TestDb, 'connect'>, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = await db.connect();
  await c.query('BEGIN');
  try {
    const out = await fn(c);
    await c.query('COMMIT');
    return out;
  } catch (err) {
    await c.query('ROLLBACK').catch(() => {});
    throw err;
  }
}
