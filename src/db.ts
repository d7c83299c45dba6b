// Database access: DATABASE_URL when set (never the embedded server then), otherwise
// the embedded server. Connecting fails within the configured timeout with a
// ConfigError (exit code 2) that names the server but never the password. Every
// connection waits at most 30 s for a lock (src/locks.ts).
import pg from 'pg';
import type { Config } from './config.js';
import { startEmbedded, type EmbeddedServer } from './embedded.js';
import { ConfigError } from './errors.js';
import { boundLockWaits } from './locks.js';
import type { Logger } from './logger.js';

export interface Database {
  pool: pg.Pool;
  connectionString: string;
  embedded: EmbeddedServer | undefined;
  close(): Promise<void>;
}

/** host:port/database of a connection string, without credentials. */
export function describeUrl(connectionString: string): string {
  try {
    const u = new URL(connectionString);
    return `${u.hostname}:${u.port || '5432'}${u.pathname}`;
  } catch {
    return '(unparseable DATABASE_URL)';
  }
}

export async function openDatabase(config: Config, log: Logger, appName = 'cabinet-leads'): Promise<Database> {
  let embedded: EmbeddedServer | undefined;
  let connectionString: string;
  if (config.databaseUrl !== undefined) {
    connectionString = config.databaseUrl;
  } else {
    try {
      embedded = await startEmbedded(config.dataDir, log);
    } catch (err) {
      throw new ConfigError(err instanceof Error ? err.message : String(err));
    }
    connectionString = embedded.connectionString;
  }
  const pool = new pg.Pool({
    connectionString,
    connectionTimeoutMillis: config.connectTimeoutSeconds * 1000,
    application_name: appName,
    max: 4,
    // Before a new connection is handed out: no command waits more than 30 s for a lock.
    onConnect: (client) => boundLockWaits(client, 'session').catch((err: Error) => log.warn({ error: err.message }, 'could not bound lock_timeout')),
  });
  // A client that loses its server must not crash the process: idle ones are reported
  // here; a checked-out one also rejects its pending query, which the caller handles.
  pool.on('error', (err) => log.warn({ err }, 'idle database connection lost'));
  pool.on('connect', (client) => {
    client.on('error', (err) => log.warn({ error: err.message }, 'database connection lost'));
  });
  const close = async () => {
    await pool.end().catch(() => {});
    await embedded?.stop();
  };
  try {
    await pool.query('SELECT 1');
  } catch (err) {
    await close();
    const reason = err instanceof Error ? err.message || (err as NodeJS.ErrnoException).code : String(err);
    throw new ConfigError(`database unreachable at ${describeUrl(connectionString)}: ${reason}`);
  }
  return { pool, connectionString, embedded, close };
}
