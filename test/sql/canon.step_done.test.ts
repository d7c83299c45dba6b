// canon.step_done: the log entry of a finished pipeline step, appended by
// ops.reconcile_cabinet_leads_pipeline to its stats.steps (and summed into durations_ms).
import test from 'ava';
import { withDb } from '../helpers/db.js';
import { step } from '../helpers/steps.js';

test('is a one-element array naming the step, done, with the milliseconds since its start to one decimal', (t) =>
  withDb('step_done', async (db) => {
    const entry = await step<{ step: string; status: string; ms: number }[]>(
      db.pool, `canon.step_done('link_decisions', clock_timestamp() - interval '1500 milliseconds')`);
    t.is(entry.length, 1);
    t.like(entry[0], { step: 'link_decisions', status: 'done' });
    t.deepEqual(Object.keys(entry[0]!).sort(), ['ms', 'status', 'step']);
    t.true(entry[0]!.ms >= 1500, `ms ${entry[0]!.ms} counts from the start given`);
    t.regex(String(entry[0]!.ms), /^\d+(\.\d)?$/, 'one decimal');
  }));
