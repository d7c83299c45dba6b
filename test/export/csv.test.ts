// CSV fields for Excel: formulas defused (OWASP CSV injection), text quoted, amounts with
// the decimal separator that goes with the delimiter.
import test from 'ava';
import { csvField, guardFormula } from '../../src/export/csv.js';

const semicolon = { delimiter: ';', decimal: ',' };
const comma = { delimiter: ',', decimal: '.' };

test('a text value starting with = + - @ TAB or CR gets a leading quote; other text is left alone', (t) => {
  for (const v of ['=1+2', '+51 977', '-5', '@SUM(A1)', '\tx', '\rx', '=HYPERLINK("http://x","y")']) t.is(guardFormula(v), `'${v}`, JSON.stringify(v));
  for (const v of ['Ana', ' =1', 'a=b', '5-3', "'quoted", '', 'Ñandú']) t.is(guardFormula(v), v, JSON.stringify(v));
});

test('text fields are always quoted with quotes doubled; NULL is an empty field', (t) => {
  t.is(csvField('=HYPERLINK("http://x","y")', 'text', semicolon), `"'=HYPERLINK(""http://x"",""y"")"`);
  t.is(csvField('Pérez; "Ñato"', 'text', semicolon), '"Pérez; ""Ñato"""');
  t.is(csvField('line\r\nbreak', 'text', comma), '"line\r\nbreak"');
  t.is(csvField(null, 'text', semicolon), '');
  t.is(csvField('', 'text', semicolon), '""');
});

test('amounts take the decimal separator; numbers, dates and flags are written as they are', (t) => {
  t.is(csvField('1234.50', 'money', semicolon), '1234,50');
  t.is(csvField('1234.50', 'money', comma), '1234.50');
  t.is(csvField('1234.50', 'money', { delimiter: ',', decimal: ',' }), '"1234,50"');
  t.is(csvField('-5', 'integer', semicolon), '-5', 'a number is not a formula');
  t.is(csvField('2026-11-20', 'date', semicolon), '2026-11-20');
  t.is(csvField('2026-11-20 09:15:00', 'datetime', semicolon), '2026-11-20 09:15:00');
  t.is(csvField('true', 'boolean', semicolon), 'true');
});
