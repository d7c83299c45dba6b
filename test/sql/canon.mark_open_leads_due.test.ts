// canon.mark_open_leads_due: the statement trigger on canon.match_rules and
// canon.match_parameters, the row triggers on the active version of canon.match_fs_versions.
// A rule change can change the outcome of every lead left unmatched: every OPEN one is due
// for a retry; RESOLVED and IGNORED ones are not. An inactive version changes nothing.
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

/** Version 2 of the probabilistic tier, a copy of version 1, inactive. */
const INSERT_VERSION_2 = `
  INSERT INTO canon.match_fs_versions (version, prior_match_share, link_probability_min, review_probability_min, margin_bits_min,
                                       rare_token_max_share, name_block_max_drivers, token_share_min, notes)
  SELECT 2, prior_match_share, link_probability_min, review_probability_min, margin_bits_min, rare_token_max_share,
         name_block_max_drivers, token_share_min, 'a copy' FROM canon.match_fs_versions WHERE version = 1`;

test('a new inactive version of the probabilistic tier marks no lead; activating it marks every OPEN one', (t) =>
  withDb('open_leads_due', async (db) => {
    await unmatchedOfEachStatus(db);
    await db.query(INSERT_VERSION_2);
    await db.query(`UPDATE canon.match_fs_versions SET notes = 'written by a person' WHERE version = 2`);
    t.deepEqual(await due(db), { ignored: false, open: false, 'open-due': true, resolved: false });
    await db.query(`UPDATE canon.match_fs_versions SET active = (version = 2)`);
    t.deepEqual(await due(db), { ignored: false, open: true, 'open-due': true, resolved: false });
  }));

test('a change of the active version\'s bands marks every OPEN lead due; deleting an inactive version marks none', (t) =>
  withDb('open_leads_due', async (db) => {
    await unmatchedOfEachStatus(db);
    await db.query(INSERT_VERSION_2);
    await db.query(`DELETE FROM canon.match_fs_versions WHERE version = 2`);
    t.deepEqual(await due(db), { ignored: false, open: false, 'open-due': true, resolved: false });
    await db.query(`UPDATE canon.match_fs_versions SET link_probability_min = 0.9995 WHERE version = 1`);
    t.deepEqual(await due(db), { ignored: false, open: true, 'open-due': true, resolved: false });
  }));
