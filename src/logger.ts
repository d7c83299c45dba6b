// pino logger: JSON lines in production (and whenever stderr is not a terminal),
// pino-pretty in a terminal. Logs go to stderr so that stdout stays for results.
// Both destinations are synchronous: a one-shot CLI must not lose its last lines.
// No secret is logged (docs/security.md): URLs are logged by host only where they are
// logged (src/db.ts describeUrl, src/alerts.ts webhookTarget); as a second line of
// defence, fields that name a secret are censored wherever they appear (e.g. in an
// object a library hands to the logger).
import { createRequire } from 'node:module';
import { destination, pino, type Logger, type LoggerOptions } from 'pino';
import type PinoPretty from 'pino-pretty';
import type { Config } from './config.js';

export type { Logger };

const SECRET_FIELDS = ['password', 'connectionString', 'databaseUrl', 'authorization', 'PGPASSWORD', 'DATABASE_URL', 'ALERT_WEBHOOK_URL'];

/** The censored paths: each field at the top level, one level down, and in request headers. */
const REDACT: LoggerOptions['redact'] = {
  paths: [...SECRET_FIELDS, ...SECRET_FIELDS.map((f) => `*.${f}`), 'headers.authorization', '*.headers.authorization'],
  censor: '[redacted]',
};

export function createLogger(config: Pick<Config, 'logLevel' | 'logFormat'>): Logger {
  if (config.logFormat === 'pretty') {
    // Loaded only for a terminal: cron and the worker (JSON) start without it.
    const pretty = createRequire(import.meta.url)('pino-pretty') as typeof PinoPretty;
    return pino(
      { level: config.logLevel, redact: REDACT },
      pretty({ destination: 2, sync: true, colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' }),
    );
  }
  return pino({ level: config.logLevel, redact: REDACT }, destination({ fd: 2, sync: true }));
}
