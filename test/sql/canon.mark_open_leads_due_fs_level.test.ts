// canon.mark_open_leads_due_fs_level: the row trigger on canon.match_fs_levels. An m or u of
// the active version of the probabilistic tier can change the outcome of every lead left
// unmatched: every OPEN one is due for a retry. The levels of an inactive version (one being
// written, an EM estimate waiting for a person) mark nothing.
import test from 'ava';
import { type TestDb, withDb } from '../helpers/db.js';
import { insertUnmatched } from '../helpers/steps.js';

async function openDue(db: TestDb): Promise<Record<string, boolean>> {
  const rows = await db.query<{ source_pk: string; retry_due: boolean }>(`SELECT source_pk, retry_due FROM canon.identity_unmatched ORDER BY source_pk`);
  return Object.fromEntries(rows.map((r) => [r.source_pk, r.retry_due]));
}

async function version2(db: TestDb): Promise<void> {
  await db.query(`
    INSERT INTO canon.match_fs_versions (version, prior_match_share, link_probability_min, review_probability_min, margin_bits_min,
                                         rare_token_max_share, name_block_max_drivers, token_share_min, notes)
    SELECT 2, prior_match_share, link_probability_min, review_probability_min, margin_bits_min, rare_token_max_share,
           name_block_max_drivers, token_share_min, 'a copy' FROM canon.match_fs_versions WHERE version = 1`);
}

test('writing, changing and deleting the levels of an inactive version marks no lead', (t) =>
  withDb('fs_level_due', async (db) => {
    await insertUnmatched(db, 'open');
    await insertUnmatched(db, 'resolved', { status: 'RESOLVED' });
    await version2(db);
    await db.query(`INSERT INTO canon.match_fs_levels SELECT 2, comparison, level, m, u, u_kind, note FROM canon.match_fs_levels WHERE version = 1`);
    await db.query(`UPDATE canon.match_fs_levels SET m = 0.5 WHERE version = 2 AND comparison = 'PLATE' AND level = 'EXACT'`);
    await db.query(`DELETE FROM canon.match_fs_levels WHERE version = 2 AND comparison = 'PARK'`);
    t.deepEqual(await openDue(db), { open: false, resolved: false });
  }));

test('a change of an m of the active version marks every OPEN lead due, RESOLVED ones not', (t) =>
  withDb('fs_level_due', async (db) => {
    await insertUnmatched(db, 'open');
    await insertUnmatched(db, 'resolved', { status: 'RESOLVED' });
    await db.query(`UPDATE canon.match_fs_levels SET m = 0.5 WHERE version = 1 AND comparison = 'PLATE' AND level = 'EXACT'`);
    t.deepEqual(await openDue(db), { open: true, resolved: false });
  }));

test('deleting a level of the active version, or emptying the table, marks every OPEN lead due', (t) =>
  withDb('fs_level_due', async (db) => {
    await insertUnmatched(db, 'open');
    await db.query(`DELETE FROM canon.match_fs_levels WHERE version = 1 AND comparison = 'PARK' AND level = 'OTHER'`);
    t.deepEqual(await openDue(db), { open: true });
    await db.query(`UPDATE canon.identity_unmatched SET retry_due = false`);
    await db.query(`TRUNCATE canon.match_fs_levels`);
    t.deepEqual(await openDue(db), { open: true });
  }));
