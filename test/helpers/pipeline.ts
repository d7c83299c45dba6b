// The pipeline as the job runs it (CALL ops.reconcile_cabinet_leads_pipeline, one run per
// call) and what it decided for a lead: its identity link or its unmatched row.
import type pg from 'pg';
import type { TestDb } from './db.js';

/** What the matching tests pass: the last 30 days, one batch for everything. */
export const PIPELINE_ARGS = 'p_days_back => 30, p_limit => 2000';

export interface RunResult {
  id: number;
  status: string;
  stats: Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  error_message: string | null;
}

/** One CALL on the given connection (its session, its locks); returns the run row. */
export async function callPipeline<R = RunResult>(c: pg.ClientBase, args = PIPELINE_ARGS): Promise<R> {
  const res = await c.query<{ run: R }>(`CALL ops.reconcile_cabinet_leads_pipeline(${args})`);
  return res.rows[0]!.run;
}

/** One CALL on a connection of the pool. */
export async function runPipeline(db: TestDb, args = PIPELINE_ARGS): Promise<RunResult> {
  const c = await db.pool.connect();
  try {
    return await callPipeline(c, args);
  } finally {
    c.release();
  }
}

export async function linkOf(db: Pick<TestDb, 'query'>, leadKey: string): Promise<{ match_rule: string; driver_id: string | null; person_key: string } | undefined> {
  const rows = await db.query<{ match_rule: string; driver_id: string | null; person_key: string }>(
    `SELECT l.match_rule, l.person_key::text,
            (SELECT d.source_pk FROM canon.identity_links d
             WHERE d.source_table = 'drivers' AND d.person_key = l.person_key ORDER BY d.linked_at DESC, d.source_pk LIMIT 1) AS driver_id
     FROM canon.identity_links l
     WHERE l.source_table = 'module_ct_cabinet_leads' AND l.source_pk = $1`,
    [leadKey],
  );
  return rows[0];
}

export async function unmatchedOf(db: Pick<TestDb, 'query'>, leadKey: string): Promise<{ reason_code: string; status: string; attempts: number; candidates: { driver_id: string; reject_reason: string | null }[] } | undefined> {
  const rows = await db.query<{ reason_code: string; status: string; attempts: number; candidates: { driver_id: string; reject_reason: string | null }[] }>(
    `SELECT reason_code, status, attempts, candidates FROM canon.identity_unmatched
     WHERE source_table = 'module_ct_cabinet_leads' AND source_pk = $1`,
    [leadKey],
  );
  return rows[0];
}
