// Login roles of a test, members of the product's group roles (cabinet_leads_job,
// cabinet_leads_reader, created by migrate), as a DBA would grant them: created on the
// server under test with a unique name, dropped after the test (roles are cluster-wide).
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { ADMIN_URL } from './env.js';

export type GroupRole = 'cabinet_leads_job' | 'cabinet_leads_reader';

export interface LoginRole {
  name: string;
  /** the database's connection string, as this role */
  url: string;
  /** one query as this role, on a connection of its own */
  query<R extends pg.QueryResultRow = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<R[]>;
  drop(): Promise<void>;
}

async function admin(sql: string): Promise<void> {
  const c = new pg.Client({ connectionString: ADMIN_URL });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

/** A LOGIN role in `group` whose connection string points at databaseUrl's database. */
export async function loginRole(t: { teardown(fn: () => Promise<void>): void }, databaseUrl: string, group: GroupRole): Promise<LoginRole> {
  const name = `t_${group.replace('cabinet_leads_', '')}_${randomBytes(4).toString('hex')}`;
  await admin(`CREATE ROLE ${name} LOGIN IN ROLE ${group}`);
  const u = new URL(databaseUrl);
  u.username = name;
  u.password = '';
  const url = u.toString();
  const role: LoginRole = {
    name,
    url,
    async query(sql, params) {
      const c = new pg.Client({ connectionString: url });
      c.on('error', () => {});
      await c.connect();
      try {
        return (await c.query(sql, params)).rows;
      } finally {
        await c.end().catch(() => {});
      }
    },
    async drop() {
      await admin(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '${name}'`);
      await admin(`DROP ROLE IF EXISTS ${name}`);
    },
  };
  t.teardown(() => role.drop());
  return role;
}
