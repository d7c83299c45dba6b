// pino logger: JSON lines in production (and whenever stderr is not a terminal),
// pino-pretty in a terminal. Logs go to stderr so that stdout stays for results.
// Both destinations are synchronous: a one-shot CLI must not lose its last lines.
import { destination, pino, type Logger } from 'pino';
import pretty from 'pino-pretty';
import type { Config } from './config.js';

export type { Logger };

export function createLogger(config: Pick<Config, 'logLevel' | 'logFormat'>): Logger {
  if (config.logFormat === 'pretty') {
    return pino(
      { level: config.logLevel },
      pretty({ destination: 2, sync: true, colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' }),
    );
  }
  return pino({ level: config.logLevel }, destination({ fd: 2, sync: true }));
}
