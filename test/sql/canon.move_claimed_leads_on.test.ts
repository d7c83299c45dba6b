// canon.move_claimed_leads_on (step 7d): the stored state of every row of the lead keys just
// claimed takes their claims (has_claim flags, limbo stage), without reading trips again.
import test from 'ava';
import { type TestDb, withDb } from '../helpers/db.js';
import { addDays, businessToday, tripsOnDays } from '../helpers/rows.js';
import { linkedLead } from '../helpers/scenario.js';
import { step, storeLeadState } from '../helpers/steps.js';

const moveOn = (db: TestDb, keys: string[] | null) => step<number>(db.pool, 'canon.move_claimed_leads_on(NULL, $1::text[])', [keys]);

async function stateOf(db: TestDb): Promise<Record<string, { stage: string; m1: boolean; m5: boolean }[]>> {
  const rows = await db.query<{ k: string; stage: string; m1: boolean; m5: boolean }>(
    `SELECT lead_source_pk AS k, limbo_stage AS stage, has_claim_m1 AS m1, has_claim_m5 AS m5 FROM canon_internal.cabinet_lead_state ORDER BY lead_id`);
  const out: Record<string, { stage: string; m1: boolean; m5: boolean }[]> = {};
  for (const r of rows) (out[r.k] ??= []).push({ stage: r.stage, m1: r.m1, m5: r.m5 });
  return out;
}

const changedAt = async (db: TestDb) =>
  (await db.query<{ c: string }>(`SELECT changed_at::text AS c FROM canon_internal.cabinet_lead_state_meta`))[0]!.c;

/** Leads stored in TRIPS_NO_CLAIM, then their claims inserted (step 7c), their state not moved yet. */
async function claimedNotMoved(db: TestDb): Promise<void> {
  const today = await businessToday(db);
  const leadDate = addDays(today, -5);
  await linkedLead(db, leadDate, { lead: { external_id: 'A' }, trips: tripsOnDays(leadDate, [0, 1, 2, 3, 4]) });
  await db.query(`INSERT INTO public.module_ct_cabinet_leads (external_id, lead_created_at) VALUES ('A', $1::date + time '09:00')`, [addDays(today, -4)]);
  await linkedLead(db, leadDate, { lead: { external_id: 'B' }, trips: tripsOnDays(leadDate, [0]) });
  await storeLeadState(db);
  await db.query(`SELECT canon.insert_missing_claims(NULL, canon.business_today() - 30)`);
}

test('every stored row of a claimed key takes its claims and leaves TRIPS_NO_CLAIM; a key not given stays; a second call writes nothing', (t) =>
  withDb('move_on', async (db) => {
    await claimedNotMoved(db);
    t.deepEqual(await stateOf(db), {
      A: [{ stage: 'TRIPS_NO_CLAIM', m1: false, m5: false }, { stage: 'TRIPS_NO_CLAIM', m1: false, m5: false }],
      B: [{ stage: 'TRIPS_NO_CLAIM', m1: false, m5: false }],
    });
    const before = await changedAt(db);
    t.is(await moveOn(db, ['A', 'A']), 2);
    t.deepEqual(await stateOf(db), {
      A: [{ stage: 'OK', m1: true, m5: true }, { stage: 'OK', m1: true, m5: true }],
      B: [{ stage: 'TRIPS_NO_CLAIM', m1: false, m5: false }],
    });
    const after = await changedAt(db);
    t.not(after, before);
    t.is(await moveOn(db, ['A']), 0);
    t.is(await changedAt(db), after, 'nothing written: not marked changed');
  }));

test('no keys, or keys without stored rows, write nothing', (t) =>
  withDb('move_on', async (db) => {
    await claimedNotMoved(db);
    t.is(await moveOn(db, null), 0);
    t.is(await moveOn(db, []), 0);
    t.is(await moveOn(db, ['NOT-STORED']), 0);
    t.is((await stateOf(db))['A']![0]!.stage, 'TRIPS_NO_CLAIM');
  }));
