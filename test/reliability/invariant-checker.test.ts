// The invariant checker (issue 8, scenario 5): ops.check_invariants() and
// `cabinet-leads doctor` report every violation of the spec's invariants, each broken here
// on purpose (the deferred triggers forbid some breaks: session_replication_role =
// replica lets the bad state in), and doctor exits 1 while one is violated, 0 once repaired.
// Also the guard behind two of them: a pipeline run can never change a settled claim.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { doctorCommand } from '../../src/cli/doctor.js';
import { PROJECT_ROOT } from '../../src/config.js';
import { claimsOf, financeSettles, insertClaims, settledRecordsOf } from '../helpers/claims.js';
import { runCli } from '../helpers/cli.js';
import { createTestDb, type TestDb } from '../helpers/db.js';
import { runPipeline } from '../helpers/pipeline.js';
import { insertLead } from '../helpers/rows.js';
import { linkPerson } from '../helpers/scenario.js';
import { backendPid, blockedBy, start } from '../helpers/locks.js';
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
  /** other invariants the same break violates (a bypassed trigger also leaves a cache behind) */
  also?: [string, number][];
}

const REPLICA = `SET session_replication_role = replica;`;

/** the order of ops.check_invariants() rows */
const order = (invariant: string) => cases.findIndex((c) => c.invariant === invariant);

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
    // the claim deleted behind the dirty-marking trigger's back leaves its lead's stored state
    // stale, and so do the amount changed and the claim paid (the lead's paid figures)
    also: [['LEAD_STATE_CURRENT', 2]],
    // Once finance has checked them: record the claims as they are now; the deleted one's
    // record stays, stamped with why.
    repair: `
      UPDATE canon.claims_yango_cabinet_14d c SET status = c.status
      WHERE c.status IN ('paid', 'rejected')
        AND NOT EXISTS (SELECT 1 FROM canon_internal.claims_settled s
                        WHERE s.lead_source_pk = c.lead_source_pk AND s.milestone = c.milestone AND s.unsettled_at IS NULL
                          AND (s.status, s.amount_expected, s.paid_at) IS NOT DISTINCT FROM (c.status, c.amount_expected, c.paid_at));
      UPDATE canon_internal.claims_settled s
      SET unsettled_at = now(), unsettled_by = current_user, unsettled_txid = txid_current(),
          unsettled_to = coalesce((SELECT c.status FROM canon.claims_yango_cabinet_14d c
                                   WHERE c.lead_source_pk = s.lead_source_pk AND c.milestone = s.milestone), 'deleted'),
          unsettled_note = 'changed behind the guard: confirmed by finance'
      WHERE s.unsettled_at IS NULL
        AND NOT EXISTS (SELECT 1 FROM canon.claims_yango_cabinet_14d c
                        WHERE c.lead_source_pk = s.lead_source_pk AND c.milestone = s.milestone AND c.status IN ('paid', 'rejected'));
      SELECT ops.repair_caches();`,
  },
  {
    invariant: 'LEAD_STATE_COUNTS',
    // Stored state written with the counting trigger bypassed: one lead's stage changed.
    breakIt: `${REPLICA}
      UPDATE canon_internal.cabinet_lead_state SET limbo_stage = CASE WHEN limbo_stage = 'OK' THEN 'NO_DRIVER' ELSE 'OK' END
      WHERE lead_id = (SELECT min(lead_id) FROM canon_internal.cabinet_lead_state);`,
    violations: 2,
    // the stage written behind the trigger's back is not the live one either
    also: [['LEAD_STATE_CURRENT', 1]],
    example: /^\d{4}-\d\d-\d\d (OK|NO_DRIVER|NO_IDENTITY|NO_TRIPS_14D|TRIPS_NO_CLAIM) identity=(true|false) driver=(true|false) trips=(true|false) rule=(true|false): counted \d+, stored \d+$/,
    repair: `SELECT ops.recount_lead_state_counts(); SELECT ops.repair_caches();`,
  },
  {
    invariant: 'LEAD_KEYS_CURRENT',
    // The lead keys cache written by hand: one row with values that are not the lead's, one lead unkeyed.
    breakIt: `
      UPDATE canon_internal.lead_keys SET source_hash = 'stale', phone_norm = '999999999'
      WHERE lead_id = (SELECT min(lead_id) FROM canon_internal.lead_keys WHERE lead_date IS NOT NULL);
      DELETE FROM canon_internal.lead_keys WHERE lead_id = (SELECT max(lead_id) FROM canon_internal.lead_keys WHERE lead_date IS NOT NULL);`,
    violations: 2,
    example: /^lead id \d+: (not keyed|keyed with values that are not the row's)$/,
    repair: `SELECT ops.repair_caches();`,
  },
  {
    invariant: 'LEAD_STATE_CURRENT',
    // A stored trip count the live chain does not give (written by hand; the counters follow).
    // The copy's statistics start at zero: what the last run saw is set to them, as a run would.
    breakIt: `
      UPDATE canon_internal.source_scan_state
      SET tuples_updated = pg_stat_get_tuples_updated('public.summary_daily'::regclass),
          tuples_deleted = pg_stat_get_tuples_deleted('public.summary_daily'::regclass)
      WHERE source_table = 'summary_daily';
      UPDATE canon_internal.cabinet_lead_state SET trips_in_window = trips_in_window + 7
      WHERE lead_id = (SELECT max(lead_id) FROM canon_internal.cabinet_lead_state WHERE trips_in_window > 0);`,
    violations: 1,
    example: /^lead id \d+: stored \w+ with \d+ trips, live \w+ with \d+ trips$/,
    repair: `SELECT ops.repair_caches();`,
  },
  {
    invariant: 'LEAD_STATE_MARKS_CONSUMED',
    // A mark older than the last run, which would have consumed it.
    breakIt: `
      INSERT INTO canon_internal.cabinet_lead_state_dirty (lead_source_pk, marked_at)
      SELECT lead_source_pk, now() - interval '1 day' FROM canon_internal.cabinet_lead_state ORDER BY lead_id LIMIT 1;`,
    violations: 1,
    example: /^lead key \S+ marked at .+$/,
    repair: `SELECT ops.repair_caches();`,
  },
  {
    invariant: 'NEVER_EVALUATED_LISTED',
    // An unmatched row removed behind the trigger that lists its key again.
    breakIt: `${REPLICA}
      DELETE FROM canon.identity_unmatched
      WHERE source_pk = (SELECT u.source_pk FROM canon.identity_unmatched u JOIN canon_internal.lead_keys k ON k.lead_source_pk = u.source_pk
                         WHERE k.lead_date IS NOT NULL ORDER BY 1 LIMIT 1);`,
    violations: 1,
    example: /^lead key \S+ \(lead id \d+\) is not listed$/,
    repair: `SELECT ops.repair_caches();`,
  },
  {
    invariant: 'RETRY_DUE_MARKED',
    // An OPEN lead that shares a key with a driver indexed after its last attempt, not due.
    breakIt: `
      UPDATE canon.identity_unmatched u
      SET last_attempt_at = (SELECT min(i.indexed_at) FROM canon_internal.driver_index i) - interval '1 minute', retry_due = false
      WHERE u.source_pk = (SELECT u2.source_pk FROM canon.identity_unmatched u2
                           JOIN canon_internal.lead_keys k ON k.lead_source_pk = u2.source_pk
                           JOIN canon_internal.driver_index i ON i.phone_norm = k.phone_norm OR i.plate_norm = k.plate_norm
                           WHERE u2.status = 'OPEN' ORDER BY 1 LIMIT 1);`,
    violations: 1,
    example: /^lead key \S+: driver \S+ indexed at .+, last attempt .+$/,
    repair: `SELECT ops.repair_caches();`,
  },
  {
    invariant: 'DRIVER_INDEX_CURRENT',
    // The driver index written by hand: one driver with values that are not its own, one missing.
    breakIt: `
      UPDATE canon_internal.driver_index SET source_hash = 'stale' WHERE driver_id = (SELECT min(driver_id) FROM canon_internal.driver_index);
      DELETE FROM canon_internal.driver_index WHERE driver_id = (SELECT max(driver_id) FROM canon_internal.driver_index);`,
    violations: 2,
    example: /^driver \S+: (not indexed|indexed with values that are not the driver's)$/,
    repair: `SELECT ops.repair_caches();`,
  },
  {
    invariant: 'DRIVER_ODD_COUNTS',
    // A driver with a future timestamp counted by a refresh, then its version dropped by hand
    // from the versions the next run counts.
    // (committed first: a version written by the refresh's own transaction is one the next
    // run reads again as written since)
    breakIt: `
      BEGIN;
      INSERT INTO public.drivers (driver_id, park_id, first_name, phone, created_at, updated_at)
      VALUES ('odd-future', 'p', 'Qwxyz', NULL, '2099-01-01', '2099-01-01');
      COMMIT;
      SELECT canon.refresh_driver_index(NULL);
      UPDATE canon_internal.driver_index_state
      SET odd_versions = odd_versions[2:], odd_version_xmins = odd_version_xmins[2:];`,
    violations: 1,
    example: /^odd driver timestamps: the next run would count \d+ future and \d+ without timestamp, counted now \d+ and \d+$/,
    repair: `SELECT ops.repair_caches();`,
  },
  {
    invariant: 'SETTLED_CLAIM_REMOVED',
    // Outside a run, with the triggers on, but with no note: a paid claim deleted, a rejected one reopened.
    breakIt: `
      DELETE FROM canon.claims_yango_cabinet_14d
      WHERE (lead_source_pk, milestone) = (SELECT lead_source_pk, milestone FROM canon.claims_yango_cabinet_14d WHERE status = 'paid' ORDER BY 1, 2 LIMIT 1);
      UPDATE canon.claims_yango_cabinet_14d SET status = 'generated'
      WHERE (lead_source_pk, milestone) = (SELECT lead_source_pk, milestone FROM canon.claims_yango_cabinet_14d WHERE status = 'rejected' ORDER BY 1, 2 LIMIT 1);`,
    violations: 2,
    example: /^\S+ M\d+ (paid [\d.]+ PEN: deleted|rejected [\d.]+ PEN: changed to generated) at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\S* by \S+ \(txid \d+\), no note$/,
    // The deletion was a mistake: the claim is put back from its record (which re-records
    // it); the reopening was meant: finance says why.
    repair: `
      INSERT INTO canon.claims_yango_cabinet_14d (lead_source_pk, milestone, person_key, driver_id, lead_date, amount_expected,
                                                  currency, status, generated_at, paid_at, run_id)
      SELECT s.lead_source_pk, s.milestone, p.person_key, s.driver_id, s.lead_date, s.amount_expected,
             s.currency, s.status, s.generated_at, s.paid_at, s.run_id
      FROM canon_internal.claims_settled s LEFT JOIN canon.identity_registry p ON p.person_key = s.person_key
      WHERE s.unsettled_to = 'deleted' AND s.unsettled_note IS NULL;
      UPDATE canon_internal.claims_settled SET unsettled_note = 'reopened by finance: rejected by mistake'
      WHERE unsettled_at IS NOT NULL AND unsettled_note IS NULL;`,
  },
  {
    invariant: 'LEAD_KEY_BLANK_ENDS',
    // What the old key (btrim of spaces only) left when 'K<TAB>' arrived beside 'K': a
    // second lead key, linked to the same person and claimed again.
    breakIt: `
      CREATE TEMP TABLE twin AS
        SELECT l.source_pk AS k FROM canon.identity_links l
        WHERE l.source_table = 'module_ct_cabinet_leads'
          AND EXISTS (SELECT 1 FROM canon.claims_yango_cabinet_14d c WHERE c.lead_source_pk = l.source_pk)
        ORDER BY 1 LIMIT 1;
      INSERT INTO canon.identity_links (source_table, source_pk, person_key, match_rule, match_score, confidence_level, evidence, run_id)
        SELECT l.source_table, l.source_pk || E'\\t', l.person_key, l.match_rule, l.match_score, l.confidence_level, l.evidence, l.run_id
        FROM canon.identity_links l JOIN twin ON l.source_table = 'module_ct_cabinet_leads' AND l.source_pk = twin.k;
      INSERT INTO canon.claims_yango_cabinet_14d (lead_source_pk, milestone, person_key, driver_id, lead_date, amount_expected, currency, status, generated_at, run_id)
        SELECT c.lead_source_pk || E'\\t', c.milestone, c.person_key, c.driver_id, c.lead_date, c.amount_expected, c.currency, 'generated', now(), c.run_id
        FROM canon.claims_yango_cabinet_14d c JOIN twin ON c.lead_source_pk = twin.k;`,
    violations: 1,
    example: /^[0-9a-f]{32}\\u0009 is lead [0-9a-f]{32}: one lead under 2 keys \(in claims_yango_cabinet_14d, identity_links\)$/,
    // Merged: one link and one claim per milestone kept, the others set aside for finance.
    repair: `SELECT ops.repair_lead_keys('doctor: LEAD_KEY_BLANK_ENDS');`,
  },
  {
    invariant: 'SETTING_INVALID',
    // Written while the trigger was off (today's code had none): every run would fail on them.
    breakIt: `${REPLICA}
      UPDATE canon.settings SET value = 'America/Lim' WHERE key = 'business_timezone';
      UPDATE canon.settings SET value = 'three' WHERE key = 'source_full_read_hours';
      DELETE FROM canon.settings WHERE key = 'alert_week_complete_after_days';`,
    violations: 3,
    example: /^(business_timezone = 'America\/Lim': unknown time zone: expected a name of pg_timezone_names \(did you mean America\/Lima\?\)|source_full_read_hours = 'three': not an integer: expected an integer from 1 to 8760|alert_week_complete_after_days missing \(read by [a-z_.]+(, [a-z_.]+)*\))$/,
    repair: `
      UPDATE canon.settings SET value = 'America/Lima' WHERE key = 'business_timezone';
      UPDATE canon.settings SET value = '24' WHERE key = 'source_full_read_hours';
      INSERT INTO canon.settings (key, value, description, value_type, min_value, max_value)
      VALUES ('alert_week_complete_after_days', '2', 'Days after a lead week ends before week-over-week alerts treat it as complete.', 'INTEGER', 0, 365);`,
  },
  {
    invariant: 'SETTING_UNGUARDED',
    breakIt: `
      ALTER TABLE canon.settings DISABLE TRIGGER settings_validate;
      DROP TRIGGER settings_no_truncate ON canon.settings;`,
    violations: 2,
    example: /^trigger settings_(validate disabled|no_truncate missing)$/,
    repair: `
      ALTER TABLE canon.settings ENABLE TRIGGER settings_validate;
      CREATE TRIGGER settings_no_truncate BEFORE TRUNCATE ON canon.settings
        FOR EACH STATEMENT EXECUTE FUNCTION canon.enforce_setting_valid();`,
  },
  {
    invariant: 'NAME_TOKEN_STATS',
    // A counter of the relatives veto written by hand: one token counted once too often.
    breakIt: `${REPLICA}
      UPDATE canon_internal.name_token_stats SET as_given = as_given + 1 WHERE token = (SELECT min(token) FROM canon_internal.name_token_stats);`,
    violations: 1,
    example: /^[A-Z0-9]+: counted given \d+ surname \d+, stored given \d+ surname \d+$/,
    repair: `SELECT ops.repair_name_roles();`,
  },
  {
    invariant: 'DRIVER_NAME_ROLES',
    // A driver re-indexed with the name roles trigger bypassed.
    breakIt: `${REPLICA}
      UPDATE canon_internal.driver_index SET indexed_at = indexed_at + interval '1 second'
      WHERE driver_id = (SELECT min(driver_id) FROM canon_internal.driver_index);`,
    violations: 1,
    example: /^driver \S+: name roles not written with its index row$/,
    repair: `SELECT ops.repair_name_roles();`,
  },
  {
    invariant: 'JOB_LOCK_HELD_TOO_LONG',
    // A session took the job lock and kept it: the runs of the last 2 hours were SKIPPED.
    breakIt: `
      SELECT pg_advisory_lock(hashtext('cabinet_leads'), hashtext('reconcile_cabinet_leads_pipeline'));
      INSERT INTO canon.ingestion_runs (job_name, status, dry_run, source_tables, started_at, created_at, completed_at, stats)
      SELECT 'reconcile_cabinet_leads_pipeline', 'SKIPPED', false, '["module_ct_cabinet_leads"]'::jsonb,
             now() - interval '2 hours', now() - interval '2 hours', now() - interval '2 hours' + interval '1 second',
             '{"skipped_reason": "another run holds the job lock"}'::jsonb;`,
    violations: 1,
    example: /^pid \d+ \(.*user postgres, idle\) holds it since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(0?2:00:\d\d\): SELECT pg_terminate_backend\(\d+\);$/,
    // docs/operations.md: SELECT pg_terminate_backend(pid) from another session; here the holder lets go itself.
    repair: `SELECT pg_advisory_unlock_all();`,
  },
  {
    invariant: 'WORKER_JOB_LOCKED_TOO_LONG',
    // A worker killed with kill -9 two hours ago: its job and the job's queue stay locked.
    breakIt: `
      SELECT graphile_worker.add_job('reconcile_cabinet_leads_pipeline', '{}'::json, queue_name => 'cabinet_leads_serial', max_attempts => 1);
      UPDATE graphile_worker._private_jobs SET locked_by = 'worker-killed-9', locked_at = now() - interval '2 hours';
      UPDATE graphile_worker._private_job_queues SET locked_by = 'worker-killed-9', locked_at = now() - interval '2 hours';`,
    violations: 2,
    example: /^(JOB \d+ \(reconcile_cabinet_leads_pipeline\)|QUEUE \d+ \(cabinet_leads_serial\)) locked by worker-killed-9 since .* UTC \(0?2:00:\d\d\): SELECT graphile_worker\.force_unlock_workers\(ARRAY\['worker-killed-9'\]\);$/,
    repair: `SELECT graphile_worker.force_unlock_workers(ARRAY['worker-killed-9']);`,
  },
];

test('cabinet-leads doctor exits 0 when every invariant holds, 1 when one is violated', async (t) => {
  const db = await copy(t, 'inv_ok');
  const all = await db.query<{ invariant: string; violations: string }>(`SELECT invariant, violations FROM ops.check_invariants()`);
  t.deepEqual(all.map((r) => r.invariant), cases.map((c) => c.invariant));
  const [settled] = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM canon_internal.claims_settled`);
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
    t.deepEqual(
      found.map((v) => [v.invariant, Number(v.violations)]),
      [[c.invariant, c.violations] as [string, number], ...(c.also ?? [])].sort((a, b) => order(a[0]) - order(b[0])),
    );
    const mine = found.find((v) => v.invariant === c.invariant);
    t.is(mine?.examples.length, c.violations);
    for (const e of mine?.examples ?? []) t.regex(e, c.example);

    const broken = await doctor(db);
    t.is(broken.code, 1);
    t.regex(broken.stdout, new RegExp(`^FAIL ${c.invariant} +${c.violations} violation\\(s\\)`, 'm'));
    t.regex(broken.stdout, new RegExp(`^${1 + (c.also?.length ?? 0)} invariant\\(s\\) violated$`, 'm'));

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
    JOIN canon_internal.claims_settled s USING (lead_source_pk, milestone)
    WHERE c.status = 'paid' ORDER BY 1 LIMIT 1`);
  t.true(recorded!.same);
  t.deepEqual(await violations(db), []);
});

/** ops.unlink_lead as it was before the money-race fix (test/fixtures/sql). */
function unlinkLeadBefore0027(): string {
  return readFileSync(path.join(PROJECT_ROOT, 'test', 'fixtures', 'sql', 'ops.unlink_lead.unguarded.sql'), 'utf8');
}

test('the unlink race of the code before 0027 (a claim paid while unlink waited, then deleted) is named by doctor: SETTLED_CLAIM_REMOVED', async (t) => {
  const db = await copy(t, 'inv_unlink_race');
  await db.query(unlinkLeadBefore0027());
  await insertLead(db, { external_id: 'RACE', first_name: null, last_name: null });
  const person = await linkPerson(db, ['RACE'], [{ driverId: 'd-race' }]);
  await insertClaims(db, 'RACE', person, 'd-race', [{ milestone: 1 }, { milestone: 5 }]);
  const finance = await db.connect();
  const operator = await db.connect();

  const paid = await financeSettles(finance, 'RACE', 1, 'paid');
  const unlinking = await start(operator, `SELECT ops.unlink_lead('RACE', 'wrong driver')`);
  t.is(await blockedBy(db, unlinking, await backendPid(finance)), 'blocked');
  await finance.query('COMMIT');
  t.true((await unlinking.outcome).ok, 'the old unlink goes ahead');

  // The break: the paid claim is gone and the audit says it was generated.
  t.deepEqual(await claimsOf(db, 'RACE'), []);
  const [audit] = await db.query<{ details: { claims_removed: { milestone: number; status: string }[] } }>(
    `SELECT details FROM canon.identity_audit WHERE action = 'UNLINK' AND source_pk = 'RACE'`,
  );
  t.deepEqual(audit!.details.claims_removed.map((c) => [c.milestone, c.status]), [[1, 'generated'], [5, 'generated']]);

  // Its record stays, stamped, and doctor names it.
  t.like((await settledRecordsOf(db, 'RACE'))[0], { milestone: 1, status: 'paid', paid_at: paid.paid_at, unsettled_to: 'deleted', unsettled_note: null });
  const found = await violations(db);
  t.deepEqual(found.map((v) => [v.invariant, Number(v.violations)]), [['SETTLED_CLAIM_REMOVED', 1]]);
  t.regex(found[0]!.examples[0]!, /^RACE M1 paid 25\.00 PEN: deleted at .+ by \S+ \(txid \d+\), no note$/);
  const [sameTx] = await db.query<{ same: boolean }>(
    `SELECT s.unsettled_txid = a.txid AS same FROM canon_internal.claims_settled s, canon.identity_audit a
     WHERE s.lead_source_pk = 'RACE' AND a.action = 'UNLINK' AND a.source_pk = 'RACE'`,
  );
  t.true(sameTx!.same, 'the record names the transaction of the UNLINK audit row');
});

test('a settled claim deleted or reopened with a note is recorded, not reported; settled again, its record is current', async (t) => {
  const db = await copy(t, 'inv_settled_note');
  const conn = await db.connect();
  const [paid] = await db.query<{ lead_source_pk: string; milestone: number }>(
    `SELECT lead_source_pk, milestone FROM canon.claims_yango_cabinet_14d WHERE status = 'paid' ORDER BY 1, 2 LIMIT 1`,
  );
  await conn.query(`BEGIN`);
  await conn.query(`SET LOCAL cabinet.settled_change_note = 'paid twice: refunded, transfer 4711'`);
  await conn.query(`DELETE FROM canon.claims_yango_cabinet_14d WHERE lead_source_pk = $1 AND milestone = $2`, [paid!.lead_source_pk, paid!.milestone]);
  await conn.query(`COMMIT`);
  t.like((await settledRecordsOf(db, paid!.lead_source_pk)).find((r) => r.milestone === paid!.milestone), {
    status: 'paid', unsettled_to: 'deleted', unsettled_note: 'paid twice: refunded, transfer 4711',
  });
  t.deepEqual(await violations(db), []);

  const [rejected] = await db.query<{ lead_source_pk: string; milestone: number }>(
    `SELECT lead_source_pk, milestone FROM canon.claims_yango_cabinet_14d WHERE status = 'rejected' ORDER BY 1, 2 LIMIT 1`,
  );
  await conn.query(`UPDATE canon.claims_yango_cabinet_14d SET status = 'generated' WHERE lead_source_pk = $1 AND milestone = $2`, [rejected!.lead_source_pk, rejected!.milestone]);
  t.like((await settledRecordsOf(db, rejected!.lead_source_pk)).find((r) => r.milestone === rejected!.milestone), { unsettled_to: 'generated', unsettled_note: null });
  t.deepEqual((await violations(db)).map((v) => v.invariant), ['SETTLED_CLAIM_REMOVED']);
  await conn.query(`UPDATE canon.claims_yango_cabinet_14d SET status = 'paid', paid_at = now() WHERE lead_source_pk = $1 AND milestone = $2`, [rejected!.lead_source_pk, rejected!.milestone]);
  t.like((await settledRecordsOf(db, rejected!.lead_source_pk)).find((r) => r.milestone === rejected!.milestone), { status: 'paid', unsettled_at: null, unsettled_to: null });
  t.deepEqual(await violations(db), []);
});

test('while an operator tool changes claims (cabinet.protect_settled), the guard refuses a claim settled after the tool read it', async (t) => {
  const db = await copy(t, 'inv_tool_guard');
  await insertLead(db, { external_id: 'GUARD', first_name: null, last_name: null });
  const person = await linkPerson(db, ['GUARD'], [{ driverId: 'd-guard' }]);
  await insertClaims(db, 'GUARD', person, 'd-guard', [{ milestone: 1 }]);
  const finance = await db.connect();
  const tool = await db.connect();

  // A tool that read the claim as generated and deletes it by key, as the code before 0027 did.
  const paid = await financeSettles(finance, 'GUARD', 1, 'paid');
  await tool.query(`BEGIN`);
  await tool.query(`SELECT set_config('cabinet.protect_settled', 'ops.unlink_lead', true)`);
  const deleting = await start(tool, `DELETE FROM canon.claims_yango_cabinet_14d WHERE lead_source_pk = 'GUARD'`);
  t.is(await blockedBy(db, deleting, await backendPid(finance)), 'blocked');
  await finance.query('COMMIT');
  const outcome = await deleting.outcome;
  await tool.query(`ROLLBACK`);

  t.false(outcome.ok);
  if (!outcome.ok) {
    t.is(outcome.error.code, 'CL012');
    t.is(outcome.error.message, 'claim (GUARD, M1) is paid and cannot be changed by ops.unlink_lead');
  }
  t.deepEqual(await claimsOf(db, 'GUARD'), [paid]);
  t.deepEqual(await violations(db), []);
});
