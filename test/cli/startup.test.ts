// What a command loads before it runs: exceljs (about 200 packages, a second or more to
// load on a busy machine) only when a workbook is read or written, so that every other
// command, and the cron path, starts without it.
import { createRequire } from 'node:module';
import test from 'ava';

test('the command modules load without exceljs; reading or writing a workbook loads it', async (t) => {
  const cache = createRequire(import.meta.url).cache;
  const excel = () => Object.keys(cache).filter((k) => k.includes(`${'/'}exceljs/`)).length;
  await import('../../src/cli/export.js');
  await import('../../src/cli/import-leads.js');
  await import('../../src/import/load-leads.js');
  await import('../../src/export/run-export.js');
  t.is(excel(), 0, 'no exceljs module loaded by importing the commands');
  await import('../../src/export/xlsx.js');
  t.true(excel() > 0, 'the xlsx writer loads it');
});
