// ops.preview_links: the current decisions (rules, then the probabilistic tier) on every
// lead of a scope against what is stored, written nowhere. A lead a run would link shows
// as add and is gone after the run; a rule, parameter or tier version changed shows the
// stored links it touches as change or remove, which no run applies; what a person decided
// (a manual link, an ignored lead, a "not this driver" label) is never proposed again.
import test from 'ava';
import { type TestDb, withDb } from '../helpers/db.js';
import { linkOf, runPipeline, unmatchedOf } from '../helpers/pipeline.js';
import { loginRole } from '../helpers/roles.js';
import { addDays, businessToday, insertCommonNameDrivers, insertDriver, insertLead } from '../helpers/rows.js';
import { linkPerson } from '../helpers/scenario.js';
import { seedDemo } from '../reliability/support.js';
import type { PreviewRow } from '../../src/cli/reconcile-preview.js';

/** A row of ops.preview_links as the CLI reads it (scores as numbers), without the lead id and date. */
type Row = Omit<PreviewRow, 'lead_id' | 'lead_date'>;

async function preview(db: Pick<TestDb, 'query'>, args = ''): Promise<Row[]> {
  const rows = await db.query<Row>(
    `SELECT lead_source_pk, change_kind, a_run_would_apply, stored_state, stored_reason_code, stored_driver_id,
            stored_match_rule, stored_match_score::float8 AS stored_match_score, stored_confidence_level, stored_fs_version,
            proposed_driver_id, proposed_match_rule, proposed_match_score::float8 AS proposed_match_score,
            proposed_confidence_level, proposed_fs_version, proposed_reason_code, settled_claims, why
     FROM ops.preview_links(${args})`,
  );
  return rows;
}

/** Keys the lead rows and indexes the drivers (steps 4-5 of a run) without deciding any lead. */
const keyOnly = (db: TestDb) => runPipeline(db, 'p_days_back => 30, p_limit => 0');

test('a lead a run would link shows as add that a run applies; the run makes exactly that link and the preview is empty after it', (t) =>
  withDb('preview', async (db) => {
    await insertDriver(db, { driver_id: 'd1', first_name: 'Juan', last_name: 'Perez', phone: '977456321' });
    const lead = await insertLead(db, { first_name: 'Juan', last_name: 'Perez', park_phone: '+51 977 456 321' });
    t.deepEqual(await preview(db), [], 'no run has keyed the lead yet: the preview does not see it');
    await keyOnly(db);
    t.deepEqual(await preview(db), [{
      lead_source_pk: lead.key, change_kind: 'add', a_run_would_apply: true,
      stored_state: 'NOT_EVALUATED', stored_reason_code: null, stored_driver_id: null, stored_match_rule: null,
      stored_match_score: null, stored_confidence_level: null, stored_fs_version: null,
      proposed_driver_id: 'd1', proposed_match_rule: 'R1_PHONE_EXACT', proposed_match_score: 95,
      proposed_confidence_level: 'HIGH', proposed_fs_version: null, proposed_reason_code: null, settled_claims: null,
      why: 'not evaluated yet: the next run links it',
    }]);
    await runPipeline(db);
    t.like(await linkOf(db, lead.key), { driver_id: 'd1', match_rule: 'R1_PHONE_EXACT' });
    t.deepEqual(await preview(db), []);
  }));

test('on the demo\'s mix of leads the adds a run applies are exactly the links the run makes, rule and score included', (t) =>
  withDb('preview', async (db) => {
    await seedDemo(db, { seed: 19, leads: 400, drivers: 800 });
    await keyOnly(db);
    const adds = (await preview(db)).filter((r) => r.change_kind === 'add');
    t.true(adds.length > 100, `${adds.length} adds`);
    t.true(adds.every((r) => r.a_run_would_apply));
    await runPipeline(db);
    const linked = await db.query<{ lead_source_pk: string; driver_id: string; match_rule: string; match_score: number }>(
      `SELECT l.source_pk AS lead_source_pk, pd.driver_id, l.match_rule, l.match_score::float8 AS match_score
       FROM canon.identity_links l JOIN canon.v_person_driver pd ON pd.person_key = l.person_key
       WHERE l.source_table = 'module_ct_cabinet_leads' ORDER BY 1`);
    t.deepEqual(
      adds.map((r) => ({ lead_source_pk: r.lead_source_pk, driver_id: r.proposed_driver_id, match_rule: r.proposed_match_rule, match_score: r.proposed_match_score }))
        .sort((a, b) => a.lead_source_pk.localeCompare(b.lead_source_pk)),
      linked.sort((a, b) => a.lead_source_pk.localeCompare(b.lead_source_pk)));
    t.deepEqual(await preview(db), []);
  }));

test('a rule\'s score changed shows every link it made as change that no run applies; a run keeps the stored link', (t) =>
  withDb('preview', async (db) => {
    await insertDriver(db, { driver_id: 'd1', first_name: 'Juan', last_name: 'Perez', phone: '977456321' });
    await insertDriver(db, { driver_id: 'd2', first_name: 'Rosa', last_name: 'Ticona', car_number: 'ABC123' });
    const byPhone = await insertLead(db, { first_name: 'Juan', last_name: 'Perez', park_phone: '977456321' });
    await insertLead(db, { first_name: 'Rosa', last_name: 'Ticona', asset_plate_number: 'ABC-123' });
    await runPipeline(db);
    await db.query(`UPDATE canon.match_rules SET score = 90 WHERE rule = 'R1_PHONE_EXACT'`);
    const expected = [{
      lead_source_pk: byPhone.key, change_kind: 'change', a_run_would_apply: false,
      stored_driver_id: 'd1', stored_match_rule: 'R1_PHONE_EXACT', stored_match_score: 95,
      proposed_driver_id: 'd1', proposed_match_rule: 'R1_PHONE_EXACT', proposed_match_score: 90,
      why: 'score 95.00 → 90.00: runs keep stored links (unlink-lead, and the next run decides it again)',
    }];
    const rows = await preview(db);
    t.is(rows.length, 1, 'the plate link (R3) is untouched');
    t.like(rows[0], expected[0]!);
    await runPipeline(db);
    const [stored] = await db.query<{ match_score: string }>(
      `SELECT match_score::text FROM canon.identity_links WHERE source_table = 'module_ct_cabinet_leads' AND source_pk = $1`, [byPhone.key]);
    t.is(stored?.match_score, '95.00');
    t.like((await preview(db))[0], expected[0]!);
  }));

test('a stricter name threshold shows a plate link the decisions would no longer make as remove (to review); once the tier can tell the name rare, as change to R4', (t) =>
  withDb('preview', async (db) => {
    // a surname missing on the lead: similarity 0.83
    await insertDriver(db, { driver_id: 'd1', first_name: 'Rosa', last_name: 'Ticona Huillca', car_number: 'ABC123' });
    const lead = await insertLead(db, { first_name: 'Rosa', last_name: 'Ticona', asset_plate_number: 'ABC123' });
    await runPipeline(db);
    t.like(await linkOf(db, lead.key), { driver_id: 'd1', match_rule: 'R3_PLATE_EXACT_NAME_SIMILAR' });
    await db.query(`UPDATE canon.match_parameters SET name_similarity_min = 0.99`);
    const [removed] = await preview(db);
    t.like(removed, {
      lead_source_pk: lead.key, change_kind: 'remove', a_run_would_apply: false, stored_state: 'LINKED',
      stored_driver_id: 'd1', stored_match_rule: 'R3_PLATE_EXACT_NAME_SIMILAR', stored_match_score: 85,
      proposed_driver_id: null, proposed_match_rule: null, proposed_fs_version: 1, proposed_reason_code: 'PROBABLE_MATCH',
      why: 'linked by R3_PLATE_EXACT_NAME_SIMILAR (85.00); the decisions now leave it PROBABLE_MATCH: runs keep stored links (unlink-lead, and the next run decides it again)',
    });
    // 2,000 drivers more, indexed by a run: TICONA and HUILLCA are rare now, and the tier links the pair
    await insertCommonNameDrivers(db);
    await keyOnly(db);
    const [changed] = await preview(db);
    t.like(changed, {
      lead_source_pk: lead.key, change_kind: 'change', a_run_would_apply: false,
      stored_driver_id: 'd1', stored_match_rule: 'R3_PLATE_EXACT_NAME_SIMILAR',
      proposed_driver_id: 'd1', proposed_match_rule: 'R4_PROBABILISTIC', proposed_fs_version: 1,
    });
    t.regex(changed!.why, /^rule R3_PLATE_EXACT_NAME_SIMILAR → R4_PROBABILISTIC, score 85\.00 → \d+\.\d\d, confidence MEDIUM → (HIGH|MEDIUM): runs keep stored links/);
  }));

test('a new tier version with a stricter link band shows an R4 link as remove (PROBABLE_MATCH) with the version that decided it', (t) =>
  withDb('preview', async (db) => {
    await insertCommonNameDrivers(db);
    const today = await businessToday(db);
    await insertDriver(db, { driver_id: 'juan', first_name: 'Juan', middle_name: 'Carlos', last_name: 'Quispe Mamani', car_number: 'ABC105', hire_date: addDays(today, 1) });
    const lead = await insertLead(db, { first_name: 'Juan Carlos', last_name: 'Quispe Mamani', asset_plate_number: 'abc-1O5' });
    await runPipeline(db);
    t.is((await linkOf(db, lead.key))?.match_rule, 'R4_PROBABILISTIC');
    t.deepEqual(await preview(db), [], 'the stored tier link is what the tier decides now');
    await db.query(`
      INSERT INTO canon.match_fs_versions (version, prior_match_share, link_probability_min, review_probability_min, margin_bits_min,
                                           rare_token_max_share, name_block_max_drivers, token_share_min, notes)
      SELECT 2, 0.001, 0.999999, review_probability_min, margin_bits_min, rare_token_max_share,
             name_block_max_drivers, token_share_min, 'a rarer prior, a stricter link band' FROM canon.match_fs_versions WHERE version = 1;
      INSERT INTO canon.match_fs_levels SELECT 2, comparison, level, m, u, u_kind, note FROM canon.match_fs_levels WHERE version = 1;
      UPDATE canon.match_fs_versions SET active = (version = 2);`);
    const rows = await preview(db);
    t.is(rows.length, 1);
    t.like(rows[0], {
      lead_source_pk: lead.key, change_kind: 'remove', a_run_would_apply: false,
      stored_driver_id: 'juan', stored_match_rule: 'R4_PROBABILISTIC', stored_fs_version: 1,
      proposed_match_rule: null, proposed_fs_version: 2, proposed_reason_code: 'PROBABLE_MATCH',
    });
    t.regex(rows[0]!.why, /^linked by R4_PROBABILISTIC \(\d+\.\d\d\); the decisions now leave it PROBABLE_MATCH: runs keep stored links/);
  }));

test('an OPEN lead a new driver one plate edit away would link: once the driver is indexed the lead is due and the add is one a run applies', (t) =>
  withDb('preview', async (db) => {
    await insertCommonNameDrivers(db);
    const today = await businessToday(db);
    const lead = await insertLead(db, { first_name: 'Juan Carlos', last_name: 'Quispe Mamani', asset_plate_number: 'abc-1O5' });
    await runPipeline(db);
    t.like(await unmatchedOf(db, lead.key), { reason_code: 'NO_CANDIDATES', status: 'OPEN' });
    // the driver arrives; a run that decides no lead indexes it and marks the lead due (the tier's pair)
    await insertDriver(db, { driver_id: 'juan', first_name: 'Juan', middle_name: 'Carlos', last_name: 'Quispe Mamani', car_number: 'ABC105', hire_date: addDays(today, 1) });
    await keyOnly(db);
    t.is(await linkOf(db, lead.key), undefined);
    const [row] = await preview(db);
    t.like(row, {
      lead_source_pk: lead.key, change_kind: 'add', a_run_would_apply: true,
      stored_state: 'OPEN', stored_reason_code: 'NO_CANDIDATES',
      proposed_driver_id: 'juan', proposed_match_rule: 'R4_PROBABILISTIC', proposed_fs_version: 1,
      why: 'OPEN (NO_CANDIDATES), due for a retry: the next run links it',
    });
    t.true(row!.proposed_match_score! >= 99.9);
    await runPipeline(db);
    t.like(await linkOf(db, lead.key), { driver_id: 'juan', match_rule: 'R4_PROBABILISTIC' });
    t.deepEqual(await preview(db), []);
  }));

test('what a person decided is never proposed again: a manual link, an ignored lead, a "not this driver" label', (t) =>
  withDb('preview', async (db) => {
    for (const n of [1, 2, 3, 4]) {
      await insertDriver(db, { driver_id: `d${n}`, first_name: 'Juan', last_name: `Perez${'x'.repeat(n)}`, phone: `97700000${n}` });
    }
    const resolved = await insertLead(db, { first_name: 'Juan', last_name: 'Perezx', park_phone: '977000001' });
    const ignored = await insertLead(db, { first_name: 'Juan', last_name: 'Perezxx', park_phone: '977000002' });
    const labelled = await insertLead(db, { first_name: 'Juan', last_name: 'Perezxxx', park_phone: '977000003' });
    const control = await insertLead(db, { first_name: 'Juan', last_name: 'Perezxxxx', park_phone: '977000004' });
    await keyOnly(db);
    t.deepEqual((await preview(db)).map((r) => r.lead_source_pk).sort(), [resolved.key, ignored.key, labelled.key, control.key].sort());
    // the rules would link it to d1 by its phone: a person said d4
    await db.query(`SELECT ops.resolve_lead($1, 'd4', 'called the driver', true)`, [resolved.key]);
    await db.query(`SELECT ops.ignore_lead($1, 'a test lead')`, [ignored.key]);
    await db.query(`SELECT ops.not_this_driver($1, 'd3', 'his brother')`, [labelled.key]);
    t.deepEqual((await preview(db)).map((r) => [r.lead_source_pk, r.change_kind]), [[control.key, 'add']]);
    // a rule change touches the run's links, never the manual one
    await runPipeline(db);
    await db.query(`UPDATE canon.match_rules SET score = 90 WHERE rule = 'R1_PHONE_EXACT'`);
    t.deepEqual((await preview(db)).map((r) => [r.lead_source_pk, r.change_kind]), [[control.key, 'change']]);
    t.like(await linkOf(db, resolved.key), { match_rule: 'MANUAL_RESOLUTION', driver_id: 'd4' });
  }));

test('a NO_DRIVER lead\'s person gets the decided driver only in an only-limbo run, and the preview says which', (t) =>
  withDb('preview', async (db) => {
    await insertDriver(db, { driver_id: 'd1', first_name: 'Juan', last_name: 'Perez', phone: '977456321' });
    const lead = await insertLead(db, { first_name: 'Juan', last_name: 'Perez', park_phone: '977456321' });
    await linkPerson(db, [lead.key], []); // R1_PHONE_EXACT 95 HIGH, a person with no driver
    await keyOnly(db);
    const expected = {
      lead_source_pk: lead.key, change_kind: 'change', stored_state: 'LINKED', stored_driver_id: null,
      proposed_driver_id: 'd1', proposed_match_rule: 'R1_PHONE_EXACT', proposed_match_score: 95,
    };
    const [plain] = await preview(db);
    t.like(plain, { ...expected, a_run_would_apply: false });
    t.is(plain!.why, 'driver none → d1: its person has no driver (NO_DRIVER), a run with only-limbo gives it this driver; the lead\'s link stays as it is');
    const [limbo] = await preview(db, 'p_days_back => 30, p_only_limbo => true');
    t.like(limbo, { ...expected, a_run_would_apply: true });
    t.regex(limbo!.why, /the next run \(only-limbo\) gives it this driver/);
    await runPipeline(db);
    t.like((await preview(db))[0], { change_kind: 'change' }, 'a plain run leaves the person without a driver');
    await runPipeline(db, 'p_days_back => 30, p_limit => 2000, p_only_limbo => true');
    t.is((await linkOf(db, lead.key))?.driver_id, 'd1');
    t.deepEqual(await preview(db), []);
  }));

test('a settled claim on a link that would change is named: unlinking it waits for finance', (t) =>
  withDb('preview', async (db) => {
    await insertDriver(db, { driver_id: 'd1', first_name: 'Juan', last_name: 'Perez', phone: '977456321' });
    const lead = await insertLead(db, { first_name: 'Juan', last_name: 'Perez', park_phone: '977456321' });
    await runPipeline(db);
    const [person] = await db.query<{ person_key: string }>(
      `SELECT person_key FROM canon.identity_links WHERE source_table = 'module_ct_cabinet_leads' AND source_pk = $1`, [lead.key]);
    await db.query(
      `INSERT INTO canon.claims_yango_cabinet_14d (lead_source_pk, milestone, person_key, driver_id, lead_date, amount_expected, status, paid_at)
       VALUES ($1, 1, $2, 'd1', canon.business_today() - 2, 25, 'paid', now())
       ON CONFLICT (lead_source_pk, milestone) DO UPDATE SET status = 'paid', paid_at = now()`, [lead.key, person!.person_key]);
    await db.query(`UPDATE canon.match_rules SET score = 90 WHERE rule = 'R1_PHONE_EXACT'`);
    const [row] = await preview(db);
    t.is(row?.settled_claims, 'M1 paid');
    t.regex(row!.why, /; settled claims \(M1 paid\): unlink-lead refuses until finance changes them$/);
  }));

test('the scope is the runs\': a lead dated before days_back is left out, a wider scope takes it; a bad days_back is refused', (t) =>
  withDb('preview', async (db) => {
    const today = await businessToday(db);
    await insertDriver(db, { driver_id: 'd1', first_name: 'Juan', last_name: 'Perez', phone: '977456321', hire_date: addDays(today, -45) });
    const old = await insertLead(db, { first_name: 'Juan', last_name: 'Perez', park_phone: '977456321', lead_created_at: addDays(today, -40) });
    await runPipeline(db, 'p_days_back => 60, p_limit => 0');
    t.deepEqual(await preview(db), []);
    t.deepEqual(await preview(db, 'p_days_back => 30'), []);
    t.deepEqual((await preview(db, 'p_days_back => 40')).map((r) => r.lead_source_pk), [old.key]);
    for (const bad of ['-1', '36501', 'NULL']) {
      const err = (await t.throwsAsync(preview(db, `p_days_back => ${bad}`))) as Error & { code?: string };
      t.is(err.code, '22023', bad);
      t.regex(err.message, /invalid days_back/);
    }
  }));

test('the preview writes nothing: no transaction id is taken, no row of any table changes, and it runs in a READ ONLY transaction', (t) =>
  withDb('preview', async (db) => {
    await insertCommonNameDrivers(db);
    const today = await businessToday(db);
    await insertDriver(db, { driver_id: 'juan', first_name: 'Juan', middle_name: 'Carlos', last_name: 'Quispe Mamani', car_number: 'ABC105', hire_date: addDays(today, 1) });
    await insertDriver(db, { driver_id: 'd1', first_name: 'Rosa', last_name: 'Ticona', phone: '977456321' });
    await insertLead(db, { first_name: 'Juan Carlos', last_name: 'Quispe Mamani', asset_plate_number: 'abc-1O5' });
    await insertLead(db, { first_name: 'Rosa', last_name: 'Ticona', park_phone: '977456321' });
    await keyOnly(db);
    // every table of the product and upstream: its rows and their row versions (xmin, ctid)
    const fingerprint = () => db.query<{ t: string; f: string }>(`
      SELECT c.oid::regclass::text AS t,
             (xpath('/row/f/text()', query_to_xml(format(
               'SELECT count(*) || '':'' || coalesce(md5(string_agg(xmin::text || ctid::text, '','' ORDER BY ctid)), '''') AS f FROM %s',
               c.oid::regclass), false, true, '')))[1]::text AS f
      FROM pg_class c
      WHERE c.relkind = 'r' AND c.relnamespace::regnamespace::text IN ('canon', 'canon_internal', 'ops', 'public')
      ORDER BY 1`);
    const before = await fingerprint();
    const c = await db.connect();
    await c.query('BEGIN READ ONLY');
    const { rows } = await c.query<{ change_kind: string; proposed_match_rule: string }>(
      `SELECT change_kind, proposed_match_rule FROM ops.preview_links() ORDER BY proposed_match_rule`);
    const { rows: [xid] } = await c.query<{ xid: string | null }>(`SELECT pg_current_xact_id_if_assigned()::text AS xid`);
    await c.query('COMMIT');
    t.deepEqual(rows, [{ change_kind: 'add', proposed_match_rule: 'R1_PHONE_EXACT' }, { change_kind: 'add', proposed_match_rule: 'R4_PROBABILISTIC' }],
      'both tiers decided');
    t.is(xid?.xid, null);
    t.deepEqual(await fingerprint(), before);
  }));

test('a reader may call it and sees what the owner sees', (t) =>
  withDb('preview', async (db) => {
    await insertDriver(db, { driver_id: 'd1', first_name: 'Juan', last_name: 'Perez', phone: '977456321' });
    await insertLead(db, { first_name: 'Juan', last_name: 'Perez', park_phone: '977456321' });
    await keyOnly(db);
    const reader = await loginRole(t, db.url, 'cabinet_leads_reader');
    const sql = `SELECT lead_source_pk, change_kind, proposed_driver_id FROM ops.preview_links()`;
    const owner = await db.query(sql);
    t.is(owner.length, 1);
    t.deepEqual(await reader.query(sql), owner);
  }));
