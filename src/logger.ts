// pino logger: JSON lines in production (and whenever stderr is not a terminal),
// pino-pretty in a terminal. Logs go to stderr so that stdout stays for results.
// Both destinations are synchronous: a one-shot CLI must not lose its last lines.
import { createRequire } from 'node:module';
import { destination, pino, type Logger } from 'pino';
import type PinoPretty from 'pino-pretty';
import type { Config } from './config.js';

export type { Logger };

export function createLogger(config: Pick<Config, 'logLevel' | 'logFormat'>): Logger {
  if (config.logFormat === 'pretty') {
    // Loaded only for a terminal: cron and the worker (JSON) start without it.
    const pretty = createRequire(import.meta.url)('pino-pretty') as typeof PinoPretty;
    return pino(
      { level: config.logLevel },
      pretty({ destination: 2, sync: true, colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' }),
    );
  }
  return pino({ level: config.logLevel }, destination({ fd: 2, sync: true }));
}
