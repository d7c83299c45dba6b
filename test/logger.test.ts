// The logger censors fields that name a secret, wherever a caller or a library puts
// them (a second line of defence: docs/security.md), in a real process writing to stderr.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import test from 'ava';
import { PROJECT_ROOT } from '../src/config.js';

test('password, connectionString, authorization and the secret environment variables are censored, also one level down', (t) => {
  const logger = pathToFileURL(path.join(PROJECT_ROOT, 'src', 'logger.ts')).href;
  const script = `
    const { createLogger } = await import(${JSON.stringify(logger)});
    const log = createLogger({ logLevel: 'trace', logFormat: 'json' });
    log.trace({ connectionString: 'postgres://u:pw-1@h/d', password: 'pw-2', client: { password: 'pw-3', user: 'kept' },
                headers: { authorization: 'Basic pw-4' }, env: { DATABASE_URL: 'postgres://u:pw-5@h/d', ALERT_WEBHOOK_URL: 'https://h/pw-6' } }, 'connecting');`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: PROJECT_ROOT, encoding: 'utf8' });
  t.is(r.status, 0, r.stderr);
  const line = JSON.parse(r.stderr.trim()) as Record<string, unknown>;
  t.like(line, {
    msg: 'connecting',
    connectionString: '[redacted]',
    password: '[redacted]',
    client: { password: '[redacted]', user: 'kept' },
    headers: { authorization: '[redacted]' },
    env: { DATABASE_URL: '[redacted]', ALERT_WEBHOOK_URL: '[redacted]' },
  });
  t.notRegex(r.stderr, /pw-\d/);
});
