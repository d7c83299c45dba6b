// canon.milestone_rows: the one unpivot of a lead's milestones (1, 5, 25) into rows, inlined.
import test from 'ava';
import { createTestDb, type TestDb } from '../helpers/db.js';

let db: TestDb;
test.before(async () => {
  db = await createTestDb('milestone_rows');
});
test.after.always(() => db.drop());

test('gives milestones 1, 5 and 25 in order, each with its own threshold, amount and reached (NULLs kept)', async (t) => {
  const rows = await db.query(
    `SELECT m.milestone, m.trips_threshold, m.amount::text AS amount, m.reached
     FROM canon.milestone_rows(1, 25.00, true, 5, 35.5, false, NULL, NULL, false) m`,
  );
  t.deepEqual(rows, [
    { milestone: 1, trips_threshold: 1, amount: '25.00', reached: true },
    { milestone: 5, trips_threshold: 5, amount: '35.5', reached: false },
    { milestone: 25, trips_threshold: null, amount: null, reached: false },
  ]);
});

/** How many Values Scans the plan has, and how many calls of milestone_rows it kept. */
async function plan(sql: string): Promise<{ values: number; functionScans: number }> {
  const [r] = await db.query<{ 'QUERY PLAN': unknown }>(`EXPLAIN (FORMAT JSON, COSTS OFF) ${sql}`);
  const text = JSON.stringify(r!['QUERY PLAN']);
  return {
    values: (text.match(/"Node Type":"Values Scan"/g) ?? []).length,
    functionScans: (text.match(/"Function Name":"milestone_rows"/g) ?? []).length,
  };
}

test('is inlined into a VALUES list: in a lateral join over a table, in the expected-claims view and in claim generation', async (t) => {
  t.deepEqual(
    await plan(`SELECT s.lead_id, m.* FROM canon_internal.cabinet_lead_state s
                CROSS JOIN LATERAL canon.milestone_rows(s.m1_trips_threshold, s.m1_amount, s.reached_m1,
                                                        s.m5_trips_threshold, s.m5_amount, s.reached_m5,
                                                        s.m25_trips_threshold, s.m25_amount, s.reached_m25) m`),
    { values: 1, functionScans: 0 },
  );
  // The view unpivots twice (keys of one lead row, keys of several).
  t.deepEqual(await plan(`SELECT * FROM ops.v_cabinet_claims_expected_14d`), { values: 2, functionScans: 0 });
  // canon.insert_missing_claims' statement, with its parameters as in the function.
  const [f] = await db.query<{ src: string }>(`SELECT prosrc AS src FROM pg_proc WHERE oid = 'canon.insert_missing_claims(bigint, date)'::regprocedure`);
  const statement = f!.src.slice(f!.src.indexOf('WITH'), f!.src.indexOf('INTO v_generated'))
    .replaceAll('p_scope_from', `(current_date - 30)`).replaceAll('p_run_id', '1');
  const generation = await plan(statement);
  t.is(generation.functionScans, 0);
  t.true(generation.values >= 1);
});
