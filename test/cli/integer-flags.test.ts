// Every integer flag of every command, run as the real CLI: a value that is negative,
// not an integer, above 2^31-1 or above what the option means exits 2 with a one-line
// message naming the flag and the value, before any database is opened (so DATABASE_URL
// points nowhere here: a database error would be exit 2 "database unreachable").
import test from 'ava';
import { errorLine, runCli } from '../helpers/cli.js';

const NOWHERE = { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/nowhere' };

// [command, flag, largest valid value]
const FLAGS: [string, string, number][] = [
  ['reconcile', 'days-back', 36500],
  ['reconcile', 'limit', 2147483647],
  // statement_timeout holds at most 2147483647 ms
  ['reconcile', 'timeout', 2147483],
  ['status', 'runs', 1000],
  ['report', 'history-days', 36500],
  ['report', 'oldest', 1000],
  ['report', 'runs', 1000],
  ['demo', 'seed', 2147483647],
  ['demo', 'leads', 10_000_000],
  ['demo', 'drivers', 10_000_000],
  ['demo', 'trip-days', 3650],
];

for (const [command, flag, max] of FLAGS) {
  const bad = [...new Set(['99999999999', String(max + 1), '-1', '1.5'])];
  test(`${command} --${flag}: ${bad.map((v) => JSON.stringify(v)).join(', ')} exit 2 naming the flag and the value`, async (t) => {
    for (const value of bad) {
      const r = await runCli([command, `--${flag}`, value], NOWHERE);
      t.is(r.code, 2, `${command} --${flag} ${value}: ${r.stderr}`);
      const line = errorLine(r);
      t.true(line.startsWith(`cabinet-leads: error: ${command}: invalid --${flag} `), line);
      t.true(line.includes(value === '' || !/^-?\d+$/.test(value) ? JSON.stringify(value) : value), line);
      t.regex(line, /expected an integer from -?\d+ to \d+/);
      t.notRegex(r.stderr, /database|out of range for type|statement_timeout/);
    }
  });
}

test('reconcile --limit: above 2^31-1, blank, exponent or words exit 2 naming the value', async (t) => {
  for (const [value, shown] of [['2147483648', '2147483648'], ['', '""'], ['1e3', '"1e3"'], ['ten', '"ten"'], ['0x10', '"0x10"']]) {
    const r = await runCli(['reconcile', '--limit', value!], NOWHERE);
    t.is(r.code, 2, value);
    t.is(errorLine(r), `cabinet-leads: error: reconcile: invalid --limit ${shown}: expected an integer from 0 to 2147483647`);
  }
});

test('reconcile --limit 99999999999 and --timeout 99999999999 name the largest value allowed', async (t) => {
  const limit = await runCli(['reconcile', '--limit', '99999999999'], NOWHERE);
  t.is(limit.code, 2);
  t.is(errorLine(limit), 'cabinet-leads: error: reconcile: invalid --limit 99999999999: expected an integer from 0 to 2147483647');
  const timeout = await runCli(['reconcile', '--timeout', '99999999999'], NOWHERE);
  t.is(timeout.code, 2);
  t.is(errorLine(timeout), 'cabinet-leads: error: reconcile: invalid --timeout 99999999999: expected an integer from 0 to 2147483');
});
