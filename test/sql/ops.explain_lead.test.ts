import test from 'ava';
import { createTestDb, type TestDb } from '../helpers/db.js';
import { runPipeline } from '../helpers/pipeline.js';
import { addDays, businessToday, insertDriver, insertLead } from '../helpers/rows.js';

let db: TestDb;
test.before(async () => {
  db = await createTestDb('explain');
  await insertDriver(db, { driver_id: 'a', first_name: 'Ana', last_name: 'Lopez', car_number: 'SHF001' });
  await insertDriver(db, { driver_id: 'b', first_name: 'Ana', last_name: 'Lopes', car_number: 'SHF001' });
  await insertDriver(db, { driver_id: 'c', first_name: 'Pedro', last_name: 'Gomez', car_number: 'SHF001' });
  await insertDriver(db, { driver_id: 'j', first_name: 'Juan', last_name: 'Perez', phone: '51977456321' });
  await insertLead(db, { external_id: 'AMB', first_name: 'Ana', last_name: 'López', asset_plate_number: 'shf-001' });
  await insertLead(db, { external_id: 'OK', first_name: 'Juan', last_name: 'Perez', park_phone: '+51 977 456 321' });
  await insertDriver(db, { driver_id: 'bro', first_name: 'Juan Carlos', last_name: 'Quispe Mamani', car_number: 'BRO001' });
  await insertLead(db, { external_id: 'BRO', first_name: 'José Carlos', last_name: 'Quispe Mamani', asset_plate_number: 'BRO001' });
  await runPipeline(db, 'p_limit => 0'); // builds the driver index, evaluates no lead
});
test.after.always(() => db.drop());

interface Explained {
  keys: { plate_norm: string; name_norm: string };
  decision_now: { decision: string; driver_id: string | null };
  candidates: { driver_id: string; kept: boolean; reject_reason: string | null; name_similarity: number; name_veto: unknown }[];
  unmatched: { reason_code: string } | null;
  link: { driver_id: string } | null;
  explanation: string;
}

async function explain(key: string): Promise<Explained> {
  const [r] = await db.query<{ e: Explained }>(`SELECT ops.explain_lead($1) AS e`, [key]);
  return r!.e;
}

test('explains a lead never run yet: keys, every candidate with why, and the decision', async (t) => {
  const e = await explain('AMB');
  t.is(e.keys.plate_norm, 'SHF001');
  t.is(e.decision_now.decision, 'AMBIGUOUS');
  const byDriver = Object.fromEntries(e.candidates.map((c) => [c.driver_id, c]));
  t.true(byDriver['a']!.kept && byDriver['b']!.kept);
  t.is(byDriver['c']!.reject_reason, 'NAME_NOT_SIMILAR');
  t.regex(e.explanation, /Several drivers fit equally well/);
  t.is(e.unmatched, null);
});

test('after a run it shows the unmatched row or the link', async (t) => {
  await runPipeline(db);
  t.is((await explain('AMB')).unmatched?.reason_code, 'AMBIGUOUS');
  const ok = await explain('OK');
  t.is(ok.link?.driver_id, 'j');
  t.is(ok.decision_now.decision, 'MATCH');
});

test('an unknown lead key is refused with a message naming it', async (t) => {
  const err = await t.throwsAsync(db.query(`SELECT ops.explain_lead('nope-123')`));
  t.regex(err!.message, /unknown lead 'nope-123'/);
});

test("explains a relative's plate: the candidate vetoed with the given names that differ", async (t) => {
  const e = await explain('BRO');
  t.is(e.decision_now.decision, 'WEAK_MATCH_ONLY');
  t.deepEqual(e.candidates.map((c) => [c.driver_id, c.reject_reason, Number(c.name_similarity), c.name_veto]),
    [['bro', 'NAME_VETO', 0.675, { lead: { JOSE: 'GIVEN_NAME' }, driver: { JUAN: 'GIVEN_NAME' } }]]);
  t.regex(e.explanation, /differs by a given name or a surname/);
});

test('a NO_CANDIDATES lead dated before the runs\' days_back is not said to be retried: it says how to retry it', async (t) => {
  const own = await createTestDb('explain_scope'); // its own runs: the other tests count on leads never run
  t.teardown(() => own.drop());
  await insertLead(own, { external_id: 'OLD', first_name: 'Rosa', last_name: 'Vega', park_phone: '987650001',
                          lead_created_at: `${addDays(await businessToday(own), -45)} 09:00` });
  await insertLead(own, { external_id: 'NEW', first_name: 'Rosa', last_name: 'Vega', park_phone: '987650002' });
  t.is((await runPipeline(own, 'p_days_back => 60')).status, 'COMPLETED');
  t.is((await runPipeline(own, 'p_days_back => 30')).status, 'COMPLETED'); // the last completed run sets the scope: 30 days
  const explainIn = async (key: string) =>
    (await own.query<{ e: Explained & { scope: { days_back: number; in_scope: boolean } } }>(`SELECT ops.explain_lead($1) AS e`, [key]))[0]!.e;
  const old = await explainIn('OLD');
  t.is(old.decision_now.decision, 'NO_CANDIDATES');
  t.deepEqual([old.scope.days_back, old.scope.in_scope], [30, false]);
  t.notRegex(old.explanation, /retried every run/);
  t.regex(old.explanation, /before the runs' scope \(days_back 30: from \d{4}-\d\d-\d\d\): it is not retried/);
  t.regex(old.explanation, /cabinet-leads reconcile --days-back 45\b/);
  const recent = await explainIn('NEW');
  t.true(recent.scope.in_scope);
  t.regex(recent.explanation, /the next run after a driver with that phone or plate arrives tries it again/);
  // The limbo view says the same
  const rows = await own.query<{ lead_source_pk: string; limbo_reason_detail: string }>(
    `SELECT lead_source_pk, limbo_reason_detail FROM ops.v_cabinet_leads_limbo WHERE lead_source_pk IN ('OLD', 'NEW') ORDER BY 1 DESC`);
  t.regex(rows[0]!.limbo_reason_detail, /^Lead OLD has no identity: NO_CANDIDATES .* it is not retried; to retry it once: cabinet-leads reconcile --days-back 45\.$/);
  t.regex(rows[1]!.limbo_reason_detail, /^Lead NEW has no identity: NO_CANDIDATES .*retried when a driver with that phone or plate arrives/);
  for (const r of rows) t.notRegex(r.limbo_reason_detail, /retried every run/);
});

test('candidates carry the driver as public.drivers holds it: name, phone, plate', async (t) => {
  const e = (await db.query<{ e: { candidates: { driver_id: string; driver_name: string; plate: string; phone: string | null }[] } }>(`SELECT ops.explain_lead('AMB') AS e`))[0]!.e;
  const a = e.candidates.find((c) => c.driver_id === 'a')!;
  t.deepEqual([a.driver_name, a.plate, a.phone], ['Ana Lopez', 'SHF001', null]);
});
