// Applies the SQL migrations of migrations/ with node-pg-migrate. Its bookkeeping lives
// in its own schema (cabinet_migrations) so it never mixes with canon or ops, and its
// advisory lock lets several workers start at once: one migrates, the others wait.
// Then, as the same (owning) role: graphile-worker's schema is installed or upgraded, so
// that the worker never needs to create anything (it may run as cabinet_leads_job), and
// the product's roles get their rights again (canon.grant_product_roles, which also
// covers objects added by the migrations just applied).
import { readdirSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { PROJECT_ROOT } from './config.js';
import { openPool } from './db.js';
import { ConfigError } from './errors.js';
import type { Logger } from './logger.js';

export const MIGRATIONS_DIR = path.join(PROJECT_ROOT, 'migrations');
export const MIGRATIONS_SCHEMA = 'cabinet_migrations';

/** What the migrating role could not do itself: the SQL a DBA must run (docs/security.md). */
export interface DbaRequest {
  /** the migrating role (current_user) */
  role: string;
  /** whether it lacks the right to create the product's roles (they are missing) */
  rolesMissing: boolean;
  sql: string[];
}

export interface MigrateOptions {
  /** Another folder of migrations (the drift test applies sql/ as one migration). */
  dir?: string;
  /**
   * Called when some grant or role needs a DBA; the migration itself has succeeded (the
   * product runs as the owner meanwhile). Default: one warn log line with the SQL.
   */
  onDbaRequest?: (request: DbaRequest) => void;
}

export async function migrate(connectionString: string, log: Logger, opts: MigrateOptions = {}): Promise<string[]> {
  // Loaded on demand: every CLI command imports this module, few of them migrate.
  const { runner } = await import('node-pg-migrate');
  // Our own client: node-pg-migrate never holds the connection string (it may hold a
  // password), so none of its messages can quote it.
  const client = new pg.Client({ connectionString, application_name: 'cabinet-leads-migrate' });
  client.on('error', () => {}); // a lost connection rejects the pending query
  await client.connect();
  try {
    await refuseUnknownHistory(client, opts.dir ?? MIGRATIONS_DIR);
  } catch (err) {
    await client.end().catch(() => {});
    throw err;
  }
  const applied = await runner({
    dbClient: client,
    dir: opts.dir ?? MIGRATIONS_DIR,
    ignorePattern: '(\\..*)|(.*\\.md)', // migrations/README.md is not a migration
    direction: 'up',
    migrationsTable: 'pgmigrations',
    migrationsSchema: MIGRATIONS_SCHEMA,
    createMigrationsSchema: true,
    checkOrder: true,
    singleTransaction: true,
    advisoryLockMode: 'wait',
    log: () => {},
    logger: {
      debug: () => {},
      info: (m: string) => log.debug({ migrate: m }, 'migrate'),
      warn: (m: string) => log.warn({ migrate: m }, 'migrate'),
      error: (m: string) => log.error({ migrate: m }, 'migrate'),
    },
  }).finally(() => client.end().catch(() => {}));
  const names = applied.map((m) => m.name);
  log.info({ applied: names.length, migrations: names }, names.length ? 'migrations applied' : 'database schema up to date');
  const request = await installWorkerSchemaAndGrant(connectionString, log);
  if (request) {
    if (opts.onDbaRequest) opts.onDbaRequest(request);
    else log.warn({ role: request.role, dba_sql: request.sql }, dbaRequestLine(request));
  }
  return names;
}

/**
 * A database whose history names a migration this version does not have was migrated by
 * another build (before the baseline, migrations/README.md): said plainly, instead of
 * node-pg-migrate's "Not run migration ... is preceding already run migration ...".
 */
async function refuseUnknownHistory(client: pg.Client, dir: string): Promise<void> {
  const { rows } = await client.query<{ name: string }>(
    `SELECT name FROM ${MIGRATIONS_SCHEMA}.pgmigrations ORDER BY run_on, id`,
  ).catch((err: { code?: string }) => {
    if (err.code === '42P01' || err.code === '3F000') return { rows: [] as { name: string }[] }; // never migrated
    throw err;
  });
  const known = new Set(readdirSync(dir).filter((f) => f.endsWith('.sql')).map((f) => f.slice(0, -4)));
  const unknown = rows.map((r) => r.name).filter((n) => !known.has(n));
  if (unknown.length > 0) {
    throw new ConfigError(
      `this database was migrated by another build of cabinet-leads: it has applied ${unknown.length} migration(s) this version does not have ` +
        `(${unknown.slice(0, 3).join(', ')}${unknown.length > 3 ? ', ...' : ''}); a development database made before the baseline is re-created, ` +
        `not migrated: use a new database, or DROP SCHEMA canon, canon_internal, ops, cabinet_migrations CASCADE first (migrations/README.md)`,
    );
  }
}

/** The one line that says what is missing and why (the SQL follows it). */
export function dbaRequestLine(r: DbaRequest): string {
  return r.rolesMissing
    ? `role ${r.role} may not create roles and cabinet_leads_job / cabinet_leads_reader do not exist: the migration is applied, but the product has no least-privilege roles until a DBA runs the SQL below`
    : `role ${r.role} may not grant some rights the product's roles need: the migration is applied; a DBA should run the SQL below`;
}

/**
 * graphile-worker's migrations (its own bookkeeping, graphile_worker.migrations), then
 * canon.grant_product_roles(), one migrate of this database at a time: concurrent GRANTs
 * on one object fail ("tuple concurrently updated").
 */
async function installWorkerSchemaAndGrant(connectionString: string, log: Logger): Promise<DbaRequest | undefined> {
  const client = new pg.Client({ connectionString, application_name: 'cabinet-leads-migrate' });
  client.on('error', () => {}); // a lost connection rejects the pending query
  await client.connect();
  try {
    await client.query(`SELECT pg_advisory_lock(hashtext('cabinet_leads'), hashtext('migrate'))`);
    const { runMigrations } = await import('graphile-worker');
    const { workerLogger } = await import('./worker.js');
    // Our pool (closed and awaited): graphile-worker's own is ended without waiting.
    const { pool, close } = openPool({ connectionString, max: 1, application_name: 'cabinet-leads-migrate' }, log, 'graphile-worker-migrate');
    try {
      await runMigrations({ pgPool: pool, logger: workerLogger(log) });
    } finally {
      await close();
    }
    const { rows } = await client.query<{ role: string; sql: string[] | null }>(
      `SELECT current_user::text AS role, array_agg(g) AS sql FROM canon.grant_product_roles() g`,
    );
    const r = rows[0]!;
    if (!r.sql || r.sql.length === 0) return undefined;
    return { role: r.role, rolesMissing: r.sql.some((s) => s.startsWith('CREATE ROLE')), sql: r.sql };
  } finally {
    await client.end().catch(() => {});
  }
}
