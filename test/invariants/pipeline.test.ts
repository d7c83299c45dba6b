// The invariants of the spec on generated data (demo generator, several scenarios and
// hostile rows): no orphan person, no lead both linked and OPEN-unmatched, one link per
// driver, every lead link with its driver link and origin, idempotent reruns, dry runs
// and failed runs that write nothing.
import test from 'ava';
import { generateDemoData } from '../../src/demo.js';
import { createLogger } from '../../src/logger.js';
import { createTestDb, type TestDb } from '../helpers/db.js';
import { runPipeline } from '../helpers/pipeline.js';
import { LIMBO_VIEW_WEEKS_SQL } from '../helpers/scenario.js';

const log = createLogger({ logLevel: 'silent', logFormat: 'json' });

async function seeded(seed: number): Promise<TestDb> {
  const db = await createTestDb(`inv${seed}`);
  const c = await db.pool.connect();
  try {
    await generateDemoData(c, { seed, leads: 1200, drivers: 2500, tripDays: 45, reset: false }, log);
  } finally {
    c.release();
  }
  return db;
}

/** A fingerprint of the product's data: every canon table, minus the run log and the
 *  retry bookkeeping of unmatched rows, which a rerun is allowed to change. */
async function fingerprint(db: TestDb): Promise<Record<string, string>> {
  const tables: Record<string, string> = {
    identity_registry: `SELECT person_key, confidence_level, primary_phone, primary_license, primary_name, created_run_id FROM canon.identity_registry`,
    identity_links: `SELECT source_table, source_pk, person_key, match_rule, match_score, confidence_level, evidence, linked_at, run_id FROM canon.identity_links`,
    identity_unmatched: `SELECT source_table, source_pk, reason_code, details, candidates, status, first_attempt_at, first_run_id, resolved_at, note FROM canon.identity_unmatched`,
    identity_origin: `SELECT * FROM canon.identity_origin`,
    claims: `SELECT * FROM canon.claims_yango_cabinet_14d`,
    driver_index: `SELECT driver_id, park_id, phone_norm, license_norm, plate_norm, name_norm, hire_date, source_hash, indexed_at FROM canon_internal.driver_index`,
    lead_keys: `SELECT * FROM canon_internal.lead_keys`,
    lead_keys_pending: `SELECT lead_id, lead_date FROM canon_internal.lead_keys_pending`,
  };
  const out: Record<string, string> = {};
  for (const [name, sql] of Object.entries(tables)) {
    const [r] = await db.query<{ h: string; n: string }>(`SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) AS h, count(*) AS n FROM (${sql}) t`);
    out[name] = `${r!.n}:${r!.h}`;
  }
  return out;
}

async function violations(db: TestDb): Promise<Record<string, number>> {
  const [r] = await db.query<Record<string, number>>(`
    WITH view_weeks AS (${LIMBO_VIEW_WEEKS_SQL}),
    live_weeks AS (
      SELECT week_start::text, leads, leads_with_identity, leads_with_driver, limbo_no_identity, limbo_no_driver,
             limbo_no_trips_14d, limbo_trips_no_claim, limbo_ok
      FROM ops.limbo_week_counts())
    SELECT
      (SELECT count(*) FROM canon.identity_registry p
        WHERE NOT EXISTS (SELECT 1 FROM canon.identity_links l WHERE l.person_key = p.person_key))::int AS orphan_persons,
      (SELECT count(*) FROM canon.identity_links l JOIN canon.identity_unmatched u
         ON u.source_table = l.source_table AND u.source_pk = l.source_pk AND u.status = 'OPEN')::int AS linked_and_open,
      (SELECT count(*) FROM (SELECT source_pk FROM canon.identity_links WHERE source_table = 'drivers'
                             GROUP BY source_pk HAVING count(*) > 1) d)::int AS drivers_linked_twice,
      (SELECT count(*) FROM canon.identity_links l
        WHERE l.source_table = 'module_ct_cabinet_leads'
          AND NOT EXISTS (SELECT 1 FROM canon.identity_links d WHERE d.source_table = 'drivers' AND d.person_key = l.person_key))::int AS lead_links_without_driver,
      (SELECT count(*) FROM canon.identity_links l
        WHERE l.source_table = 'module_ct_cabinet_leads'
          AND NOT EXISTS (SELECT 1 FROM canon.identity_origin o WHERE o.person_key = l.person_key))::int AS persons_without_origin,
      (SELECT count(*) FROM canon_internal.lead_keys k
        WHERE k.lead_date >= canon.business_today() - 3650
          AND NOT EXISTS (SELECT 1 FROM canon.identity_links l WHERE l.source_table = 'module_ct_cabinet_leads' AND l.source_pk = k.lead_source_pk)
          AND NOT EXISTS (SELECT 1 FROM canon.identity_unmatched u WHERE u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = k.lead_source_pk))::int AS leads_not_evaluated,
      -- the never-evaluated list holds no evaluated lead (a run evaluates the whole scope)
      -- and each listed row carries its keyed lead_date
      (SELECT count(*) FROM canon_internal.lead_keys_pending q JOIN canon_internal.lead_keys k ON k.lead_id = q.lead_id
        WHERE k.lead_date >= canon.business_today() - 3650 OR q.lead_date IS DISTINCT FROM k.lead_date)::int AS pending_rows_left,
      -- the stored state's counters equal the rows (ops.check_invariants), and the live
      -- week counts built on them equal a pass over the limbo view
      (SELECT violations FROM ops.check_invariants() WHERE invariant = 'LEAD_STATE_COUNTS')::int AS state_counters_off,
      (SELECT count(*) FROM (
         (SELECT * FROM live_weeks EXCEPT ALL SELECT * FROM view_weeks)
         UNION ALL
         (SELECT * FROM view_weeks EXCEPT ALL SELECT * FROM live_weeks)) d)::int AS week_counts_off`);
  return r!;
}

const CLEAN = { orphan_persons: 0, linked_and_open: 0, drivers_linked_twice: 0, lead_links_without_driver: 0, persons_without_origin: 0, leads_not_evaluated: 0, pending_rows_left: 0,
  state_counters_off: 0, week_counts_off: 0 };

for (const seed of [11, 12]) {
  test(`seed ${seed}: a full run holds every invariant and a rerun changes nothing but bookkeeping`, async (t) => {
    const db = await seeded(seed);
    try {
      const first = await runPipeline(db, 'p_days_back => 3650, p_limit => 100000');
      t.is(first.status, 'COMPLETED', first.error_message ?? '');
      t.true(first.stats['match']['newly_linked'] > 100, `linked ${first.stats['match']['newly_linked']}`);
      t.deepEqual(await violations(db), CLEAN);
      const before = await fingerprint(db);
      const second = await runPipeline(db, 'p_days_back => 3650, p_limit => 100000');
      t.is(second.stats['match']['newly_linked'], 0);
      t.deepEqual(await fingerprint(db), before);
      t.deepEqual(await violations(db), CLEAN);
    } finally {
      await db.drop();
    }
  });
}

test('a dry run writes nothing and reports what a real run then does', async (t) => {
  const db = await seeded(21);
  try {
    const before = await fingerprint(db);
    const dry = await runPipeline(db, 'p_days_back => 3650, p_limit => 100000, p_dry_run => true');
    t.is(dry.status, 'COMPLETED');
    t.deepEqual(await fingerprint(db), before);
    const wet = await runPipeline(db, 'p_days_back => 3650, p_limit => 100000');
    for (const k of ['leads_selected', 'newly_linked', 'new_persons', 'unmatched', 'ambiguous', 'conflicts']) {
      t.is(dry.stats['match'][k], wet.stats['match'][k], k);
    }
    t.deepEqual(dry.stats['match']['unmatched_by_reason'], wet.stats['match']['unmatched_by_reason']);
  } finally {
    await db.drop();
  }
});

for (const point of ['after_match', 'after_claims', 'after_snapshot']) {
  test(`a run that fails ${point.replace('_', ' ')} leaves no partial write`, async (t) => {
    const db = await seeded(31);
    try {
      const before = await fingerprint(db);
      const c = await db.connect();
      await c.query(`SET cabinet.failpoint = '${point}'`);
      const res = await c.query<{ run: { status: string } }>(
        `CALL ops.reconcile_cabinet_leads_pipeline(p_days_back => 3650, p_limit => 100000, p_raise_on_failure => false)`,
      );
      t.is(res.rows[0]!.run.status, 'FAILED');
      t.deepEqual(await fingerprint(db), before);
      const [links] = await db.query<{ n: string }>(`SELECT count(*) AS n FROM canon.identity_links`);
      t.is(links!.n, '0');
    } finally {
      await db.drop();
    }
  });
}
