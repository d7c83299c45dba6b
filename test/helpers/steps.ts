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

export interface UnmatchedRow {
  /** default 'OPEN' */
  status?: 'OPEN' | 'RESOLVED' | 'IGNORED';
  /** default false */
  retry_due?: boolean;
  /** timestamptz literal; default now() */
  last_attempt_at?: string;
}

/** A lead key left unmatched by an earlier run (NO_CANDIDATES), as the steps find it. */
export async function insertUnmatched(db: Pick<TestDb, 'query'>, leadKey: string, u: UnmatchedRow = {}): Promise<void> {
  await db.query(
    `INSERT INTO canon.identity_unmatched (source_table, source_pk, reason_code, status, retry_due, last_attempt_at, resolved_at)
     VALUES ('module_ct_cabinet_leads', $1, 'NO_CANDIDATES', $2, $3, coalesce($4::timestamptz, now()), CASE WHEN $2 <> 'OPEN' THEN now() END)`,
    [leadKey, u.status ?? 'OPEN', u.retry_due ?? false, u.last_attempt_at ?? null],
  );
}

/** Every lead row keyed (step 5a) and its state stored (step 7b), no mark left: as a run leaves them. */
export async function storeLeadState(db: Pick<TestDb, 'query'>): Promise<void> {
  await db.query(`SELECT canon.key_changed_leads(NULL)`);
  await db.query(`SELECT canon.refresh_lead_state(NULL, ARRAY(SELECT id FROM public.module_ct_cabinet_leads))`);
  await db.query(`DELETE FROM canon_internal.cabinet_lead_state_pending`);
  await db.query(`DELETE FROM canon_internal.cabinet_lead_state_dirty`);
}
