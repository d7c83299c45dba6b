// ops.repair_lead_keys and migration 0029: lead keys stored under the old definition
// (btrim of spaces only) are brought to canon.lead_source_pk. The broken state of today is
// built for real: the old definition installed, two lead rows 'NB-1' and 'NB-1<TAB>', a
// pipeline run that links both and claims M1+M5+M25 for each (S/ 320 for one lead), some
// of it settled by finance; then the migration's own file runs and the lead is one lead,
// with nothing of the money lost.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { PROJECT_ROOT } from '../../src/config.js';
import { freshDb, type TestDb } from '../helpers/db.js';
import { runPipeline } from '../helpers/pipeline.js';
import { addTrips, businessToday, insertDriver, insertLead, tripsOnDays } from '../helpers/rows.js';
import { linkPerson } from '../helpers/scenario.js';
import { violations } from '../reliability/support.js';

// What re-keyed the databases keyed by the old definition (a data step of the migrations
// before the baseline): ops.repair_lead_keys, with a note saying why.
const REKEY = `SELECT ops.repair_lead_keys('migration 0029: lead keys re-keyed to canon.lead_source_pk (blanks at the ends of external_id: spaces, TAB, CR/LF, NBSP, other Unicode spaces)')`;
const NEW_DEFINITION = readFileSync(path.join(PROJECT_ROOT, 'sql', 'canon', 'canon.lead_source_pk.sql'), 'utf8');
/** canon.lead_source_pk as it was up to migration 0029: spaces only. */
const OLD_DEFINITION = `
  CREATE OR REPLACE FUNCTION canon.lead_source_pk(p_external_id text, p_id integer)
  RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$ SELECT COALESCE(NULLIF(btrim(p_external_id), ''), p_id::text) $$`;

/** Runs migration 0029's data step as node-pg-migrate does: in one transaction. */
async function runMigration(db: TestDb): Promise<void> {
  const c = await db.connect();
  await c.query('BEGIN');
  await c.query(NEW_DEFINITION);
  await c.query(REKEY);
  await c.query('COMMIT');
}

async function repair(db: TestDb, note = 'test repair'): Promise<Record<string, unknown>> {
  const [r] = await db.query<{ r: Record<string, unknown> }>(`SELECT ops.repair_lead_keys($1) AS r`, [note]);
  return r!.r;
}

interface Claim {
  lead_source_pk: string;
  milestone: number;
  status: string;
  amount_expected: string;
}

async function claims(db: TestDb): Promise<Claim[]> {
  return db.query<Claim>(`SELECT lead_source_pk, milestone, status, amount_expected FROM canon.claims_yango_cabinet_14d ORDER BY 1, 2`);
}

async function leadLinks(db: TestDb): Promise<{ source_pk: string; person_key: string }[]> {
  return db.query(`SELECT source_pk, person_key FROM canon.identity_links WHERE source_table = 'module_ct_cabinet_leads' ORDER BY 1`);
}

/** Today's broken state: two lead rows that differ by a TAB, linked and claimed twice under the old key. */
async function brokenState(t: Parameters<typeof freshDb>[0]): Promise<{ db: TestDb; ids: number[] }> {
  const db = await freshDb(t, 'repair_keys');
  await db.query(OLD_DEFINITION);
  const today = await businessToday(db);
  const [leadDate] = await db.query<{ d: string }>(`SELECT (canon.business_today() - 5)::text AS d`);
  await insertDriver(db, { driver_id: 'D-NB1', first_name: 'Juan', last_name: 'Perez', phone: '51977000111' });
  const ids = [
    (await insertLead(db, { external_id: 'NB-1\t', lead_created_at: `${leadDate!.d} 10:00`, first_name: 'Juan', last_name: 'Perez', park_phone: '977000111' })).id,
    (await insertLead(db, { external_id: 'NB-1', lead_created_at: `${leadDate!.d} 11:00`, first_name: 'Juan', last_name: 'Perez', park_phone: '977000111' })).id,
  ];
  await addTrips(db, 'D-NB1', tripsOnDays(leadDate!.d, [0, 1, 2, 3, 4], 5));
  t.truthy(today);
  const run = await runPipeline(db);
  if (run.status !== 'COMPLETED') throw new Error(`run ${run.status}: ${run.error_message}`);
  return { db, ids };
}

test('today\'s broken state: the old key made two leads of NB-1 and NB-1<TAB>, both linked, S/ 320 claimed', async (t) => {
  const { db } = await brokenState(t);
  const links = await leadLinks(db);
  t.deepEqual(links.map((l) => l.source_pk), ['NB-1', 'NB-1\t']);
  t.is(links[0]!.person_key, links[1]!.person_key);
  const [sum] = await db.query<{ n: number; total: string }>(`SELECT count(*)::int AS n, sum(amount_expected)::text AS total FROM canon.claims_yango_cabinet_14d`);
  t.deepEqual(sum, { n: 6, total: '320.00' });

  // doctor, once the key says what a lead is, flags the two keys of one lead
  await db.query(NEW_DEFINITION);
  const found = await violations(db);
  // (and the caches keyed under the old definition: the key row and the stored state of NB-1<TAB>)
  t.deepEqual(found.map((v) => [v.invariant, Number(v.violations)]),
    [['LEAD_KEYS_CURRENT', 1], ['LEAD_STATE_CURRENT', 1], ['LEAD_KEY_BLANK_ENDS', 1]]);
  t.deepEqual(found.find((v) => v.invariant === 'LEAD_KEY_BLANK_ENDS')!.examples, [
    'NB-1\\u0009 is lead NB-1: one lead under 2 keys (in cabinet_lead_state, claims_yango_cabinet_14d, identity_links, identity_origin, lead_keys)',
  ]);
});

test('migration 0029 makes them one lead: one link, one claim per milestone (settled first), the duplicates listed for finance with amounts', async (t) => {
  const { db, ids } = await brokenState(t);
  const [person] = await leadLinks(db);
  // Finance settled some of both: M1 paid under both keys (paid twice), M5 paid under the
  // TAB key only, M25 rejected under NB-1.
  await db.query(`
    UPDATE canon.claims_yango_cabinet_14d SET status = 'paid', paid_at = now()
    WHERE (lead_source_pk, milestone) IN (('NB-1', 1), (E'NB-1\\t', 1), (E'NB-1\\t', 5));
    UPDATE canon.claims_yango_cabinet_14d SET status = 'rejected' WHERE (lead_source_pk, milestone) = ('NB-1', 25);`);

  await runMigration(db);

  t.deepEqual(await leadLinks(db), [{ source_pk: 'NB-1', person_key: person!.person_key }]);
  t.deepEqual(await claims(db), [
    { lead_source_pk: 'NB-1', milestone: 1, status: 'paid', amount_expected: '25.00' },
    { lead_source_pk: 'NB-1', milestone: 5, status: 'paid', amount_expected: '35.00' },
    { lead_source_pk: 'NB-1', milestone: 25, status: 'rejected', amount_expected: '100.00' },
  ]);
  const dup = await db.query<{ milestone: number; duplicate_claimed_as: string; duplicate_claimed_as_shown: string; duplicate_status: string; duplicate_amount: string; kept_claimed_as: string; kept_status: string; duplicate_kind: string; finance_action: string }>(
    `SELECT milestone, duplicate_claimed_as, duplicate_claimed_as_shown, duplicate_status, duplicate_amount::text, kept_claimed_as, kept_status, duplicate_kind, finance_action
     FROM ops.v_cabinet_claims_duplicated WHERE lead_source_pk = 'NB-1' ORDER BY milestone`,
  );
  t.deepEqual(dup.map((d) => [d.milestone, d.duplicate_claimed_as, d.duplicate_status, d.duplicate_amount, d.kept_claimed_as, d.kept_status, d.duplicate_kind]), [
    [1, 'NB-1\t', 'paid', '25.00', 'NB-1', 'paid', 'PAID_TWICE'],
    [5, 'NB-1', 'generated', '35.00', 'NB-1\t', 'paid', 'DUPLICATE_NOT_SETTLED'],
    [25, 'NB-1\t', 'generated', '100.00', 'NB-1', 'rejected', 'DUPLICATE_NOT_SETTLED'],
  ]);
  t.is(dup[0]!.duplicate_claimed_as_shown, 'NB-1\\u0009');
  t.is(dup[0]!.finance_action, 'M1 of lead NB-1 was paid twice (25.00 PEN under NB-1, again under NB-1\\u0009): the second payment, 25.00 PEN, is owed back.');

  // The settled record follows the claims; every lead row and cache carries the one key.
  // (the records under the old key stay, stamped with the repair as why: history; M1 was
  // set aside, M5 lives on under NB-1, recorded there)
  t.deepEqual(await db.query(`SELECT lead_source_pk, milestone, status, unsettled_to, unsettled_note LIKE 'ops.repair_lead_keys (run %): migration 0029%' AS noted
                              FROM canon_internal.claims_settled WHERE unsettled_at IS NOT NULL ORDER BY 1, 2`),
    [{ lead_source_pk: 'NB-1\t', milestone: 1, status: 'paid', unsettled_to: 'deleted', noted: true },
     { lead_source_pk: 'NB-1\t', milestone: 5, status: 'paid', unsettled_to: 'deleted', noted: true }]);
  t.deepEqual(await db.query(`SELECT lead_source_pk, milestone, status FROM canon_internal.claims_settled WHERE unsettled_at IS NULL ORDER BY 1, 2`), [
    { lead_source_pk: 'NB-1', milestone: 1, status: 'paid' },
    { lead_source_pk: 'NB-1', milestone: 5, status: 'paid' },
    { lead_source_pk: 'NB-1', milestone: 25, status: 'rejected' },
  ]);
  t.deepEqual(await db.query(`SELECT lead_id, lead_source_pk FROM canon_internal.lead_keys ORDER BY 1`), ids.map((id) => ({ lead_id: id, lead_source_pk: 'NB-1' })));
  t.deepEqual(await db.query(`SELECT lead_id, lead_source_pk FROM canon_internal.cabinet_lead_state ORDER BY 1`), ids.map((id) => ({ lead_id: id, lead_source_pk: 'NB-1' })));
  t.deepEqual(await db.query(`SELECT origin_source_id FROM canon.identity_origin`), [{ origin_source_id: 'NB-1' }]);

  // Recorded: a run with what it did, the removed link in the identity audit with the note.
  const [run] = await db.query<{ id: string; status: string; stats: Record<string, unknown> }>(
    `SELECT id, status, stats FROM canon.ingestion_runs WHERE job_name = 'repair_lead_keys'`,
  );
  t.like(run!, { status: 'COMPLETED', stats: { keys_rekeyed: 1, leads_merged: 1, links_removed: 1, claims_set_aside: 3, claims_rekeyed: 1, claims_paid_twice: 1, lead_keys_rekeyed: 1 } });
  t.is(Number(run!.stats.claims_set_aside_amount), 160);
  t.deepEqual(run!.stats.examples, [{ from: 'NB-1\\u0009', to: 'NB-1' }]);
  const audit = await db.query<{ action: string; source_pk: string; note: string; details: { repair_run_id: number } }>(
    `SELECT action, source_pk, note, details FROM canon.identity_audit WHERE note LIKE 'migration 0029%' ORDER BY id`,
  );
  t.deepEqual(audit.map((a) => [a.action, a.source_pk]), [['UNLINK', 'NB-1\t']]);
  t.is(String(audit[0]!.details.repair_run_id), run!.id);

  // The next run claims nothing again and sees one lead (its two rows) with every claim.
  t.deepEqual(await violations(db), []);
  const next = await runPipeline(db);
  t.like(next.stats.claims, { claims_generated: 0 });
  const limbo = await db.query<{ lead_id: number; lead_source_pk: string; limbo_stage: string; has_claim_m1: boolean; has_claim_m5: boolean; has_claim_m25: boolean }>(
    `SELECT lead_id, lead_source_pk, limbo_stage, has_claim_m1, has_claim_m5, has_claim_m25 FROM ops.v_cabinet_leads_limbo ORDER BY lead_id`,
  );
  t.deepEqual(limbo, ids.map((id) => ({ lead_id: id, lead_source_pk: 'NB-1', limbo_stage: 'OK', has_claim_m1: true, has_claim_m5: true, has_claim_m25: true })));
  t.deepEqual(await violations(db), []);

  // Idempotent: the migration step again changes nothing and logs nothing.
  await runMigration(db);
  t.is((await db.query(`SELECT 1 FROM canon.ingestion_runs WHERE job_name = 'repair_lead_keys'`)).length, 1);
  t.is((await claims(db)).length, 3);
  t.is((await db.query(`SELECT 1 FROM canon.claims_duplicates`)).length, 3);
});

test('a linked key and its OPEN twin: the lead stays linked, its unmatched row RESOLVED', async (t) => {
  const db = await freshDb(t, 'repair_keys_open');
  await insertLead(db, { external_id: 'L-1', first_name: null, last_name: null });
  const person = await linkPerson(db, ['L-1'], [{ driverId: 'D-1' }]);
  await db.query(`INSERT INTO canon.identity_unmatched (source_table, source_pk, reason_code, status)
                  VALUES ('module_ct_cabinet_leads', E'\\u00a0L-1', 'NO_CANDIDATES', 'OPEN')`);
  const r = await repair(db);
  t.like(r, { keys_rekeyed: 1, unmatched_rekeyed: 1, links_removed: 0 });
  t.deepEqual(await leadLinks(db), [{ source_pk: 'L-1', person_key: person }]);
  t.deepEqual(await db.query(`SELECT source_pk, status FROM canon.identity_unmatched`), [{ source_pk: 'L-1', status: 'RESOLVED' }]);
  t.deepEqual(await violations(db), []);
});

test('two unmatched twins keep the IGNORED decision under the one key', async (t) => {
  const db = await freshDb(t, 'repair_keys_ignored');
  await insertLead(db, { external_id: 'L-2', first_name: null, last_name: null });
  await db.query(`INSERT INTO canon.identity_unmatched (source_table, source_pk, reason_code, status, note, last_attempt_at)
                  VALUES ('module_ct_cabinet_leads', 'L-2', 'NO_CANDIDATES', 'OPEN', NULL, now()),
                         ('module_ct_cabinet_leads', E'L-2\\u200b', 'MANUAL_IGNORE', 'IGNORED', 'support test lead', now() - interval '1 day')`);
  await repair(db);
  t.deepEqual(await db.query(`SELECT source_pk, status, note FROM canon.identity_unmatched`), [{ source_pk: 'L-2', status: 'IGNORED', note: 'support test lead' }]);
});

test('two persons for one lead: the link with settled money survives; a person left without a link goes with its origin', async (t) => {
  const db = await freshDb(t, 'repair_keys_persons');
  await insertLead(db, { external_id: 'L-3', first_name: null, last_name: null });
  const kept = await linkPerson(db, ['L-3\r\n'], [{ driverId: 'D-3' }]);
  const gone = await linkPerson(db, ['L-3'], []);
  await db.query(`INSERT INTO canon.identity_origin (person_key, origin_tag, origin_source_id, confidence_level, decided_by)
                  VALUES ($1, 'cabinet_lead', E'L-3\\r\\n', 'HIGH', 'system'), ($2, 'cabinet_lead', 'L-3', 'HIGH', 'system')`, [kept, gone]);
  await db.query(`INSERT INTO canon.claims_yango_cabinet_14d (lead_source_pk, milestone, person_key, driver_id, lead_date, amount_expected, status, paid_at)
                  VALUES (E'L-3\\r\\n', 1, $1, 'D-3', current_date - 3, 25, 'paid', now())`, [kept]);
  const r = await repair(db);
  t.like(r, { links_removed: 1, persons_removed: 1, links_rekeyed: 1, claims_rekeyed: 1, origins_rekeyed: 1 });
  t.deepEqual(await leadLinks(db), [{ source_pk: 'L-3', person_key: kept }]);
  t.deepEqual(await db.query(`SELECT person_key FROM canon.identity_registry`), [{ person_key: kept }]);
  t.deepEqual(await db.query(`SELECT person_key, origin_source_id FROM canon.identity_origin`), [{ person_key: kept, origin_source_id: 'L-3' }]);
  t.deepEqual(await db.query(`SELECT action, source_pk FROM canon.identity_audit WHERE note = 'test repair' ORDER BY id`), [
    { action: 'UNLINK', source_pk: 'L-3' },
    { action: 'RELINK', source_pk: 'L-3' },
  ]);
  t.deepEqual(await violations(db), []);
});

test('a key of blanks only: each lead row is keyed by its id, the first keeps what was keyed, the others are evaluated as new', async (t) => {
  const db = await freshDb(t, 'repair_keys_blank');
  await db.query(OLD_DEFINITION);
  const { id: first } = await insertLead(db, { external_id: '\t', first_name: null, last_name: null });
  const { id: second } = await insertLead(db, { external_id: '\u00a0\t', first_name: null, last_name: null });
  const { id: third } = await insertLead(db, { external_id: '\t', first_name: null, last_name: null });
  await db.query(`SELECT canon.key_changed_leads(NULL)`);
  const person = await linkPerson(db, ['\t'], [{ driverId: 'D-4' }]);
  await db.query(`DELETE FROM canon_internal.lead_keys_pending`); // evaluated: linked under '\t'
  await db.query(NEW_DEFINITION);

  const r = await repair(db);
  t.like(r, { keys_rekeyed: 2, links_rekeyed: 1, leads_pending: 2 });
  t.deepEqual(await leadLinks(db), [{ source_pk: String(first), person_key: person }]);
  t.deepEqual(await db.query(`SELECT lead_id, lead_source_pk FROM canon_internal.lead_keys ORDER BY 1`), [
    { lead_id: first, lead_source_pk: String(first) },
    { lead_id: second, lead_source_pk: String(second) },
    { lead_id: third, lead_source_pk: String(third) },
  ]);
  t.deepEqual((await db.query<{ lead_id: number }>(`SELECT lead_id FROM canon_internal.lead_keys_pending ORDER BY 1`)).map((x) => x.lead_id), [second, third]);
  t.deepEqual(await violations(db), []);
});

test('a claim finance marks paid while the repair waits for it is decided on as paid, never set aside as generated', async (t) => {
  const db = await freshDb(t, 'repair_keys_race');
  await insertLead(db, { external_id: 'K-6', first_name: null, last_name: null });
  const person = await linkPerson(db, ['K-6', 'K-6\t'], [{ driverId: 'D-6' }]);
  await db.query(`INSERT INTO canon.claims_yango_cabinet_14d (lead_source_pk, milestone, person_key, driver_id, lead_date, amount_expected, status, generated_at)
                  SELECT k, 1, $1, 'D-6', current_date - 3, 25, 'generated', now() FROM unnest(ARRAY['K-6', E'K-6\\t']) k`, [person]);
  const finance = await db.connect();
  const repairer = await db.connect();
  await finance.query(`BEGIN`);
  await finance.query(`UPDATE canon.claims_yango_cabinet_14d SET status = 'paid', paid_at = now() WHERE lead_source_pk = E'K-6\\t'`);
  const pid = (await repairer.query<{ pid: number }>(`SELECT pg_backend_pid() AS pid`)).rows[0]!.pid;
  const repaired = repairer.query(`SELECT ops.repair_lead_keys('race') AS r`);
  // The repair waits for finance's row lock (no sleep: poll until it is seen waiting).
  for (let i = 0; ; i++) {
    const [w] = await db.query<{ waiting: boolean }>(`SELECT wait_event_type = 'Lock' AS waiting FROM pg_stat_activity WHERE pid = $1`, [pid]);
    if (w?.waiting) break;
    if (i > 600) t.fail('the repair never waited for the row lock');
    await new Promise((r) => setTimeout(r, 50));
  }
  await finance.query(`COMMIT`);
  await repaired;
  t.deepEqual(await claims(db), [{ lead_source_pk: 'K-6', milestone: 1, status: 'paid', amount_expected: '25.00' }]);
  t.deepEqual(await db.query(`SELECT claimed_as, status FROM canon.claims_duplicates`), [{ claimed_as: 'K-6', status: 'generated' }]);
  t.deepEqual(await violations(db), []);
});

test('nothing to repair: no run row, nothing written', async (t) => {
  const db = await freshDb(t, 'repair_keys_none');
  await insertLead(db, { external_id: ' L-5 ', first_name: null, last_name: null });
  t.deepEqual(await repair(db), { keys_rekeyed: 0, keys_left: 0, run_id: null });
  t.deepEqual(await db.query(`SELECT 1 FROM canon.ingestion_runs`), []);
  const err = await t.throwsAsync(db.query(`SELECT ops.repair_lead_keys('  ')`));
  t.regex(err!.message, /a note is required/);
});
