// ops.resolve_lead: an operator links a lead to a driver by hand, in one transaction,
// with the person, driver link, origin and unmatched row the job would write, audited.
import test from 'ava';
import { brokenInvariants, claimsOf, financeSettles, insertClaims, leadWithClaimsLeftBehind, settledRecordsOf } from '../helpers/claims.js';
import { count, freshDb, type TestDb } from '../helpers/db.js';
import { linkOf, runPipeline, unmatchedOf } from '../helpers/pipeline.js';
import { insertDriver, insertLead } from '../helpers/rows.js';
import { linkPerson } from '../helpers/scenario.js';
import { backendPid, blockedBy, start } from '../helpers/locks.js';

interface Resolved {
  action: string;
  person_key: string;
  person_created: boolean;
  forced: boolean;
  other_leads_of_person: string[];
  origin_written: boolean;
  unmatched_before: { status: string; reason_code: string } | null;
  claims_removed: { milestone: number; status: string }[];
}

async function resolve(db: TestDb, key: string, driver: string, note: string, force?: boolean): Promise<Resolved> {
  const [r] = await db.query<{ r: Resolved }>(
    force === undefined ? `SELECT ops.resolve_lead($1, $2, $3) AS r` : `SELECT ops.resolve_lead($1, $2, $3, $4) AS r`,
    force === undefined ? [key, driver, note] : [key, driver, note, force],
  );
  return r!.r;
}

/** Two drivers sharing a plate with near-identical names: the lead is AMBIGUOUS. */
async function ambiguousScenario(db: TestDb): Promise<void> {
  await insertDriver(db, { driver_id: 'a', first_name: 'Ana', last_name: 'Lopez', car_number: 'SHF001', phone: '51977000111' });
  await insertDriver(db, { driver_id: 'b', first_name: 'Ana', last_name: 'Lopes', car_number: 'SHF001' });
  await insertLead(db, { external_id: 'AMB', first_name: 'Ana', last_name: 'López', asset_plate_number: 'shf-001' });
}

test('links an AMBIGUOUS lead to the chosen driver: new person with its driver link, manual origin, unmatched RESOLVED', async (t) => {
  const db = await freshDb(t, 'resolve');
  await ambiguousScenario(db);
  await runPipeline(db);
  t.is((await unmatchedOf(db, 'AMB'))?.reason_code, 'AMBIGUOUS');

  const r = await resolve(db, 'AMB', 'a', 'called her: it is Ana Lopez of car SHF001');
  t.is(r.action, 'RESOLVE');
  t.true(r.person_created);
  t.false(r.forced);
  t.deepEqual(r.unmatched_before, { status: 'OPEN', reason_code: 'AMBIGUOUS' });

  const [lead] = await db.query<{ match_rule: string; match_score: string; confidence_level: string; run_id: string | null; person_key: string; evidence: Record<string, unknown> }>(
    `SELECT match_rule, match_score::text, confidence_level, run_id, person_key::text, evidence
     FROM canon.identity_links WHERE source_table = 'module_ct_cabinet_leads' AND source_pk = 'AMB'`,
  );
  t.like(lead!, { match_rule: 'MANUAL_RESOLUTION', match_score: '100.00', confidence_level: 'HIGH', run_id: null, person_key: r.person_key });
  t.like(lead!.evidence, { decided_by: 'manual', driver_id: 'a', note: 'called her: it is Ana Lopez of car SHF001' });
  t.is((await linkOf(db, 'AMB'))?.driver_id, 'a');
  const [driverLink] = await db.query<{ person_key: string; match_rule: string }>(
    `SELECT person_key::text, match_rule FROM canon.identity_links WHERE source_table = 'drivers' AND source_pk = 'a'`,
  );
  t.deepEqual(driverLink, { person_key: r.person_key, match_rule: 'MANUAL_RESOLUTION' });
  const [origin] = await db.query<{ origin_source_id: string; decided_by: string; origin_tag: string }>(
    `SELECT origin_source_id, decided_by, origin_tag FROM canon.identity_origin WHERE person_key = $1`,
    [r.person_key],
  );
  t.deepEqual(origin, { origin_source_id: 'AMB', decided_by: 'manual', origin_tag: 'cabinet_lead' });
  const [person] = await db.query<{ confidence_level: string; primary_phone: string }>(
    `SELECT confidence_level, primary_phone FROM canon.identity_registry WHERE person_key = $1`,
    [r.person_key],
  );
  t.deepEqual(person, { confidence_level: 'HIGH', primary_phone: '977000111' });
  const [u] = await db.query<{ status: string; note: string; resolved_at: Date | null }>(
    `SELECT status, note, resolved_at FROM canon.identity_unmatched WHERE source_pk = 'AMB'`,
  );
  t.is(u!.status, 'RESOLVED');
  t.is(u!.note, 'called her: it is Ana Lopez of car SHF001');
  t.truthy(u!.resolved_at);
  const [limbo] = await db.query<{ limbo_stage: string }>(`SELECT limbo_stage FROM ops.v_cabinet_leads_limbo WHERE lead_source_pk = 'AMB'`);
  t.not(limbo!.limbo_stage, 'NO_IDENTITY');
  t.not(limbo!.limbo_stage, 'NO_DRIVER');
});

test('a manual link survives later pipeline runs, and the job reuses its person for the driver\'s next lead', async (t) => {
  const db = await freshDb(t, 'resolve');
  await ambiguousScenario(db);
  await runPipeline(db);
  const r = await resolve(db, 'AMB', 'a', 'confirmed by phone');
  const linkBefore = await db.query(`SELECT * FROM canon.identity_links ORDER BY id`);

  await runPipeline(db);
  await runPipeline(db);
  t.deepEqual(await db.query(`SELECT * FROM canon.identity_links ORDER BY id`), linkBefore, 'two runs changed no link');
  t.is((await unmatchedOf(db, 'AMB'))?.status, 'RESOLVED');

  // A new lead with driver a's phone: the job links it to the same (manual) person.
  await insertLead(db, { external_id: 'NEXT', first_name: 'Ana', last_name: 'Lopez', park_phone: '977 000 111' });
  await runPipeline(db);
  const next = await linkOf(db, 'NEXT');
  t.is(next?.match_rule, 'R1_PHONE_EXACT');
  t.is(next?.person_key, r.person_key);
  t.is((await linkOf(db, 'AMB'))?.match_rule, 'MANUAL_RESOLUTION');
});

test('refuses a driver whose person already carries another lead unless force, which adds the lead to that person', async (t) => {
  const db = await freshDb(t, 'resolve');
  await insertDriver(db, { driver_id: 'j', first_name: 'Juan', last_name: 'Perez', phone: '51977456321' });
  await insertLead(db, { external_id: 'FIRST', first_name: 'Juan', last_name: 'Perez', park_phone: '977456321' });
  await insertLead(db, { external_id: 'SECOND', first_name: 'Juan', last_name: 'Perez' }); // no keys: MISSING_KEYS
  await runPipeline(db);
  const first = await linkOf(db, 'FIRST');
  t.is(first?.driver_id, 'j');
  t.is((await unmatchedOf(db, 'SECOND'))?.reason_code, 'MISSING_KEYS');

  const err = await t.throwsAsync(resolve(db, 'SECOND', 'j', 'same man, second sign-up'));
  t.regex(err!.message, /driver 'j' is already linked to person [0-9a-f-]{36} with lead\(s\) FIRST: pass force => true/);
  t.is((err as { code?: string }).code, 'CL023');
  t.is(await linkOf(db, 'SECOND'), undefined);

  const r = await resolve(db, 'SECOND', 'j', 'same man, second sign-up', true);
  t.true(r.forced);
  t.false(r.person_created);
  t.deepEqual(r.other_leads_of_person, ['FIRST']);
  t.is(r.person_key, first!.person_key);
  t.false(r.origin_written, 'the person keeps the origin of its first lead');
  const [origin] = await db.query<{ origin_source_id: string; decided_by: string }>(
    `SELECT origin_source_id, decided_by FROM canon.identity_origin WHERE person_key = $1`,
    [r.person_key],
  );
  t.deepEqual(origin, { origin_source_id: 'FIRST', decided_by: 'system' });
  t.is(await count(db, `SELECT count(*) AS n FROM canon.identity_links WHERE source_table = 'drivers'`), 1);
});

test('joins a driver\'s person that carries no lead without force', async (t) => {
  const db = await freshDb(t, 'resolve');
  await insertDriver(db, { driver_id: 'k', first_name: 'Kike', last_name: 'Rojas' });
  await insertLead(db, { external_id: 'L-K', first_name: 'Enrique', last_name: 'Rojas' });
  // A person with only the driver's link (e.g. after the lead that brought it was unlinked elsewhere).
  const c = await db.connect();
  await c.query('BEGIN');
  const { rows } = await c.query<{ person_key: string }>(`INSERT INTO canon.identity_registry (confidence_level) VALUES ('HIGH') RETURNING person_key::text`);
  await c.query(
    `INSERT INTO canon.identity_links (source_table, source_pk, person_key, match_rule, match_score, confidence_level)
     VALUES ('drivers', 'k', $1, 'R1_PHONE_EXACT', 95, 'HIGH')`,
    [rows[0]!.person_key],
  );
  await c.query('COMMIT');
  const r = await resolve(db, 'L-K', 'k', 'Enrique is Kike');
  t.is(r.person_key, rows[0]!.person_key);
  t.false(r.person_created);
  t.true(r.origin_written);
  t.is(r.unmatched_before, null, 'never evaluated: no unmatched row to resolve');
});

test('refuses bad input with an error naming the value, and changes nothing', async (t) => {
  const db = await freshDb(t, 'resolve');
  await ambiguousScenario(db);
  await insertDriver(db, { driver_id: 'gone', first_name: 'Ido', last_name: 'Ya', phone: '51955555555' });
  await insertDriver(db, { driver_id: 'j', first_name: 'Juan', last_name: 'Perez', phone: '51977456321' });
  await insertLead(db, { external_id: 'LINKED', first_name: 'Juan', last_name: 'Perez', park_phone: '977456321' });
  await runPipeline(db);
  await db.query(`DELETE FROM public.drivers WHERE driver_id = 'gone'`);
  const snapshot = async () => ({
    links: await db.query(`SELECT * FROM canon.identity_links ORDER BY id`),
    persons: await db.query(`SELECT * FROM canon.identity_registry ORDER BY person_key`),
    unmatched: await db.query(`SELECT * FROM canon.identity_unmatched ORDER BY id`),
    audit: await count(db, `SELECT count(*) AS n FROM canon.identity_audit`),
  });
  const before = await snapshot();

  const cases: [string, unknown[], RegExp, string][] = [
    ['unknown lead', ['NOPE-1', 'a', 'x'], /unknown lead 'NOPE-1': no row of public\.module_ct_cabinet_leads/, 'P0002'],
    ['unknown driver', ['AMB', 'zzz', 'x'], /unknown driver 'zzz': no row of public\.drivers/, 'P0002'],
    ['deleted driver', ['AMB', 'gone', 'x'], /driver 'gone' was deleted from public\.drivers/, 'CL024'],
    ['lead already linked', ['LINKED', 'a', 'x'], /lead 'LINKED' is already linked to person [0-9a-f-]{36} \(driver j, rule R1_PHONE_EXACT by run \d+\): unlink it first/, 'CL021'],
    ['blank note', ['AMB', 'a', '  '], /a note is required/, '22023'],
    ['NULL driver', ['AMB', null, 'x'], /invalid driver_id NULL/, '22023'],
    ['NULL lead', [null, 'a', 'x'], /invalid lead_source_pk NULL/, '22023'],
  ];
  for (const [label, params, message, code] of cases) {
    const err = await t.throwsAsync(db.query(`SELECT ops.resolve_lead($1, $2, $3)`, params), undefined, label);
    t.regex(err!.message, message, label);
    t.is((err as { code?: string }).code, code, label);
  }
  t.deepEqual(await snapshot(), before);
});

test('resolves a lead the job never evaluated and a lead marked IGNORED', async (t) => {
  const db = await freshDb(t, 'resolve');
  await ambiguousScenario(db);
  await insertLead(db, { external_id: 'IGN', first_name: 'Ana', last_name: 'Lopes' });
  await runPipeline(db);
  await db.query(`SELECT ops.ignore_lead('IGN', 'looked like junk')`);
  await insertLead(db, { external_id: 'NEW', first_name: 'Ana', last_name: 'Lopes' });

  const ignored = await resolve(db, 'IGN', 'b', 'it was Ana Lopes after all');
  t.deepEqual(ignored.unmatched_before, { status: 'IGNORED', reason_code: 'MISSING_KEYS' });
  t.is((await unmatchedOf(db, 'IGN'))?.status, 'RESOLVED');
  const fresh = await resolve(db, 'NEW', 'a', 'walk-in', true);
  t.is(fresh.unmatched_before, null);
  t.is((await linkOf(db, 'NEW'))?.driver_id, 'a');
  t.is(await unmatchedOf(db, 'NEW'), undefined);
});

// Money paths are race-free (issue 14, item 5): finance settles claims in transactions of
// its own, at any moment; two real connections, interleaved through the locks themselves.

async function resolveAudits(db: TestDb, key: string): Promise<number> {
  return count(db, `SELECT count(*) AS n FROM canon.identity_audit WHERE action = 'RESOLVE' AND source_pk = $1`, [key]);
}

test('moving a lead to another driver (unlink, then resolve, in one transaction) while finance pays its claim: waits, refuses, the paid claim stays', async (t) => {
  const db = await freshDb(t, 'resolve_race');
  await insertLead(db, { external_id: 'MOVE', first_name: null, last_name: null });
  const person = await linkPerson(db, ['MOVE'], [{ driverId: 'd-old' }]);
  await insertClaims(db, 'MOVE', person, 'd-old', [{ milestone: 1 }, { milestone: 5 }]);
  await insertDriver(db, { driver_id: 'd-new' });
  const finance = await db.connect();
  const operator = await db.connect();

  const paid = await financeSettles(finance, 'MOVE', 1, 'paid');
  const moving = await start(operator, `BEGIN;
    SELECT ops.unlink_lead('MOVE', 'wrong driver');
    SELECT ops.resolve_lead('MOVE', 'd-new', 'the right driver');
    COMMIT;`);
  t.is(await blockedBy(db, moving, await backendPid(finance)), 'blocked', 'the move waits for the payment in flight');
  await finance.query('COMMIT');
  const outcome = await moving.outcome;
  await operator.query('ROLLBACK');

  t.false(outcome.ok);
  if (!outcome.ok) {
    t.is(outcome.error.code, 'CL025');
    t.regex(outcome.error.message, /lead 'MOVE' has settled claims \(M1 paid\)/);
  }
  t.deepEqual((await claimsOf(db, 'MOVE'))[0], paid);
  t.like((await settledRecordsOf(db, 'MOVE'))[0], { milestone: 1, status: 'paid', paid_at: paid.paid_at, unsettled_at: null });
  t.is((await linkOf(db, 'MOVE'))?.driver_id, 'd-old', 'the lead stays with the driver its money was paid for');
  t.is(await resolveAudits(db, 'MOVE'), 0);
  t.deepEqual(await brokenInvariants(db), []);
});

test('resolving a lead whose claims were left behind waits for finance paying one of them, then refuses naming it', async (t) => {
  const db = await freshDb(t, 'resolve_race');
  await leadWithClaimsLeftBehind(db, 'LEFT', [{ milestone: 1 }, { milestone: 5 }]);
  await insertDriver(db, { driver_id: 'd-new' });
  const finance = await db.connect();
  const operator = await db.connect();

  const paid = await financeSettles(finance, 'LEFT', 5, 'paid');
  const resolving = await start(operator, `SELECT ops.resolve_lead('LEFT', 'd-new', 'the right driver') AS r`);
  t.is(await blockedBy(db, resolving, await backendPid(finance)), 'blocked', 'resolve waits for the payment in flight');
  await finance.query('COMMIT');

  const outcome = await resolving.outcome;
  t.false(outcome.ok, 'resolve refuses once the claim is paid');
  if (!outcome.ok) {
    t.is(outcome.error.code, 'CL025');
    t.regex(outcome.error.message, /lead 'LEFT' has settled claims \(M5 paid\) of another person \(driver d-old-LEFT\)/);
  }
  t.deepEqual((await claimsOf(db, 'LEFT')).map((c) => [c.milestone, c.status, c.driver_id]), [[1, 'generated', 'd-old-LEFT'], [5, 'paid', 'd-old-LEFT']]);
  t.deepEqual((await claimsOf(db, 'LEFT'))[1], paid);
  t.like((await settledRecordsOf(db, 'LEFT'))[0], { milestone: 5, status: 'paid', unsettled_at: null });
  t.is(await linkOf(db, 'LEFT'), undefined);
  t.is(await resolveAudits(db, 'LEFT'), 0);
  t.deepEqual(await brokenInvariants(db), []);
});

test('finance paying a left-behind claim while resolve_lead holds it waits, then finds no claim: resolve removed the old person\'s unsettled claims', async (t) => {
  const db = await freshDb(t, 'resolve_race');
  await leadWithClaimsLeftBehind(db, 'OLD', [{ milestone: 1 }, { milestone: 5 }]);
  await insertDriver(db, { driver_id: 'd-new' });
  const finance = await db.connect();
  const operator = await db.connect();

  await operator.query('BEGIN');
  const { rows } = await operator.query<{ r: Resolved }>(`SELECT ops.resolve_lead('OLD', 'd-new', 'the right driver') AS r`);
  t.deepEqual(rows[0]!.r.claims_removed.map((c) => [c.milestone, c.status]), [[1, 'generated'], [5, 'generated']]);
  const paying = await start(finance, `UPDATE canon.claims_yango_cabinet_14d SET status = 'paid', paid_at = now()
                                       WHERE lead_source_pk = 'OLD' AND milestone = 1`);
  t.is(await blockedBy(db, paying, await backendPid(operator)), 'blocked', 'the payment waits for the resolve');
  await operator.query('COMMIT');

  const outcome = await paying.outcome;
  t.is(outcome.ok && outcome.rowCount, 0, 'nothing left to pay: the claims were computed for another person');
  t.deepEqual(await claimsOf(db, 'OLD'), []);
  t.is((await linkOf(db, 'OLD'))?.driver_id, 'd-new');
  const [audit] = await db.query<{ details: { claims_removed: { milestone: number; status: string }[] } }>(
    `SELECT details FROM canon.identity_audit WHERE action = 'RESOLVE' AND source_pk = 'OLD'`,
  );
  t.deepEqual(audit!.details.claims_removed.map((c) => [c.milestone, c.status]), [[1, 'generated'], [5, 'generated']]);
  t.deepEqual(await brokenInvariants(db), []);
});

test('refuses a lead with settled claims of another person, and keeps every claim of the person it links to', async (t) => {
  const db = await freshDb(t, 'resolve_race');
  const person = await leadWithClaimsLeftBehind(db, 'BACK', [{ milestone: 1, status: 'paid' }, { milestone: 5 }]);
  await insertDriver(db, { driver_id: 'd-new' });
  await insertDriver(db, { driver_id: 'd-old-BACK' });
  const before = await claimsOf(db, 'BACK');

  const err = await t.throwsAsync(resolve(db, 'BACK', 'd-new', 'the right driver'));
  t.regex(err!.message, /lead 'BACK' has settled claims \(M1 paid\) of another person \(driver d-old-BACK\)/);
  t.is((err as { code?: string }).code, 'CL025');
  t.deepEqual(await claimsOf(db, 'BACK'), before);

  // Back to the driver its money was paid for: that person's claims are this lead's, settled or not.
  const r = await resolve(db, 'BACK', 'd-old-BACK', 'the link was deleted by mistake');
  t.is(r.person_key, person);
  t.deepEqual(r.claims_removed, []);
  t.deepEqual(await claimsOf(db, 'BACK'), before);
  t.deepEqual(await brokenInvariants(db), []);
});
