// Configuration from the environment, validated once. Every bad value is reported with
// its name and value. Settings that SQL must agree on (target park, business time zone)
// are not here: they live in canon.settings so that psql and the job see the same.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from './errors.js';

export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export type LogFormat = 'json' | 'pretty';

export interface Config {
  /** Connection string of an existing server; when undefined an embedded server is used. */
  databaseUrl: string | undefined;
  /** Folder holding the embedded server's data (ignored by git). */
  dataDir: string;
  /** How an embedded server this process starts listens: a private Unix socket, or TCP with a password (Windows). */
  embeddedTransport: 'socket' | 'tcp';
  logLevel: string;
  logFormat: LogFormat;
  /** Seconds to wait for the database before giving up with exit code 2. */
  connectTimeoutSeconds: number;
  /** Optional URL that receives firing alerts as JSON. */
  alertWebhookUrl: string | undefined;
}

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

/** A number of seconds that Node's timers can hold (2^31-1 ms); a larger one fires at once. */
const MAX_TIMER_SECONDS = 2147483;

function positiveSeconds(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0 || n > MAX_TIMER_SECONDS) {
    throw new ConfigError(`invalid ${name}=${JSON.stringify(raw)}: expected a positive number of seconds, at most ${MAX_TIMER_SECONDS}`);
  }
  return n;
}

/**
 * ALERT_WEBHOOK_URL, checked without ever echoing it: its path, query or user:password@
 * may hold a token. Credentials in it are sent as an Authorization: Basic header
 * (src/alerts.ts), which fetch refuses to take from the URL itself.
 */
function webhookUrl(raw: string | undefined): string | undefined {
  const value = raw?.trim() || undefined;
  if (value === undefined) return undefined;
  let url: URL | undefined;
  try {
    url = new URL(value);
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.hostname === '') {
    throw new ConfigError(
      `invalid ALERT_WEBHOOK_URL: expected an http(s) URL such as https://hooks.example.com/path (${url ? `scheme ${url.protocol}` : 'not a URL'}; value not shown, it may hold a token)`,
    );
  }
  return value;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const databaseUrl = env.DATABASE_URL && env.DATABASE_URL.trim() !== '' ? env.DATABASE_URL.trim() : undefined;
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    throw new ConfigError(
      'invalid DATABASE_URL: expected postgres://user@host:port/database (value not shown, it may hold a password)',
    );
  }
  const logLevel = (env.LOG_LEVEL ?? 'info').toLowerCase();
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError(`invalid LOG_LEVEL=${JSON.stringify(env.LOG_LEVEL)}: expected one of ${LOG_LEVELS.join(', ')}`);
  }
  const rawFormat = env.LOG_FORMAT?.toLowerCase();
  if (rawFormat !== undefined && rawFormat !== '' && rawFormat !== 'json' && rawFormat !== 'pretty') {
    throw new ConfigError(`invalid LOG_FORMAT=${JSON.stringify(env.LOG_FORMAT)}: expected json or pretty`);
  }
  const logFormat: LogFormat =
    rawFormat === 'json' || rawFormat === 'pretty'
      ? rawFormat
      : process.stderr.isTTY && env.NODE_ENV !== 'production'
        ? 'pretty'
        : 'json';
  const rawTransport = env.CABINET_EMBEDDED_TRANSPORT?.trim().toLowerCase() || undefined;
  if (rawTransport !== undefined && rawTransport !== 'socket' && rawTransport !== 'tcp') {
    throw new ConfigError(`invalid CABINET_EMBEDDED_TRANSPORT=${JSON.stringify(env.CABINET_EMBEDDED_TRANSPORT)}: expected socket or tcp`);
  }
  if (rawTransport === 'socket' && process.platform === 'win32') {
    throw new ConfigError('invalid CABINET_EMBEDDED_TRANSPORT=socket: Windows has no Unix socket for the embedded server; use tcp (the default there)');
  }
  return {
    databaseUrl,
    dataDir: path.resolve(PROJECT_ROOT, env.CABINET_DATA_DIR ?? '.data'),
    embeddedTransport: rawTransport ?? (process.platform === 'win32' ? 'tcp' : 'socket'),
    logLevel,
    logFormat,
    connectTimeoutSeconds: positiveSeconds(env, 'DATABASE_CONNECT_TIMEOUT', 5),
    alertWebhookUrl: webhookUrl(env.ALERT_WEBHOOK_URL),
  };
}
