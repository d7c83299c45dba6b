// Applies the SQL migrations of migrations/ with node-pg-migrate. Its bookkeeping lives
// in its own schema (cabinet_migrations) so it never mixes with canon or ops, and its
// advisory lock lets several workers start at once: one migrates, the others wait.
import path from 'node:path';
import { PROJECT_ROOT } from './config.js';
import type { Logger } from './logger.js';

export const MIGRATIONS_DIR = path.join(PROJECT_ROOT, 'migrations');
export const MIGRATIONS_SCHEMA = 'cabinet_migrations';

export async function migrate(connectionString: string, log: Logger): Promise<string[]> {
  // Loaded on demand: every CLI command imports this module, few of them migrate.
  const { runner } = await import('node-pg-migrate');
  const applied = await runner({
    databaseUrl: connectionString,
    dir: MIGRATIONS_DIR,
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
  });
  const names = applied.map((m) => m.name);
  log.info({ applied: names.length, migrations: names }, names.length ? 'migrations applied' : 'database schema up to date');
  return names;
}
