// cabinet-leads status: for a terminal, the last runs, the current limbo counts with the
// change since the previous snapshot, and the firing alerts (read only: status records
// nothing; `cabinet-leads alerts` is the check that records).
import { type Alert, checkAlerts, describeAlert } from '../alerts.js';
import { duration } from '../run-summary.js';
import { parse, intFlag } from './args.js';
import type { Command } from './command.js';
import { withDatabase } from './context.js';

interface RunLine {
  id: string;
  job_name: string;
  status: string;
  trigger: string;
  dry_run: boolean;
  started_at: Date;
  duration_ms: string | null;
  error_message: string | null;
  /** started_at in the business time zone, YYYY-MM-DD HH24:MI:SS */
  started_local: string;
}

interface LimboLine {
  limbo_stage: string;
  count: number;
  /** the count in the snapshot compared against (null when there is none) */
  previous: number | null;
  change: number | null;
}

/** A session holding the job lock (ops.job_lock_holders). */
export interface LockHolder {
  pid: number | null;
  usename: string | null;
  application_name: string | null;
  state: string | null;
  run_id: string | null;
  held_since: string | null;
  held_for: string | null;
  too_long: boolean | null;
}

/** The sessions holding the job lock, with the threshold they are judged by. */
export async function jobLockHolders(db: { query: (sql: string) => Promise<{ rows: LockHolder[] }> }): Promise<LockHolder[]> {
  const { rows } = await db.query(
    `SELECT h.pid, h.usename, h.application_name, h.state, h.run_id::text AS run_id,
            to_char(h.held_since AT TIME ZONE canon.setting('business_timezone'), 'YYYY-MM-DD HH24:MI:SS') AS held_since,
            h.held_for::text AS held_for, h.too_long
     FROM ops.job_lock_holders() h`,
  );
  return rows;
}

/** "pid 4242 (psql, user alice, idle) since 2026-12-02 05:00:00 (01:02:03), in the business time zone". */
export function describeHolder(h: LockHolder): string {
  const who = [h.application_name || undefined, h.usename ? `user ${h.usename}` : undefined, h.state ?? undefined, h.run_id ? `run #${h.run_id}` : undefined]
    .filter((x) => x !== undefined)
    .join(', ');
  return `pid ${h.pid ?? '?'}${who ? ` (${who})` : ''} since ${h.held_since ? h.held_since : 'an unknown time'}${h.held_for ? ` (${h.held_for})` : ''}`;
}

interface Baseline {
  run_id: number;
  taken_at: string;
}

function pad(s: string, n: number): string {
  return s.length >= n ? s : s + ' '.repeat(n - s.length);
}

/** The job as people call it: the pipeline run, an import, a repair. */
export function jobLabel(jobName: string): string {
  return ({ reconcile_cabinet_leads_pipeline: 'reconcile', import_cabinet_leads: 'import', repair_lead_keys: 'repair' } as Record<string, string>)[jobName] ?? jobName;
}

function signed(n: number | null): string {
  if (n === null) return '';
  return n > 0 ? `+${n}` : n < 0 ? `${n}` : '±0';
}

export const statusCommand: Command = {
  name: 'status',
  summary: 'show the last runs, the limbo counts and the firing alerts',
  help: `Usage: cabinet-leads status [--runs N] [--json]

Prints the last runs of every job on the cabinet leads (canon.ingestion_runs: pipeline
runs, imports, repairs; the job of each is shown), who holds the job lock now
(ops.job_lock_holders; named with the step that frees it when held longer than a run
can last, setting job_lock_held_max_minutes: every run is SKIPPED meanwhile), the
number of leads per limbo stage now with the change since the previous snapshot (the
snapshot taken before the latest one, i.e. what the last run and anything since
changed), and the alerts that fire now (ops.check_limbo_alerts, read only: nothing is
recorded). Every time is in the business time zone (canon.settings business_timezone),
named in the first line.

Options:
  --runs N    how many runs to show (default 10)
  --json      print JSON instead of text
  -h, --help  show this help`,
  async run(argv) {
    const { values } = parse('status', argv, { runs: { type: 'string' }, json: { type: 'boolean' } });
    if (values.help) {
      console.log(this.help);
      return 0;
    }
    const n = intFlag('status', 'runs', values.runs, 10, 1, 1000);
    return withDatabase(async ({ db }) => {
      const runs = await db.pool.query<RunLine>(
        `SELECT id, job_name, status, trigger, dry_run, started_at,
                to_char(started_at AT TIME ZONE canon.setting('business_timezone'), 'YYYY-MM-DD HH24:MI:SS') AS started_local,
                round(extract(epoch FROM coalesce(completed_at, clock_timestamp()) - started_at) * 1000)::text AS duration_ms,
                error_message
         FROM canon.ingestion_runs
         WHERE source_tables::text LIKE '%module_ct_cabinet_leads%'
         ORDER BY created_at DESC LIMIT $1`,
        [n],
      );
      // Live counts and the previous snapshot's, in one pass over the limbo view.
      const metrics = await db.pool.query<{ metric: string; current_value: number; previous_value: number | null; previous_run_id: string | null; previous_taken_at: string | null }>(
        `SELECT m.metric, m.current_value::float8 AS current_value, m.previous_value::float8 AS previous_value,
                m.previous_run_id::text AS previous_run_id,
                to_char((m.context->>'previous_taken_at')::timestamptz AT TIME ZONE canon.setting('business_timezone'),
                        'YYYY-MM-DD HH24:MI') AS previous_taken_at
         FROM ops.limbo_alert_metrics() m
         WHERE m.metric IN ('NO_IDENTITY', 'NO_DRIVER', 'NO_TRIPS_14D', 'TRIPS_NO_CLAIM', 'OK')
         ORDER BY m.current_value DESC, m.metric`,
      );
      const limbo: LimboLine[] = metrics.rows.map((m) => ({
        limbo_stage: m.metric,
        count: m.current_value,
        previous: m.previous_value,
        change: m.previous_value === null ? null : m.current_value - m.previous_value,
      }));
      const first = metrics.rows[0];
      const baseline: Baseline | null =
        first?.previous_run_id != null && first.previous_taken_at != null ? { run_id: Number(first.previous_run_id), taken_at: first.previous_taken_at } : null;
      const alerts: Alert[] = await checkAlerts(db.pool, { record: false });
      const timeZone = (await db.pool.query<{ tz: string }>(`SELECT canon.setting('business_timezone') AS tz`)).rows[0]!.tz;
      const holders = await jobLockHolders(db.pool);
      if (values.json) {
        console.log(JSON.stringify({ timezone: timeZone, runs: runs.rows, job_lock: holders, limbo, previous_snapshot: baseline, alerts }));
        return 0;
      }
      console.log(`Times in ${timeZone} (the business time zone).`);
      console.log('');
      console.log('Last runs (every job: reconcile = a pipeline run; import and repair are not)');
      if (runs.rows.length === 0) console.log('  (no run yet: cabinet-leads reconcile)');
      for (const r of runs.rows) {
        const err = r.error_message ? `  ${r.error_message.split('\n')[0]?.slice(0, 100)}` : '';
        console.log(
          `  #${pad(r.id, 6)} ${pad(jobLabel(r.job_name), 10)} ${pad(r.status + (r.dry_run ? ' (dry)' : ''), 16)} ${r.started_local}  ${pad(r.trigger, 7)} ${pad(duration(Number(r.duration_ms ?? NaN)), 10)}${err}`,
        );
      }
      for (const h of holders) {
        if (h.too_long) {
          console.log(`Job lock: HELD TOO LONG by ${describeHolder(h)}: longer than a run can last, every run is SKIPPED.`);
          console.log(`  Free it: SELECT pg_terminate_backend(${h.pid ?? '<pid>'});  (docs/operations.md, "The job lock is held")`);
        } else {
          console.log(`Job lock: held by ${describeHolder(h)}`);
        }
      }
      console.log('');
      console.log(
        baseline
          ? `Limbo (leads per stage now; change since the snapshot of run #${baseline.run_id}, ${baseline.taken_at})`
          : 'Limbo (leads per stage now; no earlier snapshot to compare with yet)',
      );
      for (const l of limbo) console.log(`  ${pad(l.limbo_stage, 16)} ${pad(String(l.count), 8)} ${signed(l.change)}`);
      console.log('');
      if (alerts.length === 0) console.log('Alerts: none fires');
      else {
        console.log(`Alerts: ${alerts.length} firing`);
        for (const a of alerts) console.log(`  ${describeAlert(a, timeZone)}`);
      }
      return 0;
    });
  },
};
