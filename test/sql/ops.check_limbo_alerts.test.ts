// The alert rules of SPEC 9 on hand-built histories: each rule fires exactly when it
// should (thresholds at the boundary, the last two COMPLETE lead weeks and never the
// current partial one, a previous week of 0, staleness without any run, the last run
// FAILED), and a persisting alert stays the same alert (first_seen_at kept).
import test from 'ava';
import { freshDb, type TestDb } from '../helpers/db.js';
import { addDays, businessToday, insertLead } from '../helpers/rows.js';
import { linkPerson } from '../helpers/scenario.js';

interface AlertRow {
  rule_code: string;
  severity: string;
  metric: string;
  measure: string;
  comparison: string;
  threshold: number;
  current_value: number | null;
  previous_value: number | null;
  change_pct: number | null;
  subject: string;
  message: string;
  first_seen_at: Date;
  last_seen_at: Date;
  is_new: boolean;
  alert_id: string | null;
}

async function check(db: TestDb, args = ''): Promise<AlertRow[]> {
  return db.query<AlertRow>(
    `SELECT rule_code, severity, metric, measure, comparison, threshold::float8 AS threshold,
            current_value::float8 AS current_value, previous_value::float8 AS previous_value,
            change_pct::float8 AS change_pct, subject, message, first_seen_at, last_seen_at, is_new, alert_id::text AS alert_id
     FROM ops.check_limbo_alerts(${args})`,
  );
}

async function fired(db: TestDb, rule: string, args = ''): Promise<AlertRow | undefined> {
  const rows = (await check(db, args)).filter((a) => a.rule_code === rule);
  if (rows.length > 1) throw new Error(`${rule} fired ${rows.length} times`);
  return rows[0];
}

/** A run row of the pipeline's job, as the protocol writes it; `ago` is a SQL interval before now. */
async function insertRun(db: TestDb, status: 'COMPLETED' | 'FAILED' | 'SKIPPED' | 'RUNNING', ago: string, opts: { dryRun?: boolean; error?: string } = {}): Promise<number> {
  const [r] = await db.query<{ id: string }>(
    `INSERT INTO canon.ingestion_runs (job_name, status, dry_run, source_tables, started_at, created_at, completed_at, error_message)
     SELECT 'reconcile_cabinet_leads_pipeline', $1, $2, '["module_ct_cabinet_leads"]'::jsonb,
            now() - $3::interval - interval '1 minute', now() - $3::interval - interval '1 minute',
            CASE WHEN $1 = 'RUNNING' THEN NULL ELSE now() - $3::interval END, $4
     RETURNING id`,
    [status, opts.dryRun ?? false, ago, opts.error ?? null],
  );
  return Number(r!.id);
}

/** n leads dated `date` that no run has matched: limbo stage NO_IDENTITY. */
async function noIdentityLeads(db: TestDb, date: string, n: number): Promise<void> {
  await db.query(
    `INSERT INTO public.module_ct_cabinet_leads (external_id, lead_created_at, first_name, last_name)
     SELECT 'NI-' || gen_random_uuid(), $1::date + time '10:30', 'Ana', 'Diaz' FROM generate_series(1, $2)`,
    [date, n],
  );
}

/** n leads dated `date`, each linked to a person and driver with 1 trip that day and no claim: TRIPS_NO_CLAIM. */
async function tripsNoClaimLeads(db: TestDb, date: string, n: number): Promise<void> {
  const c = await db.connect();
  try {
    await c.query('BEGIN');
    await c.query(
      `CREATE TEMP TABLE g ON COMMIT DROP AS
       SELECT gen_random_uuid() AS person_key, 'TNC-' || gen_random_uuid() AS external_id, 'D-' || gen_random_uuid() AS driver_id
       FROM generate_series(1, $1)`,
      [n],
    );
    await c.query(`INSERT INTO canon.identity_registry (person_key, confidence_level) SELECT person_key, 'HIGH' FROM g`);
    await c.query(
      `INSERT INTO public.module_ct_cabinet_leads (external_id, lead_created_at, first_name, last_name)
       SELECT external_id, $1::date + time '10:30', 'Luis', 'Rojas' FROM g`,
      [date],
    );
    await c.query(
      `INSERT INTO canon.identity_links (source_table, source_pk, person_key, match_rule, match_score, confidence_level)
       SELECT 'module_ct_cabinet_leads', external_id, person_key, 'R1_PHONE_EXACT', 95, 'HIGH' FROM g
       UNION ALL
       SELECT 'drivers', driver_id, person_key, 'R1_PHONE_EXACT', 95, 'HIGH' FROM g`,
    );
    await c.query(
      `INSERT INTO public.summary_daily (driver_id, date_file, count_orders_completed, sum_work_time_seconds)
       SELECT driver_id, $1, 1, 3600 FROM g`,
      [date],
    );
    await c.query('COMMIT');
  } catch (err) {
    await c.query('ROLLBACK');
    throw err;
  }
}

async function stageCount(db: TestDb, stage: string): Promise<number> {
  const [r] = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ops.v_cabinet_leads_limbo WHERE limbo_stage = $1`, [stage]);
  return r!.n;
}

/** The last complete lead week and the one before, by the product's own definition. */
async function completeWeeks(db: TestDb): Promise<{ last: string; previous: string; current: string; today: string }> {
  const [r] = await db.query<{ last: string; current: string; today: string }>(
    `SELECT ops.last_complete_lead_week(canon.business_today(), canon.setting('alert_week_complete_after_days')::int)::text AS last,
            date_trunc('week', canon.business_today()::timestamp)::date::text AS current,
            canon.business_today()::text AS today`,
  );
  return { last: r!.last, previous: addDays(r!.last, -7), current: r!.current, today: r!.today };
}

test('the seeded rules are SPEC 9 rules, one row each, enabled', async (t) => {
  const db = await freshDb(t, 'alert_rules');
  const rules = await db.query(
    `SELECT rule_code, metric, measure, comparison, threshold::float8 AS threshold, enabled FROM ops.alert_rules ORDER BY rule_code`,
  );
  t.deepEqual(rules, [
    { rule_code: 'IDENTITY_SHARE_BELOW', metric: 'PCT_WITH_IDENTITY', measure: 'CURRENT', comparison: '<', threshold: 80, enabled: true },
    { rule_code: 'LAST_COMPLETED_RUN_STALE', metric: 'HOURS_SINCE_LAST_COMPLETED_RUN', measure: 'CURRENT', comparison: '>', threshold: 2, enabled: true },
    { rule_code: 'LAST_RUN_FAILED', metric: 'LAST_RUN_FAILED', measure: 'CURRENT', comparison: '=', threshold: 1, enabled: true },
    { rule_code: 'NO_IDENTITY_ABOVE', metric: 'NO_IDENTITY', measure: 'CURRENT', comparison: '>', threshold: 100, enabled: true },
    { rule_code: 'NO_IDENTITY_WEEK_OVER_WEEK', metric: 'NO_IDENTITY', measure: 'WEEK_OVER_WEEK_PCT', comparison: '>', threshold: 10, enabled: true },
    { rule_code: 'TRIPS_NO_CLAIM_ABOVE', metric: 'TRIPS_NO_CLAIM', measure: 'CURRENT', comparison: '>', threshold: 50, enabled: true },
    { rule_code: 'TRIPS_NO_CLAIM_WEEK_OVER_WEEK', metric: 'TRIPS_NO_CLAIM', measure: 'WEEK_OVER_WEEK_PCT', comparison: '>', threshold: 5, enabled: true },
  ]);
});

test('a rule a DBA cannot express is refused by the table (week over week of a share, unknown metric)', async (t) => {
  const db = await freshDb(t, 'alert_rules_check');
  await t.throwsAsync(
    db.query(`INSERT INTO ops.alert_rules (rule_code, description, metric, measure, comparison, threshold)
              VALUES ('X', 'x', 'PCT_WITH_IDENTITY', 'WEEK_OVER_WEEK_PCT', '>', 5)`),
    { message: /check constraint/ },
  );
  await t.throwsAsync(
    db.query(`UPDATE ops.alert_rules SET metric = 'NO_IDENTITY_TYPO' WHERE rule_code = 'NO_IDENTITY_ABOVE'`),
    { message: /check constraint/ },
  );
});

test('NO_IDENTITY_ABOVE: 100 leads without identity do not fire, 101 do', async (t) => {
  const db = await freshDb(t, 'alert_no_identity');
  const today = await businessToday(db);
  await noIdentityLeads(db, addDays(today, -40), 100);
  t.is(await fired(db, 'NO_IDENTITY_ABOVE'), undefined);
  await noIdentityLeads(db, addDays(today, -40), 1);
  const a = await fired(db, 'NO_IDENTITY_ABOVE');
  t.truthy(a);
  t.is(a!.current_value, 101);
  t.is(a!.threshold, 100);
  t.is(a!.metric, 'NO_IDENTITY');
  t.is(a!.severity, 'WARNING');
  t.regex(a!.message, /^Leads in NO_IDENTITY \(no person matched\): 101, above the threshold of 100\.$/);
});

test('TRIPS_NO_CLAIM_ABOVE fires above its threshold, which a DBA edits with plain SQL', async (t) => {
  const db = await freshDb(t, 'alert_trips_no_claim');
  const today = await businessToday(db);
  await tripsNoClaimLeads(db, addDays(today, -30), 3);
  t.is(await stageCount(db, 'TRIPS_NO_CLAIM'), 3);
  t.is(await fired(db, 'TRIPS_NO_CLAIM_ABOVE'), undefined, '3 is not above 50');
  await db.query(`UPDATE ops.alert_rules SET threshold = 3 WHERE rule_code = 'TRIPS_NO_CLAIM_ABOVE'`);
  t.is(await fired(db, 'TRIPS_NO_CLAIM_ABOVE'), undefined, '3 is not above 3');
  await db.query(`UPDATE ops.alert_rules SET comparison = '>=' WHERE rule_code = 'TRIPS_NO_CLAIM_ABOVE'`);
  const a = await fired(db, 'TRIPS_NO_CLAIM_ABOVE');
  t.is(a?.current_value, 3);
  t.regex(a!.message, /TRIPS_NO_CLAIM .*: 3, at or above the threshold of 3/);
  await db.query(`UPDATE ops.alert_rules SET enabled = false WHERE rule_code = 'TRIPS_NO_CLAIM_ABOVE'`);
  t.is(await fired(db, 'TRIPS_NO_CLAIM_ABOVE'), undefined, 'a disabled rule never fires');
});

test('IDENTITY_SHARE_BELOW: 80 % of leads with identity does not fire, 72.73 % does; no leads at all never fires', async (t) => {
  const db = await freshDb(t, 'alert_share');
  const today = await businessToday(db);
  t.is(await fired(db, 'IDENTITY_SHARE_BELOW'), undefined, 'no leads: no share');
  const linked = [];
  for (let i = 0; i < 8; i++) linked.push((await insertLead(db, { lead_created_at: addDays(today, -20) })).key);
  await linkPerson(db, linked);
  await noIdentityLeads(db, addDays(today, -20), 2);
  t.is(await fired(db, 'IDENTITY_SHARE_BELOW'), undefined, '8 of 10 is exactly 80 %');
  await noIdentityLeads(db, addDays(today, -20), 1);
  const a = await fired(db, 'IDENTITY_SHARE_BELOW');
  t.is(a?.current_value, 72.73);
  t.regex(a!.message, /Share of leads with an identity: 72\.73 %, below the threshold of 80 %/);
});

test('last_complete_lead_week never returns the current partial week and waits the arrival lag', async (t) => {
  const db = await freshDb(t, 'alert_weeks');
  const cases: [string, number, string][] = [
    ['2026-01-12', 0, '2026-01-05'], // Monday: last week just ended
    ['2026-01-11', 0, '2025-12-29'], // Sunday: this week is still running
    ['2026-01-13', 0, '2026-01-05'], // the predecessor's "+3100 %" day: never 2026-01-12
    ['2026-01-12', 2, '2025-12-29'], // Monday with 2 days of lag: last week's leads still arrive
    ['2026-01-13', 2, '2025-12-29'],
    ['2026-01-14', 2, '2026-01-05'], // Wednesday: complete
    ['2026-01-18', 2, '2026-01-05'],
  ];
  for (const [today, lag, expected] of cases) {
    const [r] = await db.query<{ w: string }>(`SELECT ops.last_complete_lead_week($1::date, $2)::text AS w`, [today, lag]);
    t.is(r!.w, expected, `${today} lag ${lag}`);
  }
  const [s] = await db.query<{ value: string }>(`SELECT value FROM canon.settings WHERE key = 'alert_week_complete_after_days'`);
  t.is(s!.value, '2');
});

test('NO_IDENTITY_WEEK_OVER_WEEK compares the last two complete lead weeks: +10 % does not fire, +20 % does', async (t) => {
  const db = await freshDb(t, 'alert_wow');
  await insertRun(db, 'COMPLETED', '1 minute');
  const w = await completeWeeks(db);
  await noIdentityLeads(db, addDays(w.previous, 2), 10);
  await noIdentityLeads(db, addDays(w.last, 4), 11);
  t.is(await fired(db, 'NO_IDENTITY_WEEK_OVER_WEEK'), undefined, '10 -> 11 is +10 %, not more');
  await noIdentityLeads(db, addDays(w.last, 6), 1); // Sunday of the last complete week
  const a = await fired(db, 'NO_IDENTITY_WEEK_OVER_WEEK');
  t.truthy(a);
  t.is(a!.current_value, 12);
  t.is(a!.previous_value, 10);
  t.is(a!.change_pct, 20);
  t.is(a!.threshold, 10);
  t.is(a!.subject, `lead week ${w.last}`);
  t.is(
    a!.message,
    `Leads in NO_IDENTITY (no person matched) of lead week ${w.last}: 12, up 20 % from 10 in lead week ${w.previous} (threshold: change above 10 %; only complete lead weeks are compared).`,
  );
});

test('the current partial week is never compared: 1 lead last complete week and 32 this week fire nothing', async (t) => {
  const db = await freshDb(t, 'alert_partial');
  await insertRun(db, 'COMPLETED', '1 minute');
  const w = await completeWeeks(db);
  t.true(w.last < w.current);
  await noIdentityLeads(db, addDays(w.previous, 1), 1);
  await noIdentityLeads(db, addDays(w.last, 1), 1);
  // every week after the last complete one is partial (this week) or still receiving leads (the lag)
  for (let week = addDays(w.last, 7); week <= w.current; week = addDays(week, 7)) await noIdentityLeads(db, week, 32);
  t.is(await fired(db, 'NO_IDENTITY_WEEK_OVER_WEEK'), undefined);
  const [m] = await db.query<{ last_week: string; last_week_value: number; previous_week_value: number }>(
    `SELECT last_week::text, last_week_value::int, previous_week_value::int FROM ops.limbo_alert_metrics() WHERE metric = 'NO_IDENTITY'`,
  );
  t.deepEqual(m, { last_week: w.last, last_week_value: 1, previous_week_value: 1 });
});

test('week over week from a previous week of 0: any rise fires (change_pct NULL), 0 -> 0 does not, min_current_value can silence small rises', async (t) => {
  const db = await freshDb(t, 'alert_zero');
  await insertRun(db, 'COMPLETED', '1 minute');
  const w = await completeWeeks(db);
  t.is(await fired(db, 'NO_IDENTITY_WEEK_OVER_WEEK'), undefined, '0 -> 0');
  await noIdentityLeads(db, addDays(w.last, 3), 3);
  const a = await fired(db, 'NO_IDENTITY_WEEK_OVER_WEEK');
  t.is(a?.current_value, 3);
  t.is(a?.previous_value, 0);
  t.is(a?.change_pct, null);
  t.regex(a!.message, new RegExp(`lead week ${w.last}: 3, up from 0 in lead week ${w.previous}`));
  await db.query(`UPDATE ops.alert_rules SET min_current_value = 5 WHERE rule_code = 'NO_IDENTITY_WEEK_OVER_WEEK'`);
  t.is(await fired(db, 'NO_IDENTITY_WEEK_OVER_WEEK'), undefined, '3 is below the minimum of 5');
});

test('TRIPS_NO_CLAIM_WEEK_OVER_WEEK: 20 -> 21 (+5 %) does not fire, 20 -> 22 (+10 %) does', async (t) => {
  const db = await freshDb(t, 'alert_wow_tnc');
  await insertRun(db, 'COMPLETED', '1 minute');
  const w = await completeWeeks(db);
  await tripsNoClaimLeads(db, addDays(w.previous, 1), 20);
  await tripsNoClaimLeads(db, addDays(w.last, 1), 21);
  t.is(await stageCount(db, 'TRIPS_NO_CLAIM'), 41);
  t.is(await fired(db, 'TRIPS_NO_CLAIM_WEEK_OVER_WEEK'), undefined);
  await tripsNoClaimLeads(db, addDays(w.last, 2), 1);
  const a = await fired(db, 'TRIPS_NO_CLAIM_WEEK_OVER_WEEK');
  t.is(a?.current_value, 22);
  t.is(a?.previous_value, 20);
  t.is(a?.change_pct, 10);
});

test('LAST_COMPLETED_RUN_STALE fires with no run at all, and when the last COMPLETED run is older than 2 hours', async (t) => {
  const db = await freshDb(t, 'alert_stale');
  let a = await fired(db, 'LAST_COMPLETED_RUN_STALE');
  t.is(a?.current_value, null);
  t.is(a?.severity, 'CRITICAL');
  t.is(a?.message, 'No COMPLETED run yet (threshold: 2 hours): run cabinet-leads reconcile or start the worker.');
  const old = await insertRun(db, 'COMPLETED', '3 hours');
  a = await fired(db, 'LAST_COMPLETED_RUN_STALE');
  t.true(a!.current_value! >= 3 && a!.current_value! < 3.1);
  t.regex(a!.message, new RegExp(`^The last COMPLETED run \\(#${old}\\) finished 3(\\.\\d+)? hours ago`));
  // neither a dry run nor a failed or skipped one counts as fresh data
  await insertRun(db, 'COMPLETED', '5 minutes', { dryRun: true });
  await insertRun(db, 'FAILED', '4 minutes', { error: 'boom' });
  await insertRun(db, 'SKIPPED', '3 minutes');
  t.truthy(await fired(db, 'LAST_COMPLETED_RUN_STALE'));
  await insertRun(db, 'COMPLETED', '2 hours 1 minute');
  t.truthy(await fired(db, 'LAST_COMPLETED_RUN_STALE'), '2 h 01 is older than 2 hours');
  await insertRun(db, 'COMPLETED', '1 hour 59 minutes');
  t.is(await fired(db, 'LAST_COMPLETED_RUN_STALE'), undefined);
});

test('LAST_RUN_FAILED fires when the last finished run FAILED, whatever SKIPPED or RUNNING runs came after', async (t) => {
  const db = await freshDb(t, 'alert_failed');
  t.is(await fired(db, 'LAST_RUN_FAILED'), undefined, 'no run at all: nothing failed');
  await insertRun(db, 'COMPLETED', '30 minutes');
  t.is(await fired(db, 'LAST_RUN_FAILED'), undefined);
  const failed = await insertRun(db, 'FAILED', '20 minutes', { error: 'source contract violated: column public.drivers.car_number is missing\nmore' });
  let a = await fired(db, 'LAST_RUN_FAILED');
  t.is(a?.severity, 'CRITICAL');
  t.is(a?.current_value, 1);
  t.regex(a!.message, new RegExp(`^The last run \\(#${failed}, finished .*\\) FAILED: source contract violated: column public\\.drivers\\.car_number is missing\\. Details: SELECT \\* FROM canon\\.ingestion_runs WHERE id = ${failed};$`));
  await insertRun(db, 'SKIPPED', '10 minutes');
  await insertRun(db, 'RUNNING', '1 minute');
  await insertRun(db, 'COMPLETED', '5 minutes', { dryRun: true });
  a = await fired(db, 'LAST_RUN_FAILED');
  t.truthy(a, 'skipped, running and dry runs do not hide the failure');
  await insertRun(db, 'COMPLETED', '1 minute');
  t.is(await fired(db, 'LAST_RUN_FAILED'), undefined);
});

test('a persisting alert is the same alert: first_seen_at kept, last_seen_at and times_seen advance; it resolves, and a new firing opens a new one', async (t) => {
  const db = await freshDb(t, 'alert_state');
  await insertRun(db, 'COMPLETED', '1 minute');
  const failed = await insertRun(db, 'FAILED', '30 seconds', { error: 'boom' });
  const first = await fired(db, 'LAST_RUN_FAILED');
  t.true(first!.is_new);
  await new Promise((r) => setTimeout(r, 30));
  const second = await fired(db, 'LAST_RUN_FAILED');
  t.false(second!.is_new);
  t.is(second!.alert_id, first!.alert_id);
  t.deepEqual(second!.first_seen_at, first!.first_seen_at);
  t.true(second!.last_seen_at > first!.last_seen_at);
  const [row] = await db.query<{ times_seen: number; resolved_at: Date | null; current_value: string }>(
    `SELECT times_seen, resolved_at, current_value::text FROM ops.alerts WHERE id = $1`,
    [first!.alert_id],
  );
  t.deepEqual(row, { times_seen: 2, resolved_at: null, current_value: '1' });

  await insertRun(db, 'COMPLETED', '10 seconds');
  t.is(await fired(db, 'LAST_RUN_FAILED'), undefined);
  const [resolved] = await db.query<{ resolved: boolean }>(`SELECT resolved_at IS NOT NULL AS resolved FROM ops.alerts WHERE id = $1`, [first!.alert_id]);
  t.true(resolved!.resolved);

  await insertRun(db, 'FAILED', '1 second', { error: 'boom again' });
  const again = await fired(db, 'LAST_RUN_FAILED');
  t.true(again!.is_new);
  t.not(again!.alert_id, first!.alert_id);
  const open = await db.query(`SELECT id FROM ops.alerts WHERE rule_code = 'LAST_RUN_FAILED' AND resolved_at IS NULL`);
  t.is(open.length, 1);
  t.not(failed, 0);
});

test('p_record => false reads the alerts without recording anything', async (t) => {
  const db = await freshDb(t, 'alert_read_only');
  const rows = await check(db, 'p_record => false');
  t.deepEqual(rows.map((r) => r.rule_code), ['LAST_COMPLETED_RUN_STALE']);
  t.true(rows[0]!.is_new);
  t.is(rows[0]!.alert_id, null);
  t.deepEqual(await db.query(`SELECT * FROM ops.alerts`), []);
  await check(db);
  const recorded = await check(db, 'p_record => false');
  t.false(recorded[0]!.is_new, 'once recorded, a read shows it as persisting');
});

test('disabling a rule resolves its open alert at the next check', async (t) => {
  const db = await freshDb(t, 'alert_disable');
  t.truthy(await fired(db, 'LAST_COMPLETED_RUN_STALE'));
  await db.query(`UPDATE ops.alert_rules SET enabled = false WHERE rule_code = 'LAST_COMPLETED_RUN_STALE'`);
  t.deepEqual(await check(db), []);
  t.deepEqual(await db.query(`SELECT rule_code FROM ops.alerts WHERE resolved_at IS NULL`), []);
});

test('on a run snapshot, counts come from the snapshot rows and previous values from the snapshot before it', async (t) => {
  const db = await freshDb(t, 'alert_history');
  const w = await completeWeeks(db);
  // a history built by hand: four runs over four weeks, NO_IDENTITY growing
  const history: [string, number, [string, number][]][] = [
    ['21 days', 40, [[addDays(w.previous, -7), 40]]],
    ['14 days', 60, [[addDays(w.previous, -7), 40], [w.previous, 20]]],
    ['7 days', 90, [[addDays(w.previous, -7), 40], [w.previous, 20], [w.last, 30]]],
    ['1 minute', 130, [[addDays(w.previous, -7), 40], [w.previous, 20], [w.last, 30], [w.current, 40]]],
  ];
  let lastRun = 0;
  for (const [ago, total, weeks] of history) {
    lastRun = await insertRun(db, 'COMPLETED', ago);
    await db.query(
      `INSERT INTO ops.limbo_snapshots (run_id, taken_at, business_date, leads, leads_with_identity, leads_with_driver,
                                        limbo_no_identity, limbo_no_driver, limbo_no_trips_14d, limbo_trips_no_claim, limbo_ok)
       VALUES ($1, now() - $2::interval, (now() - $2::interval)::date, $3, 0, 0, $3, 0, 0, 0, 0)`,
      [lastRun, ago, total],
    );
    for (const [week, n] of weeks) {
      await db.query(
        `INSERT INTO ops.limbo_snapshot_weeks (run_id, week_start, leads, leads_with_identity, leads_with_driver,
                                               limbo_no_identity, limbo_no_driver, limbo_no_trips_14d, limbo_trips_no_claim, limbo_ok)
         VALUES ($1, $2, $3, 0, 0, $3, 0, 0, 0, 0)`,
        [lastRun, week, n],
      );
    }
  }
  const rows = await check(db, `p_run_id => ${lastRun}, p_record => false`);
  const byRule = new Map(rows.map((r) => [r.rule_code, r]));
  t.deepEqual([...byRule.keys()].sort(), ['IDENTITY_SHARE_BELOW', 'NO_IDENTITY_ABOVE', 'NO_IDENTITY_WEEK_OVER_WEEK']);
  t.is(byRule.get('NO_IDENTITY_ABOVE')!.current_value, 130);
  t.is(byRule.get('NO_IDENTITY_ABOVE')!.previous_value, 90, 'the snapshot before this one');
  t.regex(byRule.get('NO_IDENTITY_ABOVE')!.message, /\(90 at the previous snapshot, run #\d+\)/);
  const wow = byRule.get('NO_IDENTITY_WEEK_OVER_WEEK')!;
  t.deepEqual([wow.current_value, wow.previous_value, wow.change_pct], [30, 20, 50], 'the current week (40) is not compared');
  t.is(byRule.get('IDENTITY_SHARE_BELOW')!.current_value, 0);
  // the live check has no leads at all: nothing about limbo fires
  const live = await check(db, 'p_record => false');
  t.deepEqual(live.map((r) => r.rule_code), []);
});
