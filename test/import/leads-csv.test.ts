// The value checks shared by CSV and xlsx imports: timestamps (ISO and day-first, as Excel
// writes them in a Spanish locale) and booleans (English and Spanish).
import test from 'ava';
import { parseBoolean, parseTimestamp } from '../../src/import/leads-csv.js';

test('reads day-first dates as Excel writes them in a Spanish locale, with or without seconds', (t) => {
  for (const [value, expected] of [
    ['20/11/2026 9:15', '2026-11-20 09:15:00'],
    ['20/11/2026 09:15:30', '2026-11-20 09:15:30'],
    ['5/3/2026 23:59:59', '2026-03-05 23:59:59'],
    ['20/11/2026', '2026-11-20 00:00:00'],
    ['29/02/2028 0:00', '2028-02-29 00:00:00'],
    ['3/12/2026 7:45 p. m.', '2026-12-03 19:45:00'],
    ['3/12/2026 12:05 a.m.', '2026-12-03 00:05:00'],
    ['3/12/2026 12:05 PM', '2026-12-03 12:05:00'],
  ] as const) {
    t.deepEqual(parseTimestamp(value, false), { ok: expected }, value);
  }
  t.deepEqual(parseTimestamp('20/11/2026 9:15', true), { ok: '2026-11-20' }, 'a date column keeps the day');
});

test('keeps the ISO forms it accepted before', (t) => {
  t.deepEqual(parseTimestamp('2026-01-10 09:15:00.123456', false), { ok: '2026-01-10 09:15:00.123456' });
  t.deepEqual(parseTimestamp('2026-01-10T09:15', false), { ok: '2026-01-10 09:15:00' });
  t.deepEqual(parseTimestamp('2026-01-10', true), { ok: '2026-01-10' });
  t.deepEqual(parseTimestamp('2026-01-10 09:15', true), { ok: '2026-01-10' });
});

test('refuses month-first, impossible and two-digit-year dates, naming why', (t) => {
  t.deepEqual(parseTimestamp('11/20/2026 9:15', false), { error: 'is not a date (there is no month 20)' });
  t.deepEqual(parseTimestamp('31/04/2026', false), { error: 'is not a date (2026-04 has no day 31)' });
  t.deepEqual(parseTimestamp('29/02/2026', true), { error: 'is not a date (2026-02 has no day 29)' });
  t.deepEqual(parseTimestamp('20/11/2026 24:00', false), { error: 'is not a time of day' });
  t.deepEqual(parseTimestamp('20/11/2026 13:00 p. m.', false), { error: 'is not a time of day' });
  t.regex((parseTimestamp('20/11/26 9:15', false) as { error: string }).error, /^is not a timestamp \(expected .* day-first DD\/MM\/YYYY \[H:MM\[:SS\]\]\)$/);
  t.deepEqual(parseTimestamp('20-11-2026', true), { error: 'is not a date (expected YYYY-MM-DD or DD/MM/YYYY)' });
  t.deepEqual(parseTimestamp('2026-11-20T09:15:00-05:00', false), { error: 'has a time zone (lead times are local times, without zone)' });
});

test('reads Spanish booleans (VERDADERO/FALSO, SÍ/NO) besides the English ones, any case', (t) => {
  for (const v of ['VERDADERO', 'verdadero', 'Sí', 'SI', 'si', 'true', 'T', '1', 'yes', 'Y']) t.is(parseBoolean(v), 't', v);
  for (const v of ['FALSO', 'falso', 'NO', 'No', 'false', 'f', '0', 'n']) t.is(parseBoolean(v), 'f', v);
  for (const v of ['QUIZÁS', 'V', 'verdad', '2', '']) t.is(parseBoolean(v), undefined, v);
});
