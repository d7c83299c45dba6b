// Lock waits, TypeScript side: every connection of the CLI waits at most 30 s for a lock
// (lock_timeout; a session that asks for less, e.g. PGOPTIONS='-c lock_timeout=5s',
// keeps its own), as ops.reconcile_cabinet_leads_pipeline does in SQL
// (canon.bound_lock_timeout). A statement that gives up fails with SQLSTATE 55P03; the
// message then names the sessions that hold locks on the product's tables.
import type pg from 'pg';
import type { Queryable } from './alerts.js';

/** The longest lock wait of any statement of the product, in milliseconds. */
export const LOCK_TIMEOUT_MS = 30_000;

/** SQLSTATE of a statement that gave up waiting for a lock (lock_timeout or NOWAIT). */
export const LOCK_NOT_AVAILABLE = '55P03';

/**
 * lock_timeout = 30 s unless the session already has a shorter one. $1 = is_local:
 * false for the whole session, true until the end of the current transaction. Needs no
 * schema (runs before migrations too).
 */
const BOUND_SQL = `SELECT set_config('lock_timeout', '${LOCK_TIMEOUT_MS}ms', $1::boolean)
  FROM pg_catalog.pg_settings s
  WHERE s.name = 'lock_timeout' AND s.setting::bigint NOT BETWEEN 1 AND ${LOCK_TIMEOUT_MS}`;

export async function boundLockWaits(client: Queryable, scope: 'session' | 'transaction'): Promise<void> {
  await client.query(BOUND_SQL, [scope === 'transaction']);
}

export function isLockTimeout(err: unknown): boolean {
  return !!err && typeof err === 'object' && 'code' in err && err.code === LOCK_NOT_AVAILABLE;
}

/**
 * The sessions that hold a lock blocking reads or writes on a table of canon, ops or
 * public (the source tables): "canon.settings AccessExclusiveLock by pid 4242 (psql),
 * idle in transaction for 12 s". Read from pg_locks and pg_stat_activity once the wait
 * has ended, so a holder that let go meanwhile is not listed.
 */
export async function lockHolders(db: Queryable): Promise<string[]> {
  const res = await db.query<{ holder: string }>(
    `SELECT format('%s.%s %s by pid %s%s, %s for %s s', n.nspname, c.relname, l.mode, l.pid,
                   CASE WHEN coalesce(a.application_name, '') <> '' THEN format(' (%s)', a.application_name) ELSE '' END,
                   coalesce(a.state, 'state unknown'),
                   coalesce(round(extract(epoch FROM now() - a.xact_start))::text, '?')) AS holder
     FROM pg_catalog.pg_locks l
     JOIN pg_catalog.pg_class c ON c.oid = l.relation
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
     WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_backend_pid()
       AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = current_database())
       AND l.mode IN ('ShareUpdateExclusiveLock', 'ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock')
       AND n.nspname IN ('canon', 'canon_internal', 'ops', 'public')
     ORDER BY a.xact_start NULLS LAST, l.pid, 1
     LIMIT 5`,
  );
  return res.rows.map((r) => r.holder);
}

/** What to append to a lock-timeout message: who holds the lock now, and where the docs say what to do. */
export async function lockTimeoutHint(db: Queryable): Promise<string> {
  const holders = await lockHolders(db).catch(() => [] as string[]);
  const who = holders.length > 0 ? `held by ${holders.join('; ')}` : 'the holder has let go since';
  return `${who} (docs/operations.md, "A lock held on a canon table")`;
}

/**
 * A Queryable whose every statement runs in its own transaction with lock waits bounded,
 * on a client borrowed for that statement only (graphile-worker's withPgClient): the
 * pooled connection keeps its own settings afterwards.
 */
export function boundedQueryable(withPgClient: <T>(fn: (client: pg.PoolClient) => Promise<T>) => Promise<T>): Queryable {
  return {
    query: <R extends pg.QueryResultRow>(text: string, values?: unknown[]) =>
      withPgClient(async (client) => {
        await client.query('BEGIN');
        try {
          await boundLockWaits(client, 'transaction');
          const res = await client.query<R>(text, values);
          await client.query('COMMIT');
          return res;
        } catch (err) {
          await client.query('ROLLBACK').catch(() => {});
          throw err;
        }
      }),
  };
}
