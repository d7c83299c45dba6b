// What every database command needs: validated config, a logger and an open database
// whose schema is current. The embedded server is migrated automatically (it is ours);
// a DATABASE_URL server must be migrated by its DBA, so pending migrations stop here.
import { readdirSync } from 'node:fs';
import { loadConfig, type Config } from '../config.js';
import { openDatabase, type Database } from '../db.js';
import { ConfigError } from '../errors.js';
import { createLogger, type Logger } from '../logger.js';
import { MIGRATIONS_DIR, MIGRATIONS_SCHEMA, migrate } from '../migrate.js';

export interface Context {
  config: Config;
  log: Logger;
  db: Database;
}

export function loadConfigAndLogger(): { config: Config; log: Logger } {
  const config = loadConfig();
  return { config, log: createLogger(config) };
}

async function pendingMigrations(db: Database): Promise<string[]> {
  const files = readdirSync(MIGRATIONS_DIR).filter((f) => f.endsWith('.sql')).map((f) => f.replace(/\.sql$/, ''));
  const exists = await db.pool.query(`SELECT to_regclass($1) IS NOT NULL AS ok`, [`${MIGRATIONS_SCHEMA}.pgmigrations`]);
  if (!exists.rows[0]?.ok) return files;
  const done = await db.pool.query<{ name: string }>(`SELECT name FROM ${MIGRATIONS_SCHEMA}.pgmigrations`);
  const applied = new Set(done.rows.map((r) => r.name));
  return files.filter((f) => !applied.has(f));
}

export async function withDatabase<T>(fn: (ctx: Context) => Promise<T>, opts: { ensureSchema?: boolean } = {}): Promise<T> {
  const { config, log } = loadConfigAndLogger();
  const db = await openDatabase(config, log);
  try {
    if (opts.ensureSchema !== false) {
      const pending = await pendingMigrations(db);
      if (pending.length > 0) {
        if (db.embedded) await migrate(db.connectionString, log);
        else {
          throw new ConfigError(
            `database schema is not current: ${pending.length} migration(s) pending (${pending[0]}${pending.length > 1 ? ', ...' : ''}); run: cabinet-leads migrate`,
          );
        }
      }
    }
    return await fn({ config, log, db });
  } finally {
    await db.close();
  }
}
