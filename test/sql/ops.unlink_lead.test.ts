// ops.unlink_lead: an operator removes a wrong lead link; no orphan person is left, the
// lead's unsettled claims go with the link, and the next run evaluates the lead again.
import test from 'ava';
import { count, freshDb, type TestDb } from '../helpers/db.js';
import { linkOf, runPipeline, unmatchedOf } from '../helpers/pipeline.js';
import { addDays, businessToday, insertDriver, insertLead } from '../helpers/rows.js';
import { linkPerson } from '../helpers/scenario.js';
import { brokenInvariants, claimsOf, financeSettles, insertClaims, settledRecordsOf } from '../helpers/claims.js';
import { blockedBy, backendPid, start } from '../helpers/locks.js';

interface Unlinked {
  action: string;
  person_key: string;
  driver_id: string | null;
  person_removed: boolean;
  driver_links_removed: string[];
  other_leads_of_person: string[];
  origin_moved_to: string | null;
  claims_removed: { milestone: number; status: string }[];
  unmatched_removed: boolean;
}

async function unlink(db: TestDb, key: string, note: string): Promise<Unlinked> {
  const [r] = await db.query<{ r: Unlinked }>(`SELECT ops.unlink_lead($1, $2) AS r`, [key, note]);
  return r!.r;
}

test('removes a wrong link with its person, driver link and origin; the next run matches the right driver', async (t) => {
  const db = await freshDb(t, 'unlink');
  await insertDriver(db, { driver_id: 'wrong', first_name: 'Pedro', last_name: 'Gomez' });
  await insertDriver(db, { driver_id: 'right', first_name: 'Juan', last_name: 'Perez', phone: '51977456321' });
  await insertLead(db, { external_id: 'L', first_name: 'Juan', last_name: 'Perez', park_phone: '977456321' });
  const [row] = await db.query<{ r: { person_key: string } }>(`SELECT ops.resolve_lead('L', 'wrong', 'I thought so') AS r`);
  const resolved = row!.r;

  const r = await unlink(db, 'L', 'wrong driver: Pedro is the car owner');
  t.like(r, { action: 'UNLINK', person_key: resolved.person_key, driver_id: 'wrong', person_removed: true, unmatched_removed: false });
  t.deepEqual(r.driver_links_removed, ['wrong']);
  t.is(await count(db, `SELECT count(*) AS n FROM canon.identity_registry`), 0);
  t.is(await count(db, `SELECT count(*) AS n FROM canon.identity_links`), 0);
  t.is(await count(db, `SELECT count(*) AS n FROM canon.identity_origin`), 0);

  const audit = await db.query<{ action: string; source_table: string; source_pk: string; note: string; details: { person_removed: boolean; removed_link: { match_rule: string } } }>(
    `SELECT action, source_table, source_pk, note, details FROM canon.identity_audit WHERE action = 'UNLINK' ORDER BY id`,
  );
  t.deepEqual(audit.map((a) => [a.source_table, a.source_pk, a.note]), [
    ['module_ct_cabinet_leads', 'L', 'wrong driver: Pedro is the car owner'],
    ['drivers', 'wrong', 'wrong driver: Pedro is the car owner'],
  ]);
  t.true(audit[0]!.details.person_removed);
  t.is(audit[0]!.details.removed_link.match_rule, 'MANUAL_RESOLUTION');

  await runPipeline(db);
  const link = await linkOf(db, 'L');
  t.is(link?.driver_id, 'right');
  t.is(link?.match_rule, 'R1_PHONE_EXACT');
});

test('an unlinked lead is evaluated again by the next run, first in line', async (t) => {
  const db = await freshDb(t, 'unlink');
  await insertDriver(db, { driver_id: 'j', first_name: 'Juan', last_name: 'Perez', phone: '51977456321' });
  await insertLead(db, { external_id: 'L', first_name: 'Juan', last_name: 'Perez', park_phone: '977456321' });
  await runPipeline(db);
  const before = await linkOf(db, 'L');
  t.is(before?.driver_id, 'j');

  await unlink(db, 'L', 'checking the matcher again after the driver file was fixed');
  t.is(await linkOf(db, 'L'), undefined);
  t.is(await unmatchedOf(db, 'L'), undefined, 'no unmatched row: the lead counts as never evaluated');
  const [limbo] = await db.query<{ limbo_stage: string; limbo_reason_detail: string }>(
    `SELECT limbo_stage, limbo_reason_detail FROM ops.v_cabinet_leads_limbo WHERE lead_source_pk = 'L'`,
  );
  t.is(limbo!.limbo_stage, 'NO_IDENTITY');
  t.regex(limbo!.limbo_reason_detail, /not evaluated yet/);

  const run = await runPipeline(db, 'p_days_back => 30, p_limit => 1');
  t.is(run.stats['match']['batch']['never_evaluated'], 1);
  const after = await linkOf(db, 'L');
  t.is(after?.driver_id, 'j');
  t.is(after?.match_rule, 'R1_PHONE_EXACT');
  t.not(after?.person_key, before?.person_key, 'a new person: the old one went with the link');
});

test('keeps a person another lead still uses, and moves its origin to that lead', async (t) => {
  const db = await freshDb(t, 'unlink');
  const today = await businessToday(db);
  await insertLead(db, { external_id: 'OLD', first_name: null, last_name: null, lead_created_at: `${addDays(today, -5)} 00:00` });
  await insertLead(db, { external_id: 'NEWER', first_name: null, last_name: null, lead_created_at: `${addDays(today, -3)} 00:00` });
  const person = await linkPerson(db, ['OLD', 'NEWER'], [{ driverId: 'd7' }]);
  await db.query(
    `INSERT INTO canon.identity_origin (person_key, origin_tag, origin_source_id, confidence_level, origin_created_at, decided_by)
     VALUES ($1, 'cabinet_lead', 'OLD', 'HIGH', canon.business_today() - 5, 'system')`,
    [person],
  );
  const r = await unlink(db, 'OLD', 'OLD was a different person');
  t.like(r, { person_removed: false, origin_moved_to: 'NEWER', driver_id: 'd7' });
  t.deepEqual(r.other_leads_of_person, ['NEWER']);
  t.deepEqual(r.driver_links_removed, []);
  t.is((await linkOf(db, 'NEWER'))?.driver_id, 'd7');
  const [origin] = await db.query<{ origin_source_id: string; decided_by: string; origin_created_at: Date }>(
    `SELECT origin_source_id, decided_by, origin_created_at FROM canon.identity_origin WHERE person_key = $1`,
    [person],
  );
  t.like(origin!, { origin_source_id: 'NEWER', decided_by: 'manual' });
});

test('deletes the lead\'s unsettled claims, and refuses while one is paid or rejected', async (t) => {
  const db = await freshDb(t, 'unlink');
  await insertLead(db, { external_id: 'GEN', first_name: null, last_name: null });
  await insertLead(db, { external_id: 'PAID', first_name: null, last_name: null });
  const p1 = await linkPerson(db, ['GEN'], [{ driverId: 'd1' }]);
  const p2 = await linkPerson(db, ['PAID'], [{ driverId: 'd2' }]);
  await db.query(
    `INSERT INTO canon.claims_yango_cabinet_14d (lead_source_pk, milestone, person_key, driver_id, lead_date, amount_expected, status)
     VALUES ('GEN', 1, $1, 'd1', canon.business_today() - 2, 25, 'generated'),
            ('GEN', 5, $1, 'd1', canon.business_today() - 2, 35, 'generated'),
            ('PAID', 1, $2, 'd2', canon.business_today() - 2, 25, 'paid'),
            ('PAID', 5, $2, 'd2', canon.business_today() - 2, 35, 'generated')`,
    [p1, p2],
  );
  const r = await unlink(db, 'GEN', 'wrong driver, claims computed from his trips');
  t.deepEqual(r.claims_removed.map((c) => [c.milestone, c.status]), [[1, 'generated'], [5, 'generated']]);
  t.is(await count(db, `SELECT count(*) AS n FROM canon.claims_yango_cabinet_14d WHERE lead_source_pk = 'GEN'`), 0);
  const [audit] = await db.query<{ details: { claims_removed: { milestone: number; amount_expected: number }[] } }>(
    `SELECT details FROM canon.identity_audit WHERE action = 'UNLINK' AND source_pk = 'GEN'`,
  );
  t.deepEqual(audit!.details.claims_removed.map((c) => [c.milestone, Number(c.amount_expected)]), [[1, 25], [5, 35]], 'the removed claims are kept in the audit');

  const err = await t.throwsAsync(unlink(db, 'PAID', 'wrong'));
  t.regex(err!.message, /lead 'PAID' has settled claims \(M1 paid\)/);
  t.is((err as { code?: string }).code, 'CL025');
  t.is((await linkOf(db, 'PAID'))?.driver_id, 'd2');
  t.is(await count(db, `SELECT count(*) AS n FROM canon.claims_yango_cabinet_14d WHERE lead_source_pk = 'PAID'`), 2);
});

test('refuses an unknown lead, a lead that is not linked and a missing note, naming the value', async (t) => {
  const db = await freshDb(t, 'unlink');
  await insertLead(db, { external_id: 'NEVER', first_name: null, last_name: null });
  await insertLead(db, { external_id: 'NOKEYS', first_name: 'Solo', last_name: 'Nombre' });
  await runPipeline(db);
  const cases: [unknown[], RegExp, string][] = [
    [['NOPE', 'x'], /unknown lead 'NOPE'/, 'P0002'],
    [['NOKEYS', 'x'], /lead 'NOKEYS' is not linked: nothing to unlink \(unmatched: OPEN, MISSING_KEYS\)/, 'CL022'],
    [['NOKEYS', null], /a note is required/, '22023'],
  ];
  for (const [params, message, code] of cases) {
    const err = await t.throwsAsync(db.query(`SELECT ops.unlink_lead($1, $2)`, params));
    t.regex(err!.message, message);
    t.is((err as { code?: string }).code, code);
  }
  t.is(await count(db, `SELECT count(*) AS n FROM canon.identity_audit`), 0);
});

test('unlinks a link whose lead row has since disappeared upstream', async (t) => {
  const db = await freshDb(t, 'unlink');
  await insertLead(db, { external_id: 'VANISHED', first_name: null, last_name: null });
  await linkPerson(db, ['VANISHED'], [{ driverId: 'd9' }]);
  await db.query(`DELETE FROM public.module_ct_cabinet_leads WHERE external_id = 'VANISHED'`);
  const r = await unlink(db, 'VANISHED', 'lead deleted by the cabinet');
  t.true(r.person_removed);
  t.is(await count(db, `SELECT count(*) AS n FROM canon.identity_links`), 0);
});

// Money paths are race-free (issue 14, item 5): finance settles claims in transactions of
// its own, at any moment; two real connections, interleaved through the locks themselves.

/** A linked lead with two generated claims (M1, M5). */
async function claimedLead(db: TestDb, key: string): Promise<string> {
  await insertLead(db, { external_id: key, first_name: null, last_name: null });
  const person = await linkPerson(db, [key], [{ driverId: `d-${key}` }]);
  await insertClaims(db, key, person, `d-${key}`, [{ milestone: 1 }, { milestone: 5 }]);
  return person;
}

async function unlinkAudits(db: TestDb, key: string): Promise<number> {
  return count(db, `SELECT count(*) AS n FROM canon.identity_audit WHERE action = 'UNLINK' AND source_pk = $1`, [key]);
}

test('waits for finance paying a claim of the lead, then refuses naming it: the paid claim, its record and the link stay', async (t) => {
  const db = await freshDb(t, 'unlink_race');
  await claimedLead(db, 'RACE');
  const finance = await db.connect();
  const operator = await db.connect();

  const paid = await financeSettles(finance, 'RACE', 1, 'paid');
  const unlinking = await start(operator, `SELECT ops.unlink_lead('RACE', 'wrong driver') AS r`);
  t.is(await blockedBy(db, unlinking, await backendPid(finance)), 'blocked', 'unlink waits for the payment in flight');
  await finance.query('COMMIT');

  const outcome = await unlinking.outcome;
  t.false(outcome.ok, 'unlink refuses once the claim is paid');
  if (!outcome.ok) {
    t.is(outcome.error.code, 'CL025');
    t.regex(outcome.error.message, /lead 'RACE' has settled claims \(M1 paid\)/);
  }
  t.deepEqual(await claimsOf(db, 'RACE'), [paid, { ...paid, milestone: 5, status: 'generated', amount_expected: '35.00', paid_at: null }]);
  t.like((await settledRecordsOf(db, 'RACE'))[0], { milestone: 1, status: 'paid', paid_at: paid.paid_at, unsettled_at: null });
  t.is((await settledRecordsOf(db, 'RACE')).length, 1);
  t.is((await linkOf(db, 'RACE'))?.driver_id, 'd-RACE', 'the link that backs the money stays');
  t.is(await unlinkAudits(db, 'RACE'), 0, 'nothing unlinked, nothing audited');
  t.deepEqual(await brokenInvariants(db), []);
});

test('finance paying a claim while an unlink holds it waits, then finds no claim: the audit names the generated claims removed', async (t) => {
  const db = await freshDb(t, 'unlink_race');
  await claimedLead(db, 'FIRST');
  const finance = await db.connect();
  const operator = await db.connect();

  await operator.query('BEGIN');
  await operator.query(`SELECT ops.unlink_lead('FIRST', 'wrong driver')`);
  const paying = await start(finance, `UPDATE canon.claims_yango_cabinet_14d SET status = 'paid', paid_at = now()
                                       WHERE lead_source_pk = 'FIRST' AND milestone = 1 AND status = 'generated'`);
  t.is(await blockedBy(db, paying, await backendPid(operator)), 'blocked', 'the payment waits for the unlink');
  await operator.query('COMMIT');

  const outcome = await paying.outcome;
  t.true(outcome.ok);
  t.is(outcome.ok && outcome.rowCount, 0, 'the claim was removed with the link: nothing to pay');
  t.deepEqual(await claimsOf(db, 'FIRST'), []);
  t.deepEqual(await settledRecordsOf(db, 'FIRST'), []);
  const [audit] = await db.query<{ details: { claims_removed: { milestone: number; status: string }[] } }>(
    `SELECT details FROM canon.identity_audit WHERE action = 'UNLINK' AND source_pk = 'FIRST'`,
  );
  t.deepEqual(audit!.details.claims_removed.map((c) => [c.milestone, c.status]), [[1, 'generated'], [5, 'generated']]);
  t.deepEqual(await brokenInvariants(db), []);
});

test('an unlink rolled back lets the waiting payment through', async (t) => {
  const db = await freshDb(t, 'unlink_race');
  await claimedLead(db, 'UNDO');
  const finance = await db.connect();
  const operator = await db.connect();

  await operator.query('BEGIN');
  await operator.query(`SELECT ops.unlink_lead('UNDO', 'wrong driver?')`);
  const paying = await start(finance, `UPDATE canon.claims_yango_cabinet_14d SET status = 'paid', paid_at = now()
                                       WHERE lead_source_pk = 'UNDO' AND milestone = 1 AND status = 'generated'`);
  t.is(await blockedBy(db, paying, await backendPid(operator)), 'blocked');
  await operator.query('ROLLBACK');

  const outcome = await paying.outcome;
  t.is(outcome.ok && outcome.rowCount, 1);
  t.deepEqual((await claimsOf(db, 'UNDO')).map((c) => [c.milestone, c.status]), [[1, 'paid'], [5, 'generated']]);
  t.like((await settledRecordsOf(db, 'UNDO'))[0], { milestone: 1, status: 'paid', unsettled_at: null });
  t.is((await linkOf(db, 'UNDO'))?.driver_id, 'd-UNDO');
  t.deepEqual(await brokenInvariants(db), []);
});
