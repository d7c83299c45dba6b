// canon.refresh_lead_state (step 7b, and ops.refresh_cabinet_lead_state): the given lead rows
// evaluated from the live definition (canon.v_cabinet_lead_status) into
// canon_internal.cabinet_lead_state: written only when changed, removed when gone or undated.
import test from 'ava';
import { type TestDb, withDb } from '../helpers/db.js';
import { addDays, addTrips, businessToday, insertLead, tripsOnDays } from '../helpers/rows.js';
import { linkedLead } from '../helpers/scenario.js';
import { step } from '../helpers/steps.js';

interface Stats {
  evaluated: number;
  written: number;
  removed: number;
  trip_rows_read: number;
}

const refresh = (db: TestDb, ids: number[] | null) => step<Stats>(db.pool, 'canon.refresh_lead_state(NULL, $1::integer[])', [ids]);

async function changedAt(db: TestDb): Promise<string> {
  const [m] = await db.query<{ c: string }>(`SELECT changed_at::text AS c FROM canon_internal.cabinet_lead_state_meta`);
  return m!.c;
}

async function stored(db: TestDb): Promise<{ lead_id: number; limbo_stage: string; trips_in_window: number; reached_m1: boolean; reached_m5: boolean }[]> {
  return db.query(`SELECT lead_id, limbo_stage, trips_in_window::int, reached_m1, reached_m5 FROM canon_internal.cabinet_lead_state ORDER BY lead_id`);
}

test('no lead rows given: nothing evaluated, written or marked changed', (t) =>
  withDb('refresh_state', async (db) => {
    await insertLead(db);
    const before = await changedAt(db);
    const zero = { evaluated: 0, written: 0, removed: 0, trip_rows_read: 0 };
    t.deepEqual(await refresh(db, null), zero);
    t.deepEqual(await refresh(db, []), zero);
    t.deepEqual(await stored(db), []);
    t.is(await changedAt(db), before);
  }));

test('the given lead rows only are stored from the live chain; a second call on unchanged data writes nothing', (t) =>
  withDb('refresh_state', async (db) => {
    const today = await businessToday(db);
    const leadDate = addDays(today, -3);
    const lead = await linkedLead(db, leadDate, { trips: tripsOnDays(leadDate, [0, 1, 2]) });
    await insertLead(db); // not given: not stored
    const before = await changedAt(db);
    t.deepEqual(await refresh(db, [lead.id]), { evaluated: 1, written: 1, removed: 0, trip_rows_read: 3 });
    t.deepEqual(await stored(db), [{ lead_id: lead.id, limbo_stage: 'TRIPS_NO_CLAIM', trips_in_window: 3, reached_m1: true, reached_m5: false }]);
    const after = await changedAt(db);
    t.not(after, before);

    t.deepEqual(await refresh(db, [lead.id]), { evaluated: 1, written: 0, removed: 0, trip_rows_read: 3 });
    t.is(await changedAt(db), after, 'nothing written: the state did not change');

    await addTrips(db, lead.driverId, tripsOnDays(leadDate, [3, 4]));
    t.like(await refresh(db, [lead.id]), { evaluated: 1, written: 1, trip_rows_read: 5 });
    t.like((await stored(db))[0], { trips_in_window: 5, reached_m5: true });
  }));

test('a lead row deleted or without lead_created_at loses its stored row', (t) =>
  withDb('refresh_state', async (db) => {
    const gone = await insertLead(db);
    const undated = await insertLead(db);
    const kept = await insertLead(db);
    t.like(await refresh(db, [gone.id, undated.id, kept.id]), { evaluated: 3, written: 3 });
    await db.query(`DELETE FROM public.module_ct_cabinet_leads WHERE id = $1`, [gone.id]);
    await db.query(`UPDATE public.module_ct_cabinet_leads SET lead_created_at = NULL WHERE id = $1`, [undated.id]);
    t.deepEqual(await refresh(db, [gone.id, undated.id, kept.id]), { evaluated: 1, written: 0, removed: 2, trip_rows_read: 0 });
    t.deepEqual((await stored(db)).map((s) => [s.lead_id, s.limbo_stage]), [[kept.id, 'NO_IDENTITY']]);
  }));
