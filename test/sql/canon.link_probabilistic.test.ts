// The probabilistic tier (canon.link_probabilistic, after the rules): leads the rules leave
// NO_CANDIDATES or WEAK_MATCH_ONLY are linked when the weight of the evidence is clear (a
// plate typed one character off, a changed car under a rare name, two typos, glued names),
// sent to review as PROBABLE_MATCH when it is not, and never linked to a relative, to a
// namesake on another car, to the previous owner of a resold car, or on a common name alone.
// Each case on hand-built rows through the real run, with a background of drivers that
// gives common names their share.
import test from 'ava';
import { type TestDb, withDb } from '../helpers/db.js';
import { linkOf, runPipeline, unmatchedOf } from '../helpers/pipeline.js';
import { addDays, businessToday, insertCommonNameDrivers, insertDriver, insertLead } from '../helpers/rows.js';

interface Evidence {
  fs_version: number;
  probability: number;
  in_words: string;
  contributions: {
    plate: { level: string | null; note: string | null; weight: number };
    name: { weight: number; rare_token_agrees: boolean; tokens: { token: string; partner: string | null; level: string }[] };
    hire_date: { level: string; days_after_lead: number };
  };
  driver: { driver_id: string };
}

async function linkEvidence(db: TestDb, key: string): Promise<{ match_rule: string; match_score: number; evidence: Evidence } | undefined> {
  const [r] = await db.query<{ match_rule: string; match_score: string; evidence: Evidence }>(
    `SELECT match_rule, match_score, evidence FROM canon.identity_links
     WHERE source_table = 'module_ct_cabinet_leads' AND source_pk = $1`, [key]);
  return r ? { match_rule: r.match_rule, match_score: Number(r.match_score), evidence: r.evidence } : undefined;
}

test('a plate typed one character off (O for 0) without a phone is linked by R4_PROBABILISTIC, the confusion in the evidence', (t) =>
  withDb('fs', async (db) => {
    await insertCommonNameDrivers(db);
    const today = await businessToday(db);
    await insertDriver(db, { driver_id: 'juan', first_name: 'Juan', middle_name: 'Carlos', last_name: 'Quispe Mamani', car_number: 'ABC105', hire_date: addDays(today, 1) });
    const lead = await insertLead(db, { first_name: 'Juan Carlos', last_name: 'Quispe Mamani', asset_plate_number: 'abc-1O5' });
    const run = await runPipeline(db);
    const link = await linkEvidence(db, lead.key);
    t.is(link?.match_rule, 'R4_PROBABILISTIC');
    t.is(link?.evidence.driver.driver_id, 'juan');
    t.is(link?.evidence.contributions.plate.level, 'CONFUSION');
    t.is(link?.evidence.contributions.plate.note, 'O/0');
    t.is(link?.evidence.contributions.hire_date.level, 'NEAR');
    t.is(link?.evidence.fs_version, 1);
    t.true(link!.match_score >= 99.9, `score ${link?.match_score}`);
    t.is(link!.match_score, Math.round(Number(link!.evidence.probability) * 10000) / 100, 'score = probability x 100');
    t.regex(link!.evidence.in_words, /^plate one character off \(O\/0\); name: CARLOS equal \(common\), JUAN equal \(common\), MAMANI equal \(common\), QUISPE equal \(common\); hire date 3 days after the lead; target park$/);
    t.is((await unmatchedOf(db, lead.key))?.status, 'RESOLVED');
    t.is(run.stats['probabilistic']['newly_linked'], 1);
    t.is((await linkOf(db, lead.key))?.driver_id, 'juan');
  }));

test('a changed car under a rare surname is linked on the name and the hire date; the plate counts against', (t) =>
  withDb('fs', async (db) => {
    await insertCommonNameDrivers(db);
    const today = await businessToday(db);
    await insertDriver(db, { driver_id: 'rosa', first_name: 'Rosa', last_name: 'Huillca Ccahuana', car_number: 'OLD111', hire_date: addDays(today, 3) });
    const lead = await insertLead(db, { first_name: 'Rosa', last_name: 'Huillca Ccahuana', asset_plate_number: 'NEW999' });
    await runPipeline(db);
    const link = await linkEvidence(db, lead.key);
    t.is(link?.match_rule, 'R4_PROBABILISTIC');
    t.is(link?.evidence.driver.driver_id, 'rosa');
    t.is(link?.evidence.contributions.plate.level, 'DIFFERENT');
    t.true(link!.evidence.contributions.plate.weight < 0);
    t.true(link?.evidence.contributions.name.rare_token_agrees);
    t.regex(link!.evidence.in_words, /CCAHUANA equal \(rare\)/);
  }));

test('a name with two typos and glued tokens on the right plate is linked; the rules alone left it WEAK_MATCH_ONLY', (t) =>
  withDb('fs', async (db) => {
    await insertCommonNameDrivers(db);
    const today = await businessToday(db);
    await insertDriver(db, { driver_id: 'd1', first_name: 'Juan', middle_name: 'Carlos', last_name: 'Quispe Mamani', car_number: 'TYP222', hire_date: addDays(today, 2) });
    await insertDriver(db, { driver_id: 'd2', first_name: 'Luis', last_name: 'de la Cruz Flores', car_number: 'GLU333', hire_date: addDays(today, 2) });
    const typos = await insertLead(db, { first_name: 'Jaun Carlos', last_name: 'Kispe Mamani', asset_plate_number: 'TYP222' });
    const glued = await insertLead(db, { first_name: 'Luis', last_name: 'Delacruz Flores', asset_plate_number: 'GLU333' });
    const run = await runPipeline(db);
    t.is(run.stats['match']['unmatched_by_reason']['WEAK_MATCH_ONLY'], 2, 'the rules: neither name is a match');
    const a = await linkEvidence(db, typos.key);
    t.is(a?.evidence.driver.driver_id, 'd1');
    t.deepEqual(a?.evidence.contributions.name.tokens.filter((x) => x.level !== 'EXACT').map((x) => [x.token, x.partner, x.level]),
      [['JAUN', 'JUAN', 'TYPO'], ['KISPE', 'QUISPE', 'PHONETIC']]);
    const b = await linkEvidence(db, glued.key);
    t.is(b?.match_rule, 'R4_PROBABILISTIC');
    t.is(b?.evidence.driver.driver_id, 'd2');
    t.is(b?.evidence.contributions.name.tokens.find((x) => x.token === 'DELACRUZ')?.level, 'GLUED');
  }));

test('in a base too small to tell a rare name (under 2,000 drivers) a name alone finds no candidate', (t) =>
  withDb('fs', async (db) => {
    await insertDriver(db, { driver_id: 'rosa', first_name: 'Rosa', last_name: 'Huillca Ccahuana', car_number: 'OLD111' });
    const lead = await insertLead(db, { first_name: 'Rosa', last_name: 'Huillca Ccahuana', asset_plate_number: 'NEW999' });
    await runPipeline(db);
    t.is(await linkOf(db, lead.key), undefined);
    t.is((await unmatchedOf(db, lead.key))?.reason_code, 'NO_CANDIDATES');
  }));

test('hard negatives: a relative on a one-edit plate, a namesake on another car and a resold car are never linked', (t) =>
  withDb('fs', async (db) => {
    await insertCommonNameDrivers(db);
    const today = await businessToday(db);
    // the relative: same surnames, other given names, the plate one character off
    await insertDriver(db, { driver_id: 'brother', first_name: 'Juan', middle_name: 'Carlos', last_name: 'Quispe Mamani', car_number: 'REL123', hire_date: addDays(today, 2) });
    const relative = await insertLead(db, { first_name: 'José', middle_name: 'Luis', last_name: 'Quispe Mamani', asset_plate_number: 'REL124' });
    // the namesake: the same common name, another car, no phone
    await insertDriver(db, { driver_id: 'namesake', first_name: 'Jorge', middle_name: 'Luis', last_name: 'Flores Rojas', car_number: 'NAM555', hire_date: addDays(today, 1) });
    const namesake = await insertLead(db, { first_name: 'Jorge Luis', last_name: 'Flores Rojas', asset_plate_number: 'OTH777' });
    // the resale: the car's previous owner, hired two years ago, another name
    await insertDriver(db, { driver_id: 'seller', first_name: 'Pedro', last_name: 'Ramos Tello', car_number: 'RES555', hire_date: addDays(today, -730) });
    const buyer = await insertLead(db, { first_name: 'Walter', last_name: 'Chambi Apaza', asset_plate_number: 'RES555' });
    await runPipeline(db);
    for (const lead of [relative, namesake, buyer]) t.is(await linkOf(db, lead.key), undefined);
    t.is((await unmatchedOf(db, relative.key))?.reason_code, 'NO_CANDIDATES');
    t.is((await unmatchedOf(db, namesake.key))?.reason_code, 'NO_CANDIDATES', 'a common name is no blocking key');
    t.is((await unmatchedOf(db, buyer.key))?.reason_code, 'WEAK_MATCH_ONLY');
    const [rel] = await db.query<{ reject_reason: string | null; probability: string }>(
      `SELECT c->>'reject_reason' AS reject_reason, c->>'probability' AS probability
       FROM canon.probabilistic_decisions(ARRAY[$1::integer]) d, jsonb_array_elements(d.candidates) c`, [relative.id]);
    t.is(rel?.reject_reason ?? null, Number(rel?.probability) >= 0.5 ? 'NAME_VETO' : null, 'vetoed when it would count');
  }));

test('two shift drivers equally close send the lead to review as PROBABLE_MATCH with both candidates and their weights', (t) =>
  withDb('fs', async (db) => {
    await insertCommonNameDrivers(db);
    const today = await businessToday(db);
    await insertDriver(db, { driver_id: 's1', first_name: 'Luis', last_name: 'Huillca Ramos', car_number: 'SHF100', hire_date: addDays(today, 1) });
    await insertDriver(db, { driver_id: 's2', first_name: 'Luis', last_name: 'Huillca Rojas', car_number: 'SHF100', hire_date: addDays(today, 1) });
    const lead = await insertLead(db, { first_name: 'Luis', last_name: 'Huillca', asset_plate_number: 'SHF10O' });
    const run = await runPipeline(db);
    t.is(await linkOf(db, lead.key), undefined);
    const u = await unmatchedOf(db, lead.key);
    t.is(u?.reason_code, 'PROBABLE_MATCH');
    t.deepEqual(u?.candidates.map((c) => c.driver_id).sort(), ['s1', 's2']);
    const [d] = await db.query<{ details: { probabilistic: { why_not_linked: string; fs_version: number; rules_reason: string } } }>(
      `SELECT details FROM canon.identity_unmatched WHERE source_pk = $1`, [lead.key]);
    t.is(d?.details.probabilistic.why_not_linked, 'SECOND_CANDIDATE_CLOSE');
    t.is(d?.details.probabilistic.rules_reason, 'NO_CANDIDATES');
    t.is(d?.details.probabilistic.fs_version, 1);
    t.is(run.stats['probabilistic']['probable_match'], 1);
    t.true(run.stats['steps'].some((s: { step: string }) => s.step === 'link_probabilistic'));
    // the review queue shows the band with the evidence in words
    const [q] = await db.query<{ reason_code: string; candidates: { driver_id: string; rule: string; why_not_linked: string }[] }>(
      `SELECT reason_code, candidates FROM ops.v_review_queue WHERE lead_source_pk = $1`, [lead.key]);
    t.is(q?.reason_code, 'PROBABLE_MATCH');
    t.is(q?.candidates[0]?.rule, 'R4_PROBABILISTIC');
    t.regex(q!.candidates[0]!.why_not_linked,
      /^another candidate is nearly as likely \(probability 0\.\d+\): plate one character off \(O\/0\); name: HUILLCA equal \(common\), LUIS equal \(common\), (RAMOS|ROJAS) not given on the lead; hire date 3 days after the lead; target park$/);
    t.regex(q!.candidates[1]!.why_not_linked, /^less likely than the first|^another candidate/);
  }));

test('a new active parameter version marks every open unmatched lead due, and its links record it', (t) =>
  withDb('fs', async (db) => {
    const lead = await insertLead(db, { first_name: 'Nadie', last_name: 'Ninguno', asset_plate_number: 'NON000' });
    await runPipeline(db);
    t.is((await unmatchedOf(db, lead.key))?.reason_code, 'NO_CANDIDATES');
    await db.query(`UPDATE canon.identity_unmatched SET retry_due = false`);
    await db.query(`
      INSERT INTO canon.match_fs_versions (version, prior_match_share, link_probability_min, review_probability_min, margin_bits_min,
                                           rare_token_max_share, name_block_max_drivers, token_share_min, notes)
      SELECT 2, prior_match_share, 0.9995, review_probability_min, margin_bits_min, rare_token_max_share,
             name_block_max_drivers, token_share_min, 'stricter link band' FROM canon.match_fs_versions WHERE version = 1;
      INSERT INTO canon.match_fs_levels SELECT 2, comparison, level, m, u, u_kind, note FROM canon.match_fs_levels WHERE version = 1;
      UPDATE canon.match_fs_versions SET active = (version = 2);`);
    const [u] = await db.query<{ retry_due: boolean }>(`SELECT retry_due FROM canon.identity_unmatched WHERE source_pk = $1`, [lead.key]);
    t.true(u?.retry_due);
    const today = await businessToday(db);
    await insertCommonNameDrivers(db);
    await insertDriver(db, { driver_id: 'rosa', first_name: 'Rosa', last_name: 'Huillca Ccahuana', car_number: 'OLD111', hire_date: addDays(today, 3) });
    const rosa = await insertLead(db, { first_name: 'Rosa', last_name: 'Huillca Ccahuana', asset_plate_number: 'NEW999' });
    const run = await runPipeline(db);
    t.is(run.stats['probabilistic']['fs_version'], 2);
    t.is((await linkEvidence(db, rosa.key))?.evidence.fs_version, 2);
  }));

test('ops.explain_lead shows what the tier would do now and says it in the explanation', (t) =>
  withDb('fs', async (db) => {
    await insertCommonNameDrivers(db);
    const today = await businessToday(db);
    await insertDriver(db, { driver_id: 'juan', first_name: 'Juan', middle_name: 'Carlos', last_name: 'Quispe Mamani', car_number: 'ABC105', hire_date: addDays(today, 1) });
    const lead = await insertLead(db, { first_name: 'Juan Carlos', last_name: 'Quispe Mamani', asset_plate_number: 'abc-1O5' });
    await runPipeline(db, 'p_days_back => 30, p_limit => 0');
    const [e] = await db.query<{ e: { decision_now: { decision: string }; probabilistic_now: { outcome: string; driver_id: string; fs_version: number }; explanation: string } }>(
      `SELECT ops.explain_lead($1) AS e`, [lead.key]);
    t.is(e?.e.decision_now.decision, 'NO_CANDIDATES');
    t.like(e?.e.probabilistic_now, { outcome: 'LINK', driver_id: 'juan', fs_version: 1 });
    t.regex(e!.e.explanation, /The probabilistic tier links driver juan \(R4_PROBABILISTIC, probability 0\.99\d+\): plate one character off \(O\/0\)/);
  }));

test('canon.estimate_fs_u counts the drivers near a driver\'s plate and the shares of hire-date windows and parks', (t) =>
  withDb('fs', async (db) => {
    const today = await businessToday(db);
    // two shift drivers on one plate, one plate an O/0 confusion away, one plate one edit away
    await insertDriver(db, { driver_id: 'a', first_name: 'Ana', last_name: 'Uno', car_number: 'AOA100', hire_date: today });
    await insertDriver(db, { driver_id: 'b', first_name: 'Bea', last_name: 'Dos', car_number: 'AOA100', hire_date: today });
    await insertDriver(db, { driver_id: 'c', first_name: 'Cira', last_name: 'Tres', car_number: 'A0A100', hire_date: today });
    await insertDriver(db, { driver_id: 'd', first_name: 'Dora', last_name: 'Cuatro', car_number: 'AOA109', hire_date: today, park_id: 'other' });
    await insertLead(db, { first_name: 'X', asset_plate_number: 'ZZZ999', lead_created_at: addDays(today, -2) });
    await runPipeline(db, 'p_days_back => 30, p_limit => 0');
    const rows = await db.query<{ comparison: string; level: string; u: string; sample: number }>(
      `SELECT comparison, level, u::text, sample FROM canon.estimate_fs_u(100) ORDER BY comparison, level`);
    const u = Object.fromEntries(rows.map((r) => [`${r.comparison}.${r.level}`, Number(r.u)]));
    // per driver: a and b share a plate (2 of 4); a-c, b-c, c-a, c-b are O/0 confusions (4); a-d, b-d, d-a, d-b one edit (4)
    t.is(u['PLATE.EXACT'], 0.5);
    t.is(u['PLATE.CONFUSION'], 1);
    t.is(u['PLATE.ONE_EDIT'], 1);
    t.is(u['PARK.TARGET'], 0.75);
    t.is(u['HIRE_DATE.NEAR'], 1, 'the one lead, two days before every hire date');
  }));

test('a driver the rules link one lead to and the tier another in the same run has one person, one driver link and one origin', (t) =>
  withDb('fs', async (db) => {
    await insertCommonNameDrivers(db);
    const today = await businessToday(db);
    await insertDriver(db, { driver_id: 'juan', first_name: 'Juan', middle_name: 'Carlos', last_name: 'Quispe Mamani', car_number: 'ABC105', phone: '51977456321', hire_date: addDays(today, 1) });
    const byPhone = await insertLead(db, { first_name: 'Juan Carlos', last_name: 'Quispe Mamani', park_phone: '977456321', lead_created_at: `${addDays(today, -1)} 10:00:00` });
    const byTier = await insertLead(db, { first_name: 'Juan Carlos', last_name: 'Quispe Mamani', asset_plate_number: 'abc-1O5', lead_created_at: `${addDays(today, -2)} 10:00:00` });
    const run = await runPipeline(db);
    t.is(run.stats['probabilistic']['newly_linked'], 1);
    const rules = await linkOf(db, byPhone.key);
    const tier = await linkOf(db, byTier.key);
    t.is(tier?.match_rule, 'R4_PROBABILISTIC');
    t.not(rules?.match_rule, 'R4_PROBABILISTIC');
    t.is(tier?.person_key, rules?.person_key, 'the tier reuses the person the rules made');
    const [counts] = await db.query<{ persons: number; driver_links: number; origins: number }>(
      `SELECT (SELECT count(*)::int FROM canon.identity_registry) AS persons,
              (SELECT count(*)::int FROM canon.identity_links WHERE source_table = 'drivers' AND source_pk = 'juan') AS driver_links,
              (SELECT count(*)::int FROM canon.identity_origin) AS origins`);
    t.deepEqual(counts, { persons: 1, driver_links: 1, origins: 1 });
  }));
