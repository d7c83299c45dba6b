// canon.mark_open_leads_due: the statement trigger on canon.match_rules and
// canon.match_parameters. A rule change can change the outcome of every lead left
// unmatched: every OPEN one is due for a retry; RESOLVED and IGNORED ones are not.
import test from 'ava';
import { type TestDb, withDb } from '../helpers/db.js';
import { insertUnmatched } from '../helpers/steps.js';

async function due(db: TestDb): Promise<Record<string, boolean>> {
  const rows = await db.query<{ source_pk: string; retry_due: boolean }>(`SELECT source_pk, retry_due FROM canon.identity_unmatched ORDER BY source_pk`);
  return Object.fromEntries(rows.map((r) => [r.source_pk, r.retry_due]));
}

async function unmatchedOfEachStatus(db: TestDb): Promise<void> {
  await insertUnmatched(db, 'open');
  await insertUnmatched(db, 'open-due', { retry_due: true });
  await insertUnmatched(db, 'resolved', { status: 'RESOLVED' });
  await insertUnmatched(db, 'ignored', { status: 'IGNORED' });
}

test('a change of canon.match_parameters makes every OPEN unmatched lead due; RESOLVED and IGNORED ones are left as they are', (t) =>
  withDb('open_leads_due', async (db) => {
    await unmatchedOfEachStatus(db);
    await db.query(`UPDATE canon.match_parameters SET name_similarity_min = 0.95`);
    t.deepEqual(await due(db), { ignored: false, open: true, 'open-due': true, resolved: false });
  }));

test('a change of a score in canon.match_rules does the same', (t) =>
  withDb('open_leads_due', async (db) => {
    await unmatchedOfEachStatus(db);
    await db.query(`UPDATE canon.match_rules SET score = 81 WHERE rule = 'R3B_PLATE_NAME_NO_DATE'`);
    t.deepEqual(await due(db), { ignored: false, open: true, 'open-due': true, resolved: false });
  }));
