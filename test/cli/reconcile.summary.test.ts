// `reconcile` prints one line a person reads (src/run-summary.ts), and logs the same
// figures as fields of the 'pipeline run completed' event (the worker's task logs them
// through the same runPipeline); --json stays the run row for scripts.
import test from 'ava';
import { runCli } from '../helpers/cli.js';
import { createTestDb, type TestDb } from '../helpers/db.js';
import { addDays, addTrips, businessToday, insertDriver, insertLead, tripsOnDays } from '../helpers/rows.js';

let db: TestDb;
test.before(async () => {
  db = await createTestDb('cli_summary');
  const today = await businessToday(db);
  await insertDriver(db, { driver_id: 'd1', first_name: 'Juan', last_name: 'Perez', phone: '51977000001', hire_date: addDays(today, -10) });
  await insertDriver(db, { driver_id: 'd2', first_name: 'Rosa', last_name: 'Vega Salas', car_number: 'ABC123', hire_date: addDays(today, -10) });
  await insertLead(db, { external_id: 'phone', first_name: 'Juan', last_name: 'Perez', park_phone: '977000001' });
  await insertLead(db, { external_id: 'plate', first_name: 'Rosa', last_name: 'Vega Salas', asset_plate_number: 'abc-123' });
  await insertLead(db, { external_id: 'nokeys', first_name: 'Ana', last_name: null });
  await insertLead(db, { external_id: 'nobody', first_name: 'Luis', last_name: null, park_phone: '988000002' });
  // d1 reaches M1 and M5 in its lead's window (S/ 25 + S/ 35)
  await addTrips(db, 'd1', tripsOnDays(addDays(today, -2), [0, 1], 3));
});
test.after.always(() => db.drop());

test.serial('reconcile prints one line: leads evaluated, linked per rule, unmatched per reason, claims in S/, limbo change, duration', async (t) => {
  const r = await runCli(['reconcile'], { DATABASE_URL: db.url });
  t.is(r.code, 0, r.stderr);
  t.regex(
    r.stdout,
    /^run \d+ COMPLETED in \d+(\.\d)? m?s: 4 leads evaluated, 2 linked \(R1 1, R3 1\), 2 unmatched \(MISSING_KEYS 1, NO_CANDIDATES 1\), 2 claims S\/ 60\.00, NO_IDENTITY 4 → 2, NO_TRIPS_14D 0 → 1, OK 0 → 1\n$/,
  );
  const event = r.stderr.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>).find((e) => e['msg'] === 'pipeline run completed')!;
  t.like(event, {
    leads_evaluated: 4,
    linked: 2,
    linked_by_rule: { R1_PHONE_EXACT: 1, R3_PLATE_EXACT_NAME_SIMILAR: 1 },
    unmatched: 2,
    unmatched_by_reason: { MISSING_KEYS: 1, NO_CANDIDATES: 1 },
    claims_generated: 2,
    claims_amount: 60,
    limbo_change: { NO_IDENTITY: [4, 2], NO_TRIPS_14D: [0, 1], OK: [0, 1] },
  });
  t.true(typeof event['duration_ms'] === 'number');
  t.false('steps_not_implemented' in event);
});

test.serial('a run with nothing to do says so in the same line', async (t) => {
  const r = await runCli(['reconcile'], { DATABASE_URL: db.url });
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^run \d+ COMPLETED in \d+(\.\d)? m?s: 0 leads evaluated, 0 linked, 0 unmatched, 0 claims S\/ 0\.00, limbo unchanged\n$/);
  const json = await runCli(['reconcile', '--json', '--dry-run'], { DATABASE_URL: db.url });
  t.is(json.code, 0, json.stderr);
  t.is((JSON.parse(json.stdout) as { status: string }).status, 'COMPLETED');
});
