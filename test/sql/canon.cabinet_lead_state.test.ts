// The stored lead state behind the limbo view (canon_internal.cabinet_lead_state): what a run
// re-evaluates and why, that the stored rows equal the live definition
// (canon.v_cabinet_lead_status) after every run, and that counting stages reads the
// stored rows only.
import test from 'ava';
import { generateDemoData } from '../../src/demo.js';
import { createLogger } from '../../src/logger.js';
import { freshDb, type TestDb } from '../helpers/db.js';
import { runPipeline } from '../helpers/pipeline.js';
import { addDays, addTrips, businessToday, insertLead, tripsOnDays } from '../helpers/rows.js';
import { claimsOf, limboRow, linkedLead, stateDrift } from '../helpers/scenario.js';

const log = createLogger({ logLevel: 'silent', logFormat: 'json' });

interface LeadStateStats {
  mode: 'sweep' | 'incremental';
  trips: { read: 'appended_pages' | 'whole_table' | 'none'; whole_read_reason: string | null; rows_may_be_gone: boolean; drivers: number };
  reasons: Record<string, number>;
  evaluated: number;
  written: number;
  removed: number;
}

async function leadState(db: TestDb, args?: string): Promise<{ claims: Record<string, unknown> & { lead_state: LeadStateStats } }> {
  const run = await runPipeline(db, args);
  if (run.status !== 'COMPLETED') throw new Error(`run ${run.id} ${run.status}: ${JSON.stringify(run.stats)}`);
  return run.stats as never;
}

test('after every run on generated data the stored state equals the live definition, one row per lead', async (t) => {
  t.timeout(180_000);
  const db = await freshDb(t, 'lead_state_demo');
  const c = await db.pool.connect();
  try {
    await generateDemoData(c, { seed: 7, leads: 800, drivers: 1500, tripDays: 40, reset: false }, log);
  } finally {
    c.release();
  }
  const first = await leadState(db, 'p_days_back => 60, p_limit => 500');
  t.is(first.claims.lead_state.mode, 'sweep');
  t.is(await stateDrift(db), 0);
  for (let i = 0; i < 3; i++) await leadState(db, 'p_days_back => 60, p_limit => 500');
  t.is(await stateDrift(db), 0);
  const [counts] = await db.query<{ leads: number; state: number; view: number; dirty: number }>(`
    SELECT (SELECT count(*) FROM public.module_ct_cabinet_leads WHERE lead_created_at IS NOT NULL)::int AS leads,
           (SELECT count(*) FROM canon_internal.cabinet_lead_state)::int AS state,
           (SELECT count(*) FROM ops.v_cabinet_leads_limbo)::int AS view,
           (SELECT count(*) FROM canon_internal.cabinet_lead_state_dirty)::int AS dirty`);
  t.true(counts!.leads > 700);
  t.is(counts!.state, counts!.leads);
  t.is(counts!.view, counts!.leads);
  t.is(counts!.dirty, 0);
  const [tnc] = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM ops.v_cabinet_leads_limbo WHERE limbo_stage = 'TRIPS_NO_CLAIM' AND lead_date >= canon.business_today() - 60`,
  );
  t.is(tnc!.n, 0, 'no lead of the scope is left in TRIPS_NO_CLAIM after a run');
});

test('a run with nothing new re-evaluates no lead and writes no state row', async (t) => {
  const db = await freshDb(t, 'lead_state_idle');
  const today = await businessToday(db);
  await linkedLead(db, addDays(today, -3), { trips: tripsOnDays(addDays(today, -3), [0, 1]) });
  const first = await leadState(db);
  const again = await leadState(db);
  // The scope's figures come from the state's counters: the same values, nothing counted again.
  t.is(again.claims['leads_in_scope'], first.claims['leads_in_scope']);
  t.is(again.claims['leads_with_trips'], 1);
  t.like(again.claims.lead_state, { mode: 'incremental', trips: { read: 'appended_pages', drivers: 0 }, evaluated: 0, written: 0, removed: 0 });
  // Nothing changed since the previous snapshot: its counts are copied, not recounted.
  const copied = (again as unknown as { snapshot: { counts_copied_from_run: number | null; stages: Record<string, number> } }).snapshot;
  t.true(Number.isInteger(copied.counts_copied_from_run));
  t.is(copied.stages['OK'], 1);
  t.deepEqual(again.claims.lead_state.reasons, {});
});

test('trips that arrive for an open window are re-read by the next run, which claims them', async (t) => {
  const db = await freshDb(t, 'lead_state_trips');
  const today = await businessToday(db);
  const leadDate = addDays(today, -5);
  const lead = await linkedLead(db, leadDate);
  await leadState(db);
  t.like(await limboRow(db, lead.key), { limbo_stage: 'NO_TRIPS_14D', trips_14d: '0' });

  await addTrips(db, lead.driverId, tripsOnDays(leadDate, [1, 2, 3, 4, 5]));
  // Stored as of the last run until the next one.
  t.like(await limboRow(db, lead.key), { limbo_stage: 'NO_TRIPS_14D', trips_14d: '0' });
  const run = await leadState(db);
  t.like(run.claims.lead_state, { mode: 'incremental', trips: { read: 'appended_pages', drivers: 1 } });
  t.is(run.claims.lead_state.reasons['trips_written'], 1);
  t.like(await limboRow(db, lead.key), { limbo_stage: 'OK', trips_14d: '5', has_claim_m1: true, has_claim_m5: true });
  t.deepEqual((await claimsOf(db, lead.key)).map((c) => c.milestone), [1, 5]);
  t.is(await stateDrift(db), 0);
});

test('late trip rows appended for a window closed long ago are found in the new pages by the next run', async (t) => {
  const db = await freshDb(t, 'lead_state_late');
  const today = await businessToday(db);
  const leadDate = addDays(today, -25); // window closed 11 days ago, inside days_back 30
  const lead = await linkedLead(db, leadDate);
  const other = await linkedLead(db, leadDate);
  await leadState(db);
  await addTrips(db, lead.driverId, tripsOnDays(leadDate, [2]));
  const run = await leadState(db);
  t.like(run.claims.lead_state, { mode: 'incremental', trips: { read: 'appended_pages', drivers: 1 } });
  t.is(run.claims.lead_state.reasons['trips_written'], 1, 'only the lead of the driver with new rows');
  t.like(await limboRow(db, lead.key), { limbo_stage: 'OK', trips_14d: '1', has_claim_m1: true });
  t.like(await limboRow(db, other.key), { limbo_stage: 'NO_TRIPS_14D' });
});

test('trip rows updated in place for a window closed long ago reach the state and the claims by the next run', async (t) => {
  const db = await freshDb(t, 'lead_state_settle');
  const today = await businessToday(db);
  const leadDate = addDays(today, -25);
  const lead = await linkedLead(db, leadDate, { trips: [{ dateFile: 'garbage', trips: 3 }] });
  await leadState(db);
  t.like(await limboRow(db, lead.key), { limbo_stage: 'NO_TRIPS_14D' });
  // Upstream corrects the date of its row: an update, not an append.
  await db.query(
    `WITH u AS (UPDATE public.summary_daily SET date_file = $2 WHERE driver_id = $1 RETURNING 1)
     SELECT count(*), pg_stat_force_next_flush() FROM u`,
    [lead.driverId, addDays(leadDate, 1)],
  );
  const run = await leadState(db);
  t.like(run.claims.lead_state, { mode: 'incremental', trips: { read: 'whole_table', whole_read_reason: 'rows_updated_or_deleted', rows_may_be_gone: true, drivers: 1 } });
  t.like(await limboRow(db, lead.key), { limbo_stage: 'OK', trips_14d: '3', has_claim_m1: true });
  t.is(await stateDrift(db), 0);
});

test('a lead row added after the last run is in the view at once, evaluated live', async (t) => {
  const db = await freshDb(t, 'lead_state_new');
  const today = await businessToday(db);
  await insertLead(db, { lead_created_at: addDays(today, -1) });
  await leadState(db);
  const later = await insertLead(db, { lead_created_at: addDays(today, -1) });
  const row = await limboRow(db, later.key);
  t.is(row.limbo_stage, 'NO_IDENTITY');
  const [stored] = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM canon_internal.cabinet_lead_state WHERE lead_id = $1`, [later.id]);
  t.is(stored!.n, 0, 'not stored before the next run');
  const run = await leadState(db);
  t.is(run.claims.lead_state.reasons['lead_or_links_or_claims_changed'], 1);
  const [after] = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM canon_internal.cabinet_lead_state WHERE lead_id = $1`, [later.id]);
  t.is(after!.n, 1);
});

test('a link removed by hand is shown at once; a claim deleted in psql is re-evaluated by the next run', async (t) => {
  const db = await freshDb(t, 'lead_state_manual');
  const today = await businessToday(db);
  const leadDate = addDays(today, -4);
  const lead = await linkedLead(db, leadDate, { trips: tripsOnDays(leadDate, [0]) });
  const other = await linkedLead(db, leadDate, { trips: tripsOnDays(leadDate, [0]) });
  await leadState(db);
  t.like(await limboRow(db, lead.key), { limbo_stage: 'OK', has_claim_m1: true });

  await db.query(`DELETE FROM canon.claims_yango_cabinet_14d WHERE lead_source_pk = $1`, [other.key]);
  const [dirty] = await db.query<{ keys: string[] }>(`SELECT array_agg(lead_source_pk) AS keys FROM canon_internal.cabinet_lead_state_dirty`);
  t.deepEqual(dirty!.keys, [other.key]);

  await db.query(`SELECT ops.unlink_lead($1, 'wrong person')`, [lead.key]);
  t.like(await limboRow(db, lead.key), { limbo_stage: 'NO_IDENTITY', person_key: null });
  // unlink_lead re-evaluated the marked key too: the deleted claim shows at once.
  t.like(await limboRow(db, other.key), { limbo_stage: 'TRIPS_NO_CLAIM', has_claim_m1: false });

  const run = await leadState(db);
  t.is(run.claims['claims_generated'], 1);
  t.like(await limboRow(db, other.key), { limbo_stage: 'OK', has_claim_m1: true });
  t.is(await stateDrift(db), 0);
});

test('a new lead row with the key of a stored one makes the next run re-evaluate both (key_rows 2), one set of expected claims', async (t) => {
  const db = await freshDb(t, 'lead_state_sibling');
  const today = await businessToday(db);
  const first = await linkedLead(db, addDays(today, -6), { trips: tripsOnDays(addDays(today, -6), [0]) });
  await leadState(db);
  const second = await insertLead(db, { external_id: first.key, lead_created_at: addDays(today, -2) });
  const run = await leadState(db);
  t.is(run.claims.lead_state.reasons['lead_or_links_or_claims_changed'], 2, 'the new row and the stored row of its key');
  const rows = await db.query<{ lead_id: number; key_rows: number }>(
    `SELECT lead_id, key_rows FROM canon_internal.cabinet_lead_state WHERE lead_source_pk = $1 ORDER BY lead_id`,
    [first.key],
  );
  t.deepEqual(rows, [
    { lead_id: first.id, key_rows: 2 },
    { lead_id: second.id, key_rows: 2 },
  ]);
  const expected = await db.query<{ milestone: number; lead_id: number }>(
    `SELECT milestone, lead_id FROM ops.v_cabinet_claims_expected_14d WHERE lead_source_pk = $1 ORDER BY milestone`,
    [first.key],
  );
  t.deepEqual(expected.map((e) => [e.milestone, e.lead_id]), [
    [1, first.id],
    [5, first.id],
    [25, first.id],
  ]);
});

test('changed claim rules make the next run re-evaluate every lead', async (t) => {
  const db = await freshDb(t, 'lead_state_rules');
  const today = await businessToday(db);
  const leadDate = addDays(today, -40); // outside days_back 30: only the rules change reaches it
  const lead = await linkedLead(db, leadDate, { trips: tripsOnDays(leadDate, [0]) });
  await leadState(db);
  t.like(await limboRow(db, lead.key), { expected_amount_14d: '25.00' });
  await db.query(`UPDATE canon.claim_rules SET amount = 30 WHERE milestone = 1`);
  const run = await leadState(db);
  t.like(run.claims.lead_state, { mode: 'sweep' });
  t.true((run.claims.lead_state.reasons['claim_rules_changed'] ?? 0) >= 1);
  t.like(await limboRow(db, lead.key), { expected_amount_14d: '30.00' });
});

test('a lead row deleted upstream leaves the view at once and the state with the next run', async (t) => {
  const db = await freshDb(t, 'lead_state_gone');
  const today = await businessToday(db);
  const lead = await insertLead(db, { lead_created_at: addDays(today, -2) });
  await leadState(db);
  await db.query(`DELETE FROM public.module_ct_cabinet_leads WHERE id = $1`, [lead.id]);
  t.deepEqual(await db.query(`SELECT lead_id FROM ops.v_cabinet_leads_limbo WHERE lead_id = $1`, [lead.id]), []);
  const run = await leadState(db);
  t.is(run.claims.lead_state.mode, 'incremental');
  t.is(run.claims.lead_state.removed, 1);
  t.is(await stateDrift(db), 0);
});

test('counting leads per stage reads the stored state only: trips, links and claims are not touched', async (t) => {
  const db = await freshDb(t, 'lead_state_plan');
  const today = await businessToday(db);
  await linkedLead(db, addDays(today, -3), { trips: tripsOnDays(addDays(today, -3), [0]) });
  await leadState(db);
  const [r] = await db.query<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(
    `EXPLAIN (ANALYZE, FORMAT JSON) SELECT limbo_stage, count(*) FROM ops.v_cabinet_leads_limbo GROUP BY limbo_stage`,
  );
  const scans: Record<string, number> = {};
  const walk = (n: PlanNode) => {
    if (n['Relation Name']) scans[n['Relation Name']] = (scans[n['Relation Name']] ?? 0) + n['Actual Loops'];
    for (const child of n.Plans ?? []) walk(child);
  };
  walk(r!['QUERY PLAN'][0].Plan);
  t.true((scans['cabinet_lead_state'] ?? 0) >= 1, JSON.stringify(scans));
  // The live branch (lead rows newer than the last run) is planned but, with none, never runs.
  for (const rel of ['summary_daily', 'identity_links', 'identity_unmatched', 'claims_yango_cabinet_14d', 'claim_rules']) {
    t.is(scans[rel] ?? 0, 0, `${rel} read: ${JSON.stringify(scans)}`);
  }
});

interface PlanNode {
  'Relation Name'?: string;
  'Actual Loops': number;
  Plans?: PlanNode[];
}
