// The invariants the database itself enforces at commit (deferred constraint triggers):
// no person without a link (CL010), no lead both linked and OPEN in
// canon.identity_unmatched (CL011), whichever row comes first and however it becomes
// OPEN; rows that cannot break them (a driver link, an unmatched row not OPEN) commit.
import test from 'ava';
import type pg from 'pg';
import { freshDb, type TestDb } from '../helpers/db.js';

const PERSON = '018f0000-0000-7000-8000-000000000001';
const person = `INSERT INTO canon.identity_registry (person_key, confidence_level) VALUES ('${PERSON}', 'HIGH');`;
const link = (table: string, pk: string) =>
  `INSERT INTO canon.identity_links (source_table, source_pk, person_key, match_rule, match_score, confidence_level)
   VALUES ('${table}', '${pk}', '${PERSON}', 'MANUAL', 100, 'HIGH');`;
const unmatched = (pk: string, status: string) =>
  `INSERT INTO canon.identity_unmatched (source_table, source_pk, reason_code, status)
   VALUES ('module_ct_cabinet_leads', '${pk}', 'NO_CANDIDATES', '${status}');`;

/** Runs the statements in one transaction; the SQLSTATE its COMMIT (or a statement) failed with, or 'committed'. */
async function commit(db: TestDb, sql: string): Promise<string> {
  const c: pg.PoolClient = await db.pool.connect();
  try {
    await c.query('BEGIN');
    await c.query(sql);
    await c.query('COMMIT');
    return 'committed';
  } catch (e) {
    await c.query('ROLLBACK').catch(() => {});
    return (e as { code?: string }).code ?? String(e);
  } finally {
    c.release();
  }
}

test('a person without a link is refused at commit (CL010); with one it commits', async (t) => {
  const db = await freshDb(t, 'inv_trg_orphan');
  t.is(await commit(db, person), 'CL010');
  t.is(await commit(db, person + link('drivers', 'D1')), 'committed');
  // Its last link removed: orphan again.
  t.is(await commit(db, `DELETE FROM canon.identity_links WHERE source_pk = 'D1';`), 'CL010');
});

test('a lead linked and OPEN-unmatched is refused at commit (CL011), in either order and when reopened', async (t) => {
  const db = await freshDb(t, 'inv_trg_open');
  t.is(await commit(db, person + link('drivers', 'D1') + link('module_ct_cabinet_leads', 'L1') + unmatched('L1', 'OPEN')), 'CL011');
  t.is(await commit(db, unmatched('L1', 'OPEN') + person + link('drivers', 'D1') + link('module_ct_cabinet_leads', 'L1')), 'CL011');
  // RESOLVED or IGNORED beside a link: allowed (the WHEN clauses skip them, the rule holds).
  t.is(await commit(db, person + link('drivers', 'D1') + link('module_ct_cabinet_leads', 'L1') + unmatched('L1', 'RESOLVED') + unmatched('L2', 'IGNORED')), 'committed');
  t.is(await commit(db, link('module_ct_cabinet_leads', 'L2')), 'committed');
  // Reopened while linked: refused; an OPEN row of a lead without a link: fine.
  t.is(await commit(db, `UPDATE canon.identity_unmatched SET status = 'OPEN' WHERE source_pk = 'L1';`), 'CL011');
  t.is(await commit(db, unmatched('L3', 'OPEN')), 'committed');
  // A lead link moved onto a lead that is OPEN: refused.
  t.is(await commit(db, `UPDATE canon.identity_links SET source_pk = 'L3' WHERE source_pk = 'L2';`), 'CL011');
  const [n] = await db.query<{ n: number }>(`
    SELECT count(*)::int AS n FROM canon.identity_links l
    JOIN canon.identity_unmatched u ON u.source_table = l.source_table AND u.source_pk = l.source_pk AND u.status = 'OPEN'`);
  t.is(n!.n, 0);
});
