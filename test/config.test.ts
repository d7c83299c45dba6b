import test from 'ava';
import { loadConfig } from '../src/config.js';

test('an unreachable database fails after 5 seconds by default, leaving start-up time under the 15 s budget', (t) => {
  t.is(loadConfig({}).connectTimeoutSeconds, 5);
  t.is(loadConfig({ DATABASE_CONNECT_TIMEOUT: '12' }).connectTimeoutSeconds, 12);
});

test('DATABASE_URL unset means the embedded server; set means that server', (t) => {
  t.is(loadConfig({}).databaseUrl, undefined);
  t.is(loadConfig({ DATABASE_URL: 'postgres://u@db:5432/x' }).databaseUrl, 'postgres://u@db:5432/x');
});

test('bad environment values are refused with their name and value', (t) => {
  t.throws(() => loadConfig({ DATABASE_CONNECT_TIMEOUT: 'soon' }), { message: /invalid DATABASE_CONNECT_TIMEOUT="soon"/ });
  // Node's timers hold at most 2^31-1 ms: a larger timeout would fire at once ("unreachable").
  t.throws(() => loadConfig({ DATABASE_CONNECT_TIMEOUT: '99999999999' }), { message: /invalid DATABASE_CONNECT_TIMEOUT="99999999999": expected a positive number of seconds, at most 2147483/ });
  t.is(loadConfig({ DATABASE_CONNECT_TIMEOUT: '2147483' }).connectTimeoutSeconds, 2147483);
  t.throws(() => loadConfig({ LOG_FORMAT: 'xml' }), { message: /invalid LOG_FORMAT="xml"/ });
  t.throws(() => loadConfig({ DATABASE_URL: 'mysql://x' }), { message: /invalid DATABASE_URL/ });
  t.throws(() => loadConfig({ ALERT_WEBHOOK_URL: 'ftp://x' }), { message: /^invalid ALERT_WEBHOOK_URL: expected an http\(s\) URL .*scheme ftp:; value not shown/ });
});
