// The invariant checker (issue 8, scenario 5): ops.check_invariants() and
// `cabinet-leads doctor` report every violation of the spec's invariants, each broken here
// on purpose (the deferred triggers forbid some breaks: session_replication_role =
// replica lets the bad state in), and doctor exits 1 while one is violated, 0 once repaired.
// Also the guard behind two of them: a pipeline run can never change a settled claim.
import test from 'ava';
import { doctorCommand } from '../../src/cli/doctor.js';
import { runCli } from '../helpers/cli.js';
import { createTestDb, type TestDb } from '../helpers/db.js';
import { runPipeline } from '../helpers/rows.js';
import { ADMIN_URL } from '../helpers/env.js';
import { cloneDb, seedDemo, violations, withClient } from './support.js';

let base: string;

// One seeded database after a run, with a few claims settled by finance (outside a run);
// every test works on a copy of it.
test.before(async () => {
  const db = await createTestDb('rel_invariants_base');
  await seedDemo(db, { seed: 85, leads: 200, drivers: 400, tripDays: 30 });
  const run = await runPipeline(db, 'p_days_back => 30, p_limit => 2000');
  if (run.status !== 'COMPLETED') throw new Error(`base run ${run.status}: ${run.error_message}`);
  await db.query(`
    UPDATE canon.claims_yango_cabinet_14d SET status = 'paid', paid_at = now()
    WHERE (lead_source_pk, milestone) IN (SELECT lead_source_pk, milestone FROM canon.claims_yango_cabinet_14d ORDER BY 1, 2 LIMIT 3);
    UPDATE canon.claims_yango_cabinet_14d SET status = 'rejected'
    WHERE (lead_source_pk, milestone) IN (SELECT lead_source_pk, milestone FROM canon.claims_yango_cabinet_14d
                                          WHERE status = 'generated' ORDER BY 1, 2 LIMIT 2);`);
  await db.pool.end();
  base = db.name;
});
test.after.always(async () => {
  if (base) await withClient(ADMIN_URL, (c) => c.query(`DROP DATABASE IF EXISTS ${base} WITH (FORCE)`));
});

async function copy(t: { teardown(fn: () => Promise<void>): void }, label: string): Promise<TestDb> {
  const db = await cloneDb(base, label);
  t.teardown(() => db.drop());
  return db;
}

/**
 * `cabinet-leads doctor` run in this process (the command object main.ts dispatches to):
 * the tests that call it are serial, as it reads DATABASE_URL from the environment.
 */
async function doctor(db: TestDb): Promise<{ code: number; stdout: string }> {
  const saved = { url: process.env.DATABASE_URL, level: process.env.LOG_LEVEL, log: console.log };
  const lines: string[] = [];
  process.env.DATABASE_URL = db.url;
  process.env.LOG_LEVEL = 'silent';
  console.log = (...args: unknown[]) => void lines.push(args.join(' '));
  try {
    return { code: await doctorCommand.run([]), stdout: lines.join('\n') };
  } finally {
    console.log = saved.log;
    for (const [k, v] of [['DATABASE_URL', saved.url], ['LOG_LEVEL', saved.level]] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

interface Case {
  invariant: string;
  /** SQL that breaks the invariant on purpose */
  breakIt: string;
  violations: number;
  /** an example the checker must name (regular expression) */
  example: RegExp;
  /** SQL that repairs it the way docs/operations.md tells an operator to */
  repair: string;
}

const REPLICA = `SET session_replication_role = replica;`;

const cases: Case[] = [
  {
    invariant: 'ORPHAN_PERSON',
    breakIt: `${REPLICA} INSERT INTO canon.identity_registry (person_key, confidence_level) VALUES ('00000000-0000-0000-0000-00000000000a', 'HIGH');`,
    violations: 1,
    example: /^00000000-0000-0000-0000-00000000000a$/,
    repair: `DELETE FROM canon.identity_registry p WHERE NOT EXISTS (SELECT 1 FROM canon.identity_links l WHERE l.person_key = p.person_key);`,
  },
  {
    invariant: 'LEAD_LINKED_AND_OPEN',
    breakIt: `${REPLICA}
      INSERT INTO canon.identity_unmatched (source_table, source_pk, reason_code, status)
      SELECT 'module_ct_cabinet_leads', source_pk, 'NO_CANDIDATES', 'OPEN'
      FROM canon.identity_links WHERE source_table = 'module_ct_cabinet_leads' ORDER BY source_pk LIMIT 2;`,
    violations: 2,
    example: /^[0-9a-f]{32}$/,
    repair: `UPDATE canon.identity_unmatched u SET status = 'RESOLVED', resolved_at = now()
             WHERE u.status = 'OPEN' AND EXISTS (SELECT 1 FROM canon.identity_links l WHERE l.source_table = u.source_table AND l.source_pk = u.source_pk);`,
  },
  {
    invariant: 'DRIVER_LINKED_TWICE',
    breakIt: `${REPLICA}
      ALTER TABLE canon.identity_links DROP CONSTRAINT identity_links_source_table_source_pk_key;
      INSERT INTO canon.identity_registry (person_key, confidence_level) VALUES ('00000000-0000-0000-0000-00000000000b', 'HIGH');
      INSERT INTO canon.identity_links (source_table, source_pk, person_key, match_rule, match_score, confidence_level)
      SELECT 'drivers', source_pk, '00000000-0000-0000-0000-00000000000b', 'R1_PHONE_EXACT', 95, 'HIGH'
      FROM canon.identity_links WHERE source_table = 'drivers' ORDER BY source_pk LIMIT 1;`,
    violations: 1,
    example: /^\S+ \(2 links\)$/,
    repair: `${REPLICA}
      DELETE FROM canon.identity_links WHERE person_key = '00000000-0000-0000-0000-00000000000b';
      DELETE FROM canon.identity_registry WHERE person_key = '00000000-0000-0000-0000-00000000000b';
      ALTER TABLE canon.identity_links ADD CONSTRAINT identity_links_source_table_source_pk_key UNIQUE (source_table, source_pk);`,
  },
  {
    invariant: 'RUN_STUCK_RUNNING',
    // A run whose backend is gone, and one RUNNING for 3 hours.
    breakIt: `
      INSERT INTO canon.ingestion_runs (job_name, status, backend_pid) VALUES ('reconcile_cabinet_leads_pipeline', 'RUNNING', 2147483647);
      INSERT INTO canon.ingestion_runs (job_name, status, started_at) VALUES ('reconcile_cabinet_leads_pipeline', 'RUNNING', now() - interval '3 hours');`,
    violations: 2,
    example: /^run \d+ \(backend \d+, started .+\)$/,
    repair: `SELECT canon.mark_abandoned_runs();`,
  },
  {
    invariant: 'LIMBO_ROW_COUNT',
    // A view that loses one lead and shows another twice: the count alone would not tell.
    breakIt: `
      ALTER VIEW ops.v_cabinet_leads_limbo RENAME TO v_cabinet_leads_limbo_real;
      CREATE VIEW ops.v_cabinet_leads_limbo AS
        SELECT * FROM ops.v_cabinet_leads_limbo_real WHERE lead_id <> (SELECT min(lead_id) FROM ops.v_cabinet_leads_limbo_real)
        UNION ALL
        (SELECT * FROM ops.v_cabinet_leads_limbo_real ORDER BY lead_id DESC LIMIT 1);`,
    violations: 2,
    example: /^lead id \d+: [02] limbo rows$/,
    repair: `DROP VIEW ops.v_cabinet_leads_limbo; ALTER VIEW ops.v_cabinet_leads_limbo_real RENAME TO v_cabinet_leads_limbo;`,
  },
  {
    invariant: 'SETTLED_CLAIM_UNGUARDED',
    breakIt: `
      ALTER TABLE canon.claims_yango_cabinet_14d DISABLE TRIGGER claims_protect_settled;
      DROP TRIGGER claims_record_settled_delete ON canon.claims_yango_cabinet_14d;`,
    violations: 2,
    example: /^trigger claims_(protect_settled disabled|record_settled_delete missing)$/,
    repair: `
      ALTER TABLE canon.claims_yango_cabinet_14d ENABLE TRIGGER claims_protect_settled;
      CREATE TRIGGER claims_record_settled_delete AFTER DELETE ON canon.claims_yango_cabinet_14d
        REFERENCING OLD TABLE AS old_claims FOR EACH STATEMENT EXECUTE FUNCTION canon.protect_settled_claims();`,
  },
  {
    invariant: 'SETTLED_CLAIM_CHANGED',
    // Behind the guard's back: a paid amount changed, a rejected claim deleted, a claim paid unrecorded.
    breakIt: `${REPLICA}
      UPDATE canon.claims_yango_cabinet_14d SET amount_expected = amount_expected + 1
      WHERE (lead_source_pk, milestone) = (SELECT lead_source_pk, milestone FROM canon.claims_yango_cabinet_14d WHERE status = 'paid' ORDER BY 1, 2 LIMIT 1);
      DELETE FROM canon.claims_yango_cabinet_14d
      WHERE (lead_source_pk, milestone) = (SELECT lead_source_pk, milestone FROM canon.claims_yango_cabinet_14d WHERE status = 'rejected' ORDER BY 1, 2 LIMIT 1);
      UPDATE canon.claims_yango_cabinet_14d SET status = 'paid', paid_at = now()
      WHERE (lead_source_pk, milestone) = (SELECT lead_source_pk, milestone FROM canon.claims_yango_cabinet_14d WHERE status = 'generated' ORDER BY 1, 2 LIMIT 1);`,
    violations: 3,
    example: /^\S+ M\d+ (changed \(recorded paid [\d.]+, now paid [\d.]+\)|deleted \(was rejected\)|paid but never recorded)$/,
    // Once finance has checked them: record the claims as they are now, forget the deleted one.
    repair: `
      UPDATE canon.claims_yango_cabinet_14d c SET status = c.status
      WHERE c.status IN ('paid', 'rejected')
        AND NOT EXISTS (SELECT 1 FROM canon.claims_settled s
                        WHERE s.lead_source_pk = c.lead_source_pk AND s.milestone = c.milestone
                          AND (s.status, s.amount_expected, s.paid_at) IS NOT DISTINCT FROM (c.status, c.amount_expected, c.paid_at));
      DELETE FROM canon.claims_settled s
      WHERE NOT EXISTS (SELECT 1 FROM canon.claims_yango_cabinet_14d c WHERE c.lead_source_pk = s.lead_source_pk AND c.milestone = s.milestone);`,
  },
  {
    invariant: 'LEAD_STATE_COUNTS',
    // Stored state written with the counting trigger bypassed: one lead's stage changed.
    breakIt: `${REPLICA}
      UPDATE canon.cabinet_lead_state SET limbo_stage = CASE WHEN limbo_stage = 'OK' THEN 'NO_DRIVER' ELSE 'OK' END
      WHERE lead_id = (SELECT min(lead_id) FROM canon.cabinet_lead_state);`,
    violations: 2,
    example: /^\d{4}-\d\d-\d\d (OK|NO_DRIVER|NO_IDENTITY|NO_TRIPS_14D|TRIPS_NO_CLAIM) identity=(true|false) driver=(true|false) trips=(true|false) rule=(true|false): counted \d+, stored \d+$/,
    repair: `SELECT ops.recount_lead_state_counts();`,
  },
  {
    invariant: 'NAME_TOKEN_STATS',
    // A counter of the relatives veto written by hand: one token counted once too often.
    breakIt: `${REPLICA}
      UPDATE canon.name_token_stats SET as_given = as_given + 1 WHERE token = (SELECT min(token) FROM canon.name_token_stats);`,
    violations: 1,
    example: /^[A-Z0-9]+: counted given \d+ surname \d+, stored given \d+ surname \d+$/,
    repair: `SELECT ops.repair_name_roles();`,
  },
  {
    invariant: 'DRIVER_NAME_ROLES',
    // A driver re-indexed with the name roles trigger bypassed.
    breakIt: `${REPLICA}
      UPDATE canon.driver_index SET indexed_at = indexed_at + interval '1 second'
      WHERE driver_id = (SELECT min(driver_id) FROM canon.driver_index);`,
    violations: 1,
    example: /^driver \S+: name roles not written with its index row$/,
    repair: `SELECT ops.repair_name_roles();`,
  },
];

test('cabinet-leads doctor exits 0 when every invariant holds, 1 when one is violated', async (t) => {
  const db = await copy(t, 'inv_ok');
  const all = await db.query<{ invariant: string; violations: string }>(`SELECT invariant, violations FROM ops.check_invariants()`);
  t.deepEqual(all.map((r) => r.invariant), cases.map((c) => c.invariant));
  const [settled] = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM canon.claims_settled`);
  t.is(settled!.n, 5, 'the claims finance settled are recorded');
  const ok = await runCli(['doctor', '--json'], { DATABASE_URL: db.url });
  t.is(ok.code, 0, ok.stderr);
  const out = JSON.parse(ok.stdout) as { ok: boolean; checks: { invariant: string; violations: number }[] };
  t.true(out.ok);
  t.deepEqual(out.checks.map((c) => c.violations), cases.map(() => 0));

  await db.query(cases[0]!.breakIt);
  const bad = await runCli(['doctor'], { DATABASE_URL: db.url });
  t.is(bad.code, 1, bad.stderr);
  t.regex(bad.stdout, /^FAIL ORPHAN_PERSON +1 violation\(s\)/m);
  await db.query(cases[0]!.repair);
  const unreachable = await runCli(['doctor'], { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/nowhere' });
  t.is(unreachable.code, 2, 'an error is not a verdict');
  t.deepEqual(await violations(db), []);
});

for (const c of cases) {
  test.serial(`${c.invariant}: broken on purpose, the checker names it and doctor exits 1; repaired, doctor exits 0`, async (t) => {
    const db = await copy(t, c.invariant.toLowerCase().slice(0, 20));
    const conn = await db.connect();
    await conn.query(c.breakIt);
    await conn.query(`RESET session_replication_role`);
    const found = await violations(db);
    t.deepEqual(found.map((v) => [v.invariant, Number(v.violations)]), [[c.invariant, c.violations]]);
    t.is(found[0]?.examples.length, c.violations);
    for (const e of found[0]?.examples ?? []) t.regex(e, c.example);

    const broken = await doctor(db);
    t.is(broken.code, 1);
    t.regex(broken.stdout, new RegExp(`^FAIL ${c.invariant} +${c.violations} violation\\(s\\)`, 'm'));
    t.regex(broken.stdout, /^1 invariant\(s\) violated$/m);

    await conn.query(c.repair);
    await conn.query(`RESET session_replication_role`);
    t.is((await doctor(db)).code, 0);
    t.deepEqual(await violations(db), []);
  });
}

test('a pipeline run can never change or delete a paid or rejected claim; finance can, and it is recorded', async (t) => {
  const db = await copy(t, 'inv_guard');
  const settled = `SELECT lead_source_pk, milestone, status, amount_expected, paid_at, generated_at, run_id
                   FROM canon.claims_yango_cabinet_14d WHERE status IN ('paid', 'rejected') ORDER BY 1, 2`;
  const before = await db.query(settled);
  t.is(before.length, 5);
  // A regression in step 7 that regenerates every claim of the window, settled ones included.
  await db.query(`
    CREATE OR REPLACE FUNCTION canon.generate_cabinet_claims(p_run_id bigint, p_scope_from date, p_only_limbo boolean DEFAULT false)
    RETURNS jsonb LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
      WITH regenerated AS (
        UPDATE canon.claims_yango_cabinet_14d SET status = 'generated', generated_at = now(), run_id = p_run_id
        WHERE lead_date >= p_scope_from RETURNING 1)
      SELECT jsonb_build_object('claims_generated', (SELECT count(*) FROM regenerated))
    $$;`);
  const run = await runPipeline(db, 'p_days_back => 30, p_limit => 2000, p_raise_on_failure => false');
  t.is(run.status, 'FAILED');
  t.is((run as unknown as { error_sqlstate: string }).error_sqlstate, 'CL012');
  t.regex(run.error_message!, /^claim \(\S+, M\d+\) is (paid|rejected) and cannot be changed by a pipeline run$/);
  t.deepEqual(await db.query(settled), before, 'the settled claims are untouched');

  // Deleting is refused the same way inside a run's transaction.
  const conn = await db.connect();
  await conn.query(`BEGIN`);
  await conn.query(`SELECT set_config('cabinet.in_pipeline', 'on', true)`);
  const err = await t.throwsAsync(conn.query(`DELETE FROM canon.claims_yango_cabinet_14d WHERE status = 'rejected'`));
  t.is((err as Error & { code?: string }).code, 'CL012');
  await conn.query(`ROLLBACK`);

  // Outside a run, finance corrects a paid amount: allowed and recorded.
  await db.query(`UPDATE canon.claims_yango_cabinet_14d SET amount_expected = amount_expected - 5
                  WHERE (lead_source_pk, milestone) = (SELECT lead_source_pk, milestone FROM canon.claims_yango_cabinet_14d WHERE status = 'paid' ORDER BY 1, 2 LIMIT 1)`);
  const [recorded] = await db.query<{ same: boolean }>(`
    SELECT s.amount_expected = c.amount_expected AS same FROM canon.claims_yango_cabinet_14d c
    JOIN canon.claims_settled s USING (lead_source_pk, milestone)
    WHERE c.status = 'paid' ORDER BY 1 LIMIT 1`);
  t.true(recorded!.same);
  t.deepEqual(await violations(db), []);
});
