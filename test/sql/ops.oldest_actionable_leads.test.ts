// What the report lists of the leads a person can act on (ops.oldest_actionable_leads,
// ops.limbo_stage_actions) equals what a pass over the limbo view gives (the queries the
// report ran before: bench/sql/oldest_actionable_from_view.sql and
// bench/sql/stage_actions_from_view.sql), while the stored state is current and while it
// is not: a lead unlinked or a claim deleted in psql, an unmatched record decided by hand,
// a lead committed after the run under the key of a record awaiting review, a lead
// re-keyed, a lead row deleted.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { PROJECT_ROOT } from '../../src/config.js';
import { freshDb, type TestDb } from '../helpers/db.js';
import { runPipeline } from '../helpers/pipeline.js';
import { addDays, businessToday, insertLead, uid } from '../helpers/rows.js';
import { seedDemo, violations } from '../reliability/support.js';

/** What the report ran before (one pass over the limbo view each). */
const OLDEST_FROM_VIEW = readFileSync(path.join(PROJECT_ROOT, 'bench', 'sql', 'oldest_actionable_from_view.sql'), 'utf8');
const ACTIONS_FROM_VIEW = readFileSync(path.join(PROJECT_ROOT, 'bench', 'sql', 'stage_actions_from_view.sql'), 'utf8');

async function agrees(t: { deepEqual(a: unknown, b: unknown, m?: string): void }, db: TestDb, moment: string): Promise<void> {
  for (const perStage of [0, 2, 1000]) {
    t.deepEqual(
      await db.query(`SELECT limbo_stage, lead_id, lead_source_pk, lead_date::text AS lead_date, age_days, lead_name, reason_code,
                             limbo_reason_detail, stage_total FROM ops.oldest_actionable_leads($1)`, [perStage]),
      await db.query(OLDEST_FROM_VIEW, [perStage]),
      `${moment}: the oldest ${perStage} per stage`,
    );
  }
  t.deepEqual(await db.query(`SELECT * FROM ops.limbo_stage_actions()`), await db.query(ACTIONS_FROM_VIEW), `${moment}: counts per stage`);
}

async function run(db: TestDb): Promise<void> {
  const r = await runPipeline(db, 'p_days_back => 40, p_limit => 5000');
  if (r.status !== 'COMPLETED') throw new Error(`run ${r.id} ${r.status}: ${r.error_message}`);
}

test('the leads the report lists and counts equal a pass over the limbo view, also while the stored state is not current', async (t) => {
  const db = await freshDb(t, 'oldest_actionable');
  const today = await businessToday(db);
  await seedDemo(db, { seed: 23, leads: 400, drivers: 800, tripDays: 30 });
  await run(db);
  const [reasons] = await db.query<{ n: number }>(
    `SELECT count(DISTINCT reason_code)::int AS n FROM canon.identity_unmatched
     WHERE status = 'OPEN' AND reason_code IN ('AMBIGUOUS', 'CONFLICT', 'WEAK_MATCH_ONLY', 'SHARED_KEY', 'PROBABLE_MATCH', 'MISSING_KEYS')`);
  t.true(reasons!.n >= 2, 'the demo leaves leads awaiting review');
  await agrees(t, db, 'after a run');

  // Changed behind the stored state: a linked lead's driver link and a claim deleted, a
  // record awaiting review ignored by hand and another reopened.
  await db.query(`DELETE FROM canon.identity_links WHERE source_table = 'drivers' AND person_key = (
                    SELECT l.person_key FROM canon.identity_links l JOIN canon_internal.cabinet_lead_state s ON s.lead_source_pk = l.source_pk
                    WHERE l.source_table = 'module_ct_cabinet_leads' AND s.limbo_stage = 'OK' ORDER BY s.lead_date DESC, s.lead_id LIMIT 1)`);
  await db.query(`DELETE FROM canon.claims_yango_cabinet_14d WHERE (lead_source_pk, milestone) =
                    (SELECT lead_source_pk, milestone FROM canon.claims_yango_cabinet_14d ORDER BY lead_date, lead_source_pk LIMIT 1)`);
  await db.query(`UPDATE canon.identity_unmatched SET status = 'IGNORED', note = 'test'
                  WHERE id = (SELECT min(id) FROM canon.identity_unmatched WHERE status = 'OPEN' AND reason_code IN ('AMBIGUOUS', 'CONFLICT', 'WEAK_MATCH_ONLY', 'SHARED_KEY', 'PROBABLE_MATCH', 'MISSING_KEYS'))`);
  await db.query(`UPDATE canon.identity_unmatched SET status = 'OPEN', reason_code = 'AMBIGUOUS'
                  WHERE id = (SELECT min(id) FROM canon.identity_unmatched WHERE reason_code = 'NO_CANDIDATES')`);
  await agrees(t, db, 'links, claims and unmatched records changed in psql');

  // Lead rows: a new row under the key of a record awaiting review (committed after the
  // run, not keyed yet), the oldest such lead re-keyed in place, one deleted.
  const [open] = await db.query<{ source_pk: string }>(
    `SELECT u.source_pk FROM canon.identity_unmatched u WHERE u.status = 'OPEN' AND u.reason_code <> 'NO_CANDIDATES' ORDER BY u.source_pk LIMIT 2`);
  await insertLead(db, { external_id: open!.source_pk, lead_created_at: addDays(today, -35) });
  const [oldestNoIdentity] = await db.query<{ lead_id: number }>(
    `SELECT lead_id FROM ops.oldest_actionable_leads(1) WHERE limbo_stage = 'NO_IDENTITY'`);
  await db.query(`UPDATE public.module_ct_cabinet_leads SET external_id = $2 WHERE id = $1`, [oldestNoIdentity!.lead_id, uid('REKEYED')]);
  await agrees(t, db, 'a row under a reviewed key, a row re-keyed');
  await db.query(`DELETE FROM public.module_ct_cabinet_leads WHERE id = (
                    SELECT lead_id FROM ops.oldest_actionable_leads(1) WHERE limbo_stage = 'TRIPS_NO_CLAIM' OR limbo_stage = 'NO_DRIVER' LIMIT 1)`);
  await agrees(t, db, 'a lead row deleted');
  await run(db);
  await agrees(t, db, 'after the next run');
  t.deepEqual(await violations(db), []);
});
