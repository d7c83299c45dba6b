// ops.resolve_lead: an operator links a lead to a driver by hand, in one transaction,
// with the person, driver link, origin and unmatched row the job would write, audited.
import test from 'ava';
import type { TestDb } from '../helpers/db.js';
import { insertDriver, insertLead, linkOf, runPipeline, unmatchedOf } from '../helpers/rows.js';
import { freshDb } from '../helpers/scenario.js';

interface Resolved {
  action: string;
  person_key: string;
  person_created: boolean;
  forced: boolean;
  other_leads_of_person: string[];
  origin_written: boolean;
  unmatched_before: { status: string; reason_code: string } | null;
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

async function count(db: TestDb, sql: string, params: unknown[] = []): Promise<number> {
  const [r] = await db.query<{ n: string }>(sql, params);
  return Number(r!.n);
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
