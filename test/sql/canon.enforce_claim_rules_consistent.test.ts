// canon.claim_rules stays unambiguous: one rule per milestone and one window on any day.
import test from 'ava';
import { freshDb } from '../helpers/db.js';
import '../helpers/rows.js'; // date columns as 'YYYY-MM-DD' strings

test('rejects a second open-ended rule for a milestone (overlapping periods)', async (t) => {
  const db = await freshDb(t, 'rules_overlap');
  const err = await t.throwsAsync(
    db.query(`INSERT INTO canon.claim_rules (milestone, trips_threshold, amount, window_days, valid_from) VALUES (1, 1, 30, 14, '2026-01-01')`),
  );
  t.regex(err!.message, /claim rule \(milestone 1, valid from 2026-01-01 to open\) conflicts with rule \(milestone 1, valid from 2000-01-01 to open\)/);
});

test('accepts closing a rule and adding its successor in one transaction', async (t) => {
  const db = await freshDb(t, 'rules_successor');
  await db.query(`BEGIN;
    UPDATE canon.claim_rules SET valid_to = '2026-01-01' WHERE milestone = 1;
    INSERT INTO canon.claim_rules (milestone, trips_threshold, amount, window_days, valid_from) VALUES (1, 1, 30, 14, '2026-01-01');
    COMMIT;`);
  const periods = await db.query(`SELECT period_from, period_to, m1_amount, m5_amount FROM canon.v_claim_rule_periods ORDER BY 1`);
  t.deepEqual(periods, [
    { period_from: '2000-01-01', period_to: '2026-01-01', m1_amount: '25.00', m5_amount: '35.00' },
    { period_from: '2026-01-01', period_to: null, m1_amount: '30.00', m5_amount: '35.00' },
  ]);
});

test('rejects rules valid on the same day with different windows', async (t) => {
  const db = await freshDb(t, 'rules_window');
  const err = await t.throwsAsync(db.query(`UPDATE canon.claim_rules SET window_days = 15 WHERE milestone = 25`));
  t.regex(err!.message, /conflicts with rule/);
});

test('rejects milestones other than 1, 5 and 25', async (t) => {
  const db = await freshDb(t, 'rules_milestone');
  const err = await t.throwsAsync(
    db.query(`INSERT INTO canon.claim_rules (milestone, trips_threshold, amount, window_days) VALUES (50, 50, 200, 14)`),
  );
  t.regex(err!.message, /milestone 50 rejected: milestones are 1, 5 and 25/);
});
