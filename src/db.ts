// Database access: DATABASE_URL when set (never the embedded server then), otherwise
// the embedded server. Connecting fails within the configured timeout with a
// ConfigError (exit code 2) that names the server but never the password. Every
// connection waits at most 30 s for a lock (src/locks.ts).
import pg from 'pg';
import type { Config } from './config.js';
import { startEmbedded, type EmbeddedServer, type StartOptions } from './embedded.js';
import { ConfigError } from './errors.js';
import { boundLockWaits } from './locks.js';
import type { Logger } from './logger.js';

export interface Database {
  pool: pg.Pool;
  connectionString: string;
  embedded: EmbeddedServer | undefined;
  close(): Promise<void>;
}

/** host:port/database of a connection string (a socket folder as its path), without credentials or parameters. */
export function describeUrl(connectionString: string): string {
  try {
    const u = new URL(connectionString);
    const host = u.searchParams.get('host') ?? (/^%2f/i.test(u.hostname) ? decodeURIComponent(u.hostname) : u.hostname);
    return `${host || 'localhost'}:${u.searchParams.get('port') ?? (u.port || '5432')}${u.pathname}`;
  } catch {
    return '(unparseable DATABASE_URL)';
  }
}

/**
 * A pg pool whose close() resolves once every connection is closed. pg-pool's end()
 * resolves as soon as it has asked its idle connections to end; a server stopped right
 * after met sessions still open ("terminating connection due to administrator command",
 * then an unhandled 'error' event on the pool that killed the process). A connection
 * lost at any time is logged, never thrown: a checked-out one also rejects its pending
 * query, which the caller handles.
 */
export function openPool(config: pg.PoolConfig, log: Logger, name = 'database'): { pool: pg.Pool; close(): Promise<void> } {
  const pool = new pg.Pool(config);
  const open = new Set<pg.PoolClient>();
  pool.on('error', (err) => log.warn({ pool: name, error: err.message }, 'idle database connection lost'));
  pool.on('connect', (client) => {
    open.add(client);
    client.on('error', (err) => log.warn({ pool: name, error: err.message }, 'database connection lost'));
  });
  pool.on('remove', (client) => open.delete(client));
  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      const drained = new Promise<void>((resolve) => {
        const check = () => open.size === 0 && resolve();
        pool.on('remove', check);
        check();
      });
      await pool.end().catch(() => {});
      // Bounded: a connection never given back must not keep the process from exiting.
      let timer: NodeJS.Timeout | undefined;
      const done = await Promise.race([drained.then(() => true), new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), 10_000)))]);
      clearTimeout(timer);
      if (!done) log.warn({ pool: name, open: open.size }, 'database connections still open after 10 s; closing anyway');
    })());
  return { pool, close };
}

export async function openDatabase(config: Config, log: Logger, appName = 'cabinet-leads', opts: StartOptions = {}): Promise<Database> {
  let embedded: EmbeddedServer | undefined;
  let connectionString: string;
  if (config.databaseUrl !== undefined) {
    connectionString = config.databaseUrl;
  } else {
    try {
      embedded = await startEmbedded(config.dataDir, log, { transport: config.embeddedTransport, ...opts });
    } catch (err) {
      if (err instanceof Error && err.name === 'AbortError') throw err;
      throw new ConfigError(err instanceof Error ? err.message : String(err));
    }
    connectionString = embedded.connectionString;
  }
  const { pool, close: closePool } = openPool(
    {
      connectionString,
      connectionTimeoutMillis: config.connectTimeoutSeconds * 1000,
      application_name: appName,
      max: 4,
      // Before a new connection is handed out: no command waits more than 30 s for a lock.
      onConnect: (client) => boundLockWaits(client, 'session').catch((err: Error) => log.warn({ error: err.message }, 'could not bound lock_timeout')),
    },
    log,
  );
  const close = async () => {
    await closePool();
    // Only now: every session of ours has ended, the server stops under nobody.
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
