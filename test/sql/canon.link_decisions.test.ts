// canon.link_decisions (step 6): the batch (pg_temp.cabinet_batch, from canon.select_lead_batch
// in the same transaction) decided and written: persons, lead and driver links, origins,
// unmatched rows, the batch's keys off the never-evaluated list.
import test from 'ava';
import { type TestDb, withDb } from '../helpers/db.js';
import { linkOf, unmatchedOf } from '../helpers/pipeline.js';
import { insertDriver, insertLead } from '../helpers/rows.js';
import { linkPerson } from '../helpers/scenario.js';
import { inTransaction, insertUnmatched, step } from '../helpers/steps.js';

type Stats = Record<string, unknown> & { durations_ms: Record<string, number> };

/** Steps 5b and 6 in one transaction, as a run does them (scope: the last 30 days). */
async function decideBatch(db: TestDb, onlyLimbo = false): Promise<Stats> {
  return inTransaction(db, async (c) => {
    await step(c, 'canon.select_lead_batch(canon.business_today() - 30, 100, $1)', [onlyLimbo]);
    return step<Stats>(c, 'canon.link_decisions(NULL, $1)', [onlyLimbo]);
  });
}

/** Drivers indexed and leads keyed, as steps 4 and 5a leave them. */
async function indexAndKey(db: TestDb): Promise<void> {
  await db.query(`SELECT canon.refresh_driver_index(NULL), canon.key_changed_leads(NULL)`);
}

const JUAN = { first_name: 'Juan', last_name: 'Perez' };

test('a lead matching a driver without a person gets a new person, both links and its origin; one without candidates is left OPEN', (t) =>
  withDb('link_decisions', async (db) => {
    await insertDriver(db, { driver_id: 'd1', ...JUAN, phone: '51977456321' });
    await insertLead(db, { external_id: 'MATCH', ...JUAN, park_phone: '977456321' });
    await insertLead(db, { external_id: 'NOBODY', first_name: 'Rosa', last_name: 'Flores', park_phone: '911111111' });
    await indexAndKey(db);
    const s = await decideBatch(db);
    t.like(s, {
      leads_evaluated: 2, newly_linked: 1, newly_linked_by_rule: { R1_PHONE_EXACT: 1 }, new_persons: 1, persons_reused: 0,
      newly_driver_linked: 1, no_driver_repaired: 0, origins_written: 1, previously_unmatched_now_linked: 0,
      unmatched: 1, unmatched_by_reason: { NO_CANDIDATES: 1 }, ambiguous: 0, conflicts: 0, open_unmatched_total: 1, pending_cleared: 2,
    });
    t.deepEqual(Object.keys(s.durations_ms).sort(), ['decide', 'link']);
    const link = await linkOf(db, 'MATCH');
    t.like(link, { match_rule: 'R1_PHONE_EXACT', driver_id: 'd1' });
    t.deepEqual(await db.query(`SELECT origin_tag, origin_source_id, decided_by FROM canon.identity_origin WHERE person_key = $1`, [link!.person_key]),
      [{ origin_tag: 'cabinet_lead', origin_source_id: 'MATCH', decided_by: 'system' }]);
    t.like(await unmatchedOf(db, 'NOBODY'), { reason_code: 'NO_CANDIDATES', status: 'OPEN', attempts: 1 });
    t.deepEqual(await db.query(`SELECT lead_id FROM canon_internal.lead_keys_pending`), []);
  }));

test('a lead whose driver has a person joins that person; an OPEN lead that matches now is resolved', (t) =>
  withDb('link_decisions', async (db) => {
    await insertDriver(db, { driver_id: 'd1', ...JUAN, phone: '51977456321' });
    const personKey = await linkPerson(db, [], [{ driverId: 'd1' }]);
    await insertLead(db, { external_id: 'RETRY', ...JUAN, park_phone: '977456321' });
    await indexAndKey(db);
    await insertUnmatched(db, 'RETRY', { retry_due: true });
    t.like(await decideBatch(db), {
      leads_evaluated: 1, newly_linked: 1, new_persons: 0, persons_reused: 1, newly_driver_linked: 0,
      previously_unmatched_now_linked: 1, unmatched: 0, open_unmatched_total: 0,
    });
    t.like(await linkOf(db, 'RETRY'), { person_key: personKey, driver_id: 'd1' });
    const [u] = await db.query(`SELECT status, attempts, retry_due, resolved_at IS NOT NULL AS resolved FROM canon.identity_unmatched WHERE source_pk = 'RETRY'`);
    t.deepEqual(u, { status: 'RESOLVED', attempts: 2, retry_due: false, resolved: true });
  }));

test('an empty batch decides nothing and writes nothing; decided leads are not in the next batch', (t) =>
  withDb('link_decisions', async (db) => {
    t.like(await decideBatch(db), { leads_evaluated: 0, newly_linked: 0, new_persons: 0, unmatched: 0, pending_cleared: 0, newly_linked_by_rule: {}, unmatched_by_reason: {} });
    await insertLead(db, { external_id: 'NOBODY', park_phone: '911111111' });
    await indexAndKey(db);
    t.like(await decideBatch(db), { leads_evaluated: 1, unmatched: 1 });
    t.like(await decideBatch(db), { leads_evaluated: 0, unmatched: 0, open_unmatched_total: 1 });
    t.like(await unmatchedOf(db, 'NOBODY'), { status: 'OPEN', attempts: 1 });
    const [n] = await db.query<{ links: number; persons: number }>(
      `SELECT (SELECT count(*) FROM canon.identity_links)::int AS links, (SELECT count(*) FROM canon.identity_registry)::int AS persons`);
    t.deepEqual(n, { links: 0, persons: 0 });
  }));

test('with p_only_limbo a NO_DRIVER lead\'s person gets the free driver it matches', (t) =>
  withDb('link_decisions', async (db) => {
    await insertDriver(db, { driver_id: 'd1', ...JUAN, phone: '51977456321' });
    const lead = await insertLead(db, { external_id: 'NO-DRIVER', ...JUAN, park_phone: '977456321' });
    await indexAndKey(db);
    const personKey = await linkPerson(db, [lead.key]);
    t.like(await decideBatch(db, true), { leads_evaluated: 1, newly_linked: 0, new_persons: 0, no_driver_repaired: 1, newly_driver_linked: 1 });
    const [d] = await db.query(`SELECT person_key::text, evidence->>'repaired_no_driver_for_lead' AS lead FROM canon.identity_links WHERE source_table = 'drivers' AND source_pk = 'd1'`);
    t.deepEqual(d, { person_key: personKey, lead: 'NO-DRIVER' });
    t.like(await decideBatch(db, true), { leads_evaluated: 0, no_driver_repaired: 0 });
  }));
