// Excel's serial numbers as the wall-clock times they show, in both date systems, and
// cells as the text the import checks.
import test from 'ava';
import { cellText, serialToWallClock, wallClock } from '../../src/import/leads-xlsx.js';

test('serial numbers of the 1900 system, its invented 1900-02-29 included', (t) => {
  t.is(serialToWallClock(1, false), '1900-01-01 00:00:00');
  t.is(serialToWallClock(59, false), '1900-02-28 00:00:00');
  t.is(serialToWallClock(60, false), undefined, '1900-02-29 does not exist');
  t.is(serialToWallClock(61, false), '1900-03-01 00:00:00');
  t.is(serialToWallClock(46346, false), '2026-11-20 00:00:00');
  t.is(serialToWallClock(46346.385416666664, false), '2026-11-20 09:15:00', '9:15 stored as a binary fraction');
  t.is(serialToWallClock(46346.38542824074, false), '2026-11-20 09:15:01');
  t.is(serialToWallClock(2958465.999988426, false), '9999-12-31 23:59:59');
  for (const bad of [0, -1, 2958466, Number.NaN, Number.POSITIVE_INFINITY]) t.is(serialToWallClock(bad, false), undefined, String(bad));
});

test('serial numbers of the 1904 system', (t) => {
  t.is(serialToWallClock(0, true), '1904-01-01 00:00:00');
  t.is(serialToWallClock(44884.385416666664, true), '2026-11-20 09:15:00');
});

test('a Date cell is its UTC fields; cells become text by the column they load', (t) => {
  t.is(wallClock(new Date(Date.UTC(2026, 10, 20, 9, 15, 0, 250))), '2026-11-20 09:15:00.250');
  t.deepEqual(cellText(new Date(Date.UTC(2026, 10, 20)), 'text', false), { text: '2026-11-20' });
  t.deepEqual(cellText(46346.5, 'timestamp', false), { text: '2026-11-20 12:00:00' });
  t.deepEqual(cellText(46346.5, 'text', false), { text: '46346.5' });
  t.deepEqual(cellText(51977456321, 'text', false), { text: '51977456321' });
  t.deepEqual(cellText(20261120, 'timestamp', false), { text: '20261120' }, 'no date: left for the check to refuse');
  t.deepEqual(cellText(true, 'boolean', false), { text: 'true' });
  t.deepEqual(cellText({ richText: [{ text: 'Pé' }, { text: 'rez' }] }, 'text', false), { text: 'Pérez' });
  t.deepEqual(cellText({ formula: 'A1', result: 46346.25 }, 'timestamp', false), { text: '2026-11-20 06:00:00' });
  t.deepEqual(cellText({ formula: 'A1' }, 'text', false), { error: 'is a formula without a computed value (open and save the file in Excel)' });
  t.deepEqual(cellText({ error: '#DIV/0!' }, 'text', false), { error: 'is the Excel error #DIV/0!' });
  t.deepEqual(cellText({ text: 'web', hyperlink: 'https://example.org' }, 'text', false), { text: 'web' });
});
