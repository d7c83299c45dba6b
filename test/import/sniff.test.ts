// The delimiter of a CSV from its header, and the kind of file from its first bytes.
import test from 'ava';
import { formatOf, sniffDelimiter } from '../../src/import/sniff.js';

test('the delimiter is the one that splits the header into the required columns', (t) => {
  t.is(sniffDelimiter('external_id;lead_created_at;first_name\r\nx;2026-01-01;Ana, María\r\n'), ';');
  t.is(sniffDelimiter('external_id,lead_created_at,"first;name"\n'), ',');
  t.is(sniffDelimiter('\n\n;;;\nexternal_id\tlead_created_at\n'), '\t');
  t.is(sniffDelimiter('"external_id";"lead_created_at";"a,b,c,d"\n'), ';', 'quoted names, commas inside a quoted one');
  t.is(sniffDelimiter('EXTERNAL_ID ; Lead_Created_At\n'), ';');
});

test('without the required columns: the delimiter that splits the header most, else ","', (t) => {
  t.is(sniffDelimiter('a;b;c,d\n'), ';');
  t.is(sniffDelimiter('name\n'), ',');
  t.is(sniffDelimiter(''), ',');
});

test('the format is read from the bytes, not the name', (t) => {
  t.is(formatOf('leads.csv', Buffer.from('PK\x03\x04rest', 'latin1')), 'xlsx');
  t.is(formatOf('leads.xlsx', Buffer.from('PK\x03\x04', 'latin1')), 'xlsx');
  t.is(formatOf('leads.txt', Buffer.from('external_id,lead_created_at\n')), 'csv');
  t.throws(() => formatOf('leads.xls', Buffer.from([0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1])), { message: /Excel 97-2003 workbook/ });
  t.throws(() => formatOf('leads.xlsx', Buffer.from('external_id\n')), { message: /is named \.xlsx but is not an Excel workbook/ });
});
