import test from 'ava';
import { freshDb } from '../helpers/db.js';
import { addDays, businessToday, insertLead } from '../helpers/rows.js';

test('returns all five stages, 0 when none, from the limbo view', async (t) => {
  const db = await freshDb(t, 'stage_counts');
  const [empty] = await db.query<{ c: unknown }>(`SELECT ops.limbo_stage_counts() AS c`);
  t.deepEqual(empty!.c, { NO_IDENTITY: 0, NO_DRIVER: 0, NO_TRIPS_14D: 0, TRIPS_NO_CLAIM: 0, OK: 0 });
  await insertLead(db, { lead_created_at: addDays(await businessToday(db), -1) });
  await insertLead(db, { lead_created_at: null });
  const [one] = await db.query<{ c: unknown }>(`SELECT ops.limbo_stage_counts() AS c`);
  t.deepEqual(one!.c, { NO_IDENTITY: 1, NO_DRIVER: 0, NO_TRIPS_14D: 0, TRIPS_NO_CLAIM: 0, OK: 0 });
});
