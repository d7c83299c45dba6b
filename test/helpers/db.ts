// Test databases: one per test file (or per test when isolation needs it), cloned from
// the migrated template in milliseconds, dropped afterwards. Real PostgreSQL always.
import { randomBytes } from 'node:crypto';
import type { ExecutionContext } from 'ava';
import pg from 'pg';
import { ADMIN_URL, TEMPLATE_DB, urlFor } from './env.js';

export interface TestDb {
  name: string;
  url: string;
  pool: pg.Pool;
  /** rows of a query on the pool */
  query<R extends pg.QueryResultRow = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<R[]>;
  /** a dedicated connection, closed with the database */
  connect(): Promise<pg.Client>;
  drop(): Promise<void>;
}

async function admin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: ADMIN_URL });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/** A database cloned from the migrated template (the usual case). */
export async function createTestDb(label = 'test'): Promise<TestDb> {
  return cloneDatabase(TEMPLATE_DB, label);
}

/** A database with no schema at all, for tests of the migrations themselves. */
export async function createEmptyDb(label = 'empty'): Promise<TestDb> {
  return cloneDatabase('template0', label);
}

/** A copy of any database of the server under test (nobody may be connected to it). */
export async function cloneDatabase(template: string, label: string): Promise<TestDb> {
  const name = `t_${label.replace(/[^a-z0-9]/gi, '_').toLowerCase().slice(0, 30)}_${randomBytes(4).toString('hex')}`;
  // CREATE DATABASE ... TEMPLATE fails while another session copies the same template.
  for (let attempt = 0; ; attempt++) {
    try {
      await admin((c) => c.query(`CREATE DATABASE ${name} TEMPLATE ${template}`));
      break;
    } catch (err) {
      if (attempt > 50 || !/is being accessed by other users/.test((err as Error).message)) throw err;
      await new Promise((r) => setTimeout(r, 100 + Math.random() * 200));
    }
  }
  const url = urlFor(name);
  const pool = new pg.Pool({ connectionString: url, max: 5 });
  pool.on('error', () => {});
  const clients: pg.Client[] = [];
  return {
    name,
    url,
    pool,
    async query(sql, params) {
      return (await pool.query(sql, params)).rows;
    },
    async connect() {
      const c = new pg.Client({ connectionString: url });
      c.on('error', () => {});
      await c.connect();
      clients.push(c);
      return c;
    },
    async drop() {
      await Promise.all(clients.map((c) => c.end().catch(() => {})));
      await pool.end().catch(() => {});
      await admin((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
    },
  };
}

/** A fresh database for fn (cloned from the template), dropped after it, also when fn throws. */
export async function withDb<T>(label: string, fn: (db: TestDb) => Promise<T>): Promise<T> {
  const db = await createTestDb(label);
  try {
    return await fn(db);
  } finally {
    await db.drop();
  }
}

/** A database of its own for one test, dropped at the test's teardown (for tests that assert totals). */
export async function freshDb(t: ExecutionContext, label: string): Promise<TestDb> {
  const db = await createTestDb(label);
  t.teardown(() => db.drop());
  return db;
}

/** Column v of the first row of a query. */
export async function one<T>(db: Pick<TestDb, 'query'>, sql: string, params?: unknown[]): Promise<T> {
  const [r] = await db.query<{ v: T }>(sql, params);
  return r!.v;
}

/** Column n of the first row of a query (a count), as a number. */
export async function count(db: Pick<TestDb, 'query'>, sql: string, params: unknown[] = []): Promise<number> {
  const [r] = await db.query<{ n: string }>(sql, params);
  return Number(r!.n);
}
