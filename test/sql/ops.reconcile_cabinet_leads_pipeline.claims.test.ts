// A whole pipeline run generates the claims of step 7 and records them in the run's stats.
import test from 'ava';
import { freshDb } from '../helpers/db.js';
import { callPipeline } from '../helpers/pipeline.js';
import { addDays, businessToday, tripsOnDays } from '../helpers/rows.js';
import { claimsOf, limboRow, linkedLead } from '../helpers/scenario.js';

interface Run {
  id: number;
  status: string;
  stats: {
    claims: Record<string, unknown>;
    limbo_before: Record<string, number>;
    limbo_after: Record<string, number>;
    steps: { step: string; status: string }[];
  };
}

test('a run generates M1 and M5 for a linked lead with 5 trips, which is then OK', async (t) => {
  const db = await freshDb(t, 'pipeline_claims');
  const today = await businessToday(db);
  const leadDate = addDays(today, -10);
  const lead = await linkedLead(db, leadDate, { trips: tripsOnDays(leadDate, [0, 1, 2, 3, 4]) });
  await db.query(`INSERT INTO public.drivers (driver_id, park_id, first_name, last_name) VALUES ($1, '08e20910d81d42658d4334d3f6d10ac0', 'Juan', 'Perez')`, [
    lead.driverId,
  ]);
  t.is((await limboRow(db, lead.key)).limbo_stage, 'TRIPS_NO_CLAIM');

  const c = await db.connect();
  const run = await callPipeline<Run>(c);
  t.is(run.status, 'COMPLETED');

  t.deepEqual((await claimsOf(db, lead.key)).map((cl) => [cl.milestone, cl.status, cl.amount_expected]), [
    [1, 'generated', '25.00'],
    [5, 'generated', '35.00'],
  ]);
  const [runIds] = await db.query<{ ok: boolean }>(
    `SELECT bool_and(run_id = $2) AS ok FROM canon.claims_yango_cabinet_14d WHERE lead_source_pk = $1`,
    [lead.key, run.id],
  );
  t.true(runIds!.ok);
  t.like(await limboRow(db, lead.key), { limbo_stage: 'OK', has_claim_m1: true, has_claim_m5: true });

  t.like(run.stats.claims, {
    leads_in_scope: 1,
    leads_with_driver: 1,
    trip_rows_read: 5,
    claims_generated: 2,
    claims_generated_amount: 60,
    claims_generated_by_milestone: { M1: { count: 1, amount: 25 }, M5: { count: 1, amount: 35 } },
    claims_skipped_paid_or_rejected: 0,
  });
  t.like(run.stats.limbo_before, { TRIPS_NO_CLAIM: 1, OK: 0 });
  t.like(run.stats.limbo_after, { TRIPS_NO_CLAIM: 0, OK: 1 });
  t.deepEqual(run.stats.steps.find((s) => s.step === 'generate_cabinet_claims')?.status, 'done');

  const again = await callPipeline<Run>(c);
  t.like(again.stats.claims, { claims_generated: 0, claims_already_present: 2 });
});
