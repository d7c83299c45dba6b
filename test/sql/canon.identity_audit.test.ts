// canon.identity_audit: the append-only history of identity decisions. The job's links
// are audited by a statement-level trigger (actor = its run), manual ones with the
// database user, the session's application_name and the note.
import test from 'ava';
import { freshDb, type TestDb } from '../helpers/db.js';
import { callPipeline, runPipeline } from '../helpers/pipeline.js';
import { insertDriver, insertLead } from '../helpers/rows.js';
import { linkPerson } from '../helpers/scenario.js';

interface AuditRow {
  action: string;
  source_table: string;
  source_pk: string;
  person_key: string | null;
  driver_id: string | null;
  match_rule: string | null;
  decided_by: string;
  actor: string;
  run_id: string | null;
  db_user: string;
  client: string | null;
  txid: string;
  note: string | null;
  details: Record<string, unknown>;
}

async function audit(db: TestDb, where = 'true'): Promise<AuditRow[]> {
  return db.query<AuditRow>(`SELECT *, person_key::text AS person_key FROM canon.identity_audit WHERE ${where} ORDER BY id`);
}

async function twoMatchingLeads(db: TestDb): Promise<void> {
  await insertDriver(db, { driver_id: 'j', first_name: 'Juan', last_name: 'Perez', phone: '51977456321' });
  await insertDriver(db, { driver_id: 'r', first_name: 'Rosa', last_name: 'Diaz', phone: '51977333444' });
  await insertLead(db, { external_id: 'L1', first_name: 'Juan', last_name: 'Perez', park_phone: '977456321' });
  await insertLead(db, { external_id: 'L2', first_name: 'Rosa', last_name: 'Diaz', park_phone: '977333444' });
  await insertLead(db, { external_id: 'L3', first_name: 'Nadie', last_name: null });
}

test('records every link the job writes, one row per link, with its run as actor', async (t) => {
  const db = await freshDb(t, 'audit');
  await twoMatchingLeads(db);
  const run = await runPipeline(db);
  const rows = await audit(db);
  t.is(rows.length, 4, 'two lead links and two driver links');
  t.deepEqual(rows.map((r) => `${r.source_table}:${r.source_pk}`).sort(), ['drivers:j', 'drivers:r', 'module_ct_cabinet_leads:L1', 'module_ct_cabinet_leads:L2']);
  for (const r of rows) {
    t.like(r, { action: 'LINK', decided_by: 'system', actor: `run ${run.id}`, run_id: String(run.id), note: null, match_rule: 'R1_PHONE_EXACT' });
  }
  t.is(new Set(rows.map((r) => r.txid)).size, 1, 'written in the run\'s one transaction');
  const links = await db.query<{ source_pk: string; person_key: string }>(`SELECT source_pk, person_key::text FROM canon.identity_links`);
  const personOf = new Map(links.map((l) => [l.source_pk, l.person_key]));
  for (const r of rows) t.is(r.person_key, personOf.get(r.source_pk)!);
  t.is(rows.find((r) => r.source_pk === 'j')!.driver_id, 'j');

  await runPipeline(db);
  t.is((await audit(db)).length, 4, 'a run that links nothing adds nothing');
});

test('a dry run and a failed run leave no audit row', async (t) => {
  const db = await freshDb(t, 'audit');
  await twoMatchingLeads(db);
  const dry = await runPipeline(db, 'p_dry_run => true');
  t.is(dry.stats['match']['newly_linked'], 2);
  const c = await db.connect();
  await c.query(`SET cabinet.failpoint = 'after_match'`);
  const failed = await callPipeline(c, 'p_raise_on_failure => false');
  t.is(failed.status, 'FAILED');
  t.deepEqual(await audit(db), []);
});

test('is append-only: UPDATE, DELETE and TRUNCATE are refused with CL020', async (t) => {
  const db = await freshDb(t, 'audit');
  await insertLead(db, { external_id: 'X', first_name: null, last_name: null });
  await db.query(`SELECT ops.ignore_lead('X', 'junk')`);
  for (const sql of [
    `UPDATE canon.identity_audit SET note = 'rewritten'`,
    `DELETE FROM canon.identity_audit`,
    `TRUNCATE canon.identity_audit`,
  ]) {
    const err = await t.throwsAsync(db.query(sql), undefined, sql);
    t.regex(err!.message, /canon\.identity_audit is append-only: (UPDATE|DELETE|TRUNCATE) refused/, sql);
    t.is((err as { code?: string }).code, 'CL020', sql);
  }
  t.like((await audit(db))[0]!, { action: 'IGNORE', note: 'junk' });
});

test('links written, moved and removed by hand in psql are audited with the database user', async (t) => {
  const db = await freshDb(t, 'audit');
  await insertLead(db, { external_id: 'H1', first_name: null, last_name: null });
  const p1 = await linkPerson(db, ['H1'], [{ driverId: 'd1' }]);
  const p2 = await linkPerson(db, [], [{ driverId: 'd2' }]);
  await db.query(`UPDATE canon.identity_links SET person_key = $1 WHERE source_pk = 'H1'`, [p2]);
  await db.query(`UPDATE canon.identity_links SET evidence = '{"checked": true}' WHERE source_pk = 'H1'`); // same person: not a relink
  const c = await db.connect();
  await c.query('BEGIN');
  await c.query(`DELETE FROM canon.identity_links WHERE person_key = $1`, [p1]);
  await c.query(`DELETE FROM canon.identity_registry WHERE person_key = $1`, [p1]);
  await c.query('COMMIT');

  const [me] = await db.query<{ u: string }>(`SELECT current_user AS u`);
  const rows = await audit(db);
  t.deepEqual(rows.map((r) => [r.action, r.source_pk, r.person_key]), [
    ['LINK', 'H1', p1],
    ['LINK', 'd1', p1],
    ['LINK', 'd2', p2],
    ['RELINK', 'H1', p2],
    ['UNLINK', 'd1', p1],
  ]);
  for (const r of rows) t.like(r, { decided_by: 'manual', actor: me!.u, db_user: me!.u, run_id: null });
  t.is((rows[3]!.details['previous_link'] as { person_key: string }).person_key, p1);
  t.like(rows[4]!.details['removed_link'] as object, { source_pk: 'd1', match_rule: 'R1_PHONE_EXACT' });
});

test('a manual resolution records who (database user, application_name) and why, in one transaction', async (t) => {
  const db = await freshDb(t, 'audit');
  await insertDriver(db, { driver_id: 'k', first_name: 'Kike', last_name: 'Rojas' });
  await insertLead(db, { external_id: 'M1', first_name: 'Enrique', last_name: 'Rojas' });
  const c = await db.connect();
  await c.query(`SET application_name = 'cabinet-leads resolve-lead (ana@ops-pc)'`);
  await c.query(`SELECT ops.resolve_lead('M1', 'k', 'Enrique is Kike, confirmed by phone')`);
  const [me] = await db.query<{ u: string }>(`SELECT current_user AS u`);
  const rows = await audit(db);
  t.deepEqual(rows.map((r) => [r.action, r.source_pk]), [['LINK', 'k'], ['LINK', 'M1'], ['RESOLVE', 'M1']]);
  for (const r of rows) {
    t.like(r, {
      decided_by: 'manual',
      actor: me!.u,
      client: 'cabinet-leads resolve-lead (ana@ops-pc)',
      note: 'Enrique is Kike, confirmed by phone',
      match_rule: 'MANUAL_RESOLUTION',
    });
  }
  t.is(new Set(rows.map((r) => r.txid)).size, 1);
  t.like(rows[2]!, { driver_id: 'k' });
  t.like(rows[2]!.details, { person_created: true, lead_source_pk: 'M1' });
  t.like(rows[1]!.details, { operation: 'resolve_lead' });
  // The note does not leak to later statements of the same session.
  await c.query(`INSERT INTO canon.identity_links (source_table, source_pk, person_key, match_rule, match_score, confidence_level)
                 SELECT 'drivers', 'k2', person_key, 'R1_PHONE_EXACT', 95, 'HIGH' FROM canon.identity_links WHERE source_pk = 'M1'`);
  t.is((await audit(db, `source_pk = 'k2'`))[0]!.note, null);
});
