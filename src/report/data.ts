// What the report shows, read from the database in one repeatable-read transaction so
// that every section describes the same moment. Every number comes from a view or a
// function of ops (the report adds nothing to the decisions): the funnel and the claims
// from ops.v_cabinet_14d_funnel_weekly, the history from ops.v_limbo_history, the oldest
// leads a person can act on from ops.oldest_actionable_leads and ops.limbo_stage_actions
// (rows of ops.v_cabinet_leads_limbo), the runs from canon.ingestion_runs and the alerts
// from ops.check_limbo_alerts(p_record => false).
import type pg from 'pg';
import { type Alert, checkAlerts } from '../alerts.js';

export const STAGES = ['NO_IDENTITY', 'NO_DRIVER', 'NO_TRIPS_14D', 'TRIPS_NO_CLAIM', 'OK'] as const;
export type Stage = (typeof STAGES)[number];

export interface FunnelRow {
  /** null on the totals row */
  week_start: string | null;
  leads: number;
  leads_with_identity: number;
  leads_with_driver: number;
  leads_with_trips_14d: number;
  reached_m1_14d: number;
  reached_m5_14d: number;
  reached_m25_14d: number;
  claims_expected: number;
  claims_expected_amount: number;
  claims_present: number;
  claims_present_amount: number;
  claims_missing: number;
  claims_missing_amount: number;
  claims_paid: number;
  claims_paid_amount: number;
  limbo_no_identity: number;
  limbo_no_driver: number;
  limbo_no_trips_14d: number;
  limbo_trips_no_claim: number;
  limbo_ok: number;
  pct_with_identity: number | null;
  pct_with_driver: number | null;
}

export interface HistoryRow {
  run_id: number;
  /** in the business time zone, YYYY-MM-DD HH24:MI */
  taken_at: string;
  /** the same instant as epoch milliseconds: the chart's time axis */
  taken_ms: number;
  leads: number;
  pct_with_identity: number | null;
  limbo_no_identity: number;
  limbo_no_driver: number;
  limbo_no_trips_14d: number;
  limbo_trips_no_claim: number;
  limbo_ok: number;
  limbo_no_identity_change: number | null;
  limbo_no_driver_change: number | null;
  limbo_no_trips_14d_change: number | null;
  limbo_trips_no_claim_change: number | null;
  limbo_ok_change: number | null;
}

export interface OldLead {
  limbo_stage: Stage;
  lead_id: number;
  lead_source_pk: string;
  lead_date: string;
  age_days: number;
  lead_name: string | null;
  reason_code: string | null;
  limbo_reason_detail: string;
  stage_total: number;
}

/** Per limbo stage: leads in it, and those a person can act on now (listed in the report). */
export interface StageActions {
  limbo_stage: Stage;
  leads: number;
  actionable: number;
}

export interface RunRow {
  id: number;
  status: string;
  dry_run: boolean;
  trigger: string;
  started_at: string;
  duration_ms: number | null;
  leads_evaluated: number | null;
  newly_linked: number | null;
  claims_generated: number | null;
  error_message: string | null;
}

export interface ReportData {
  generated_at: string;
  business_today: string;
  timezone: string;
  funnel_total: FunnelRow;
  weeks: FunnelRow[];
  history: HistoryRow[];
  history_days: number;
  oldest: OldLead[];
  stage_actions: StageActions[];
  runs: RunRow[];
  alerts: Alert[];
}

export interface ReportOptions {
  /** snapshots of the last N days in the history chart (default 90) */
  historyDays?: number;
  /** oldest leads shown per stage (default 10) */
  oldestPerStage?: number;
  /** last runs shown (default 20) */
  runs?: number;
}

const FUNNEL_COLUMNS = [
  'leads', 'leads_with_identity', 'leads_with_driver', 'leads_with_trips_14d', 'reached_m1_14d', 'reached_m5_14d',
  'reached_m25_14d', 'claims_expected', 'claims_expected_amount', 'claims_present', 'claims_present_amount',
  'claims_missing', 'claims_missing_amount', 'claims_paid', 'claims_paid_amount', 'limbo_no_identity',
  'limbo_no_driver', 'limbo_no_trips_14d', 'limbo_trips_no_claim', 'limbo_ok',
] as const;

export async function loadReportData(pool: pg.Pool, opts: ReportOptions = {}): Promise<ReportData> {
  const historyDays = opts.historyDays ?? 90;
  const client = await pool.connect();
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    // The limbo views are cheap to run and costly to JIT-compile.
    await client.query('SET LOCAL jit = off');
    // Every time of the report is in the business time zone (named once in its header).
    const head = await client.query<{ generated_at: string; business_today: string; timezone: string }>(
      `SELECT to_char(now() AT TIME ZONE canon.setting('business_timezone'), 'YYYY-MM-DD HH24:MI') AS generated_at,
              canon.business_today()::text AS business_today, canon.setting('business_timezone') AS timezone`,
    );
    // One pass over the weekly funnel: a row per lead week and the totals row (week_start NULL).
    const funnel = await client.query<FunnelRow>(
      `SELECT f.week_start::text AS week_start,
              ${FUNNEL_COLUMNS.map((c) => `coalesce(sum(f.${c}), 0)::float8 AS ${c}`).join(',\n              ')},
              round(100.0 * sum(f.leads_with_identity) / nullif(sum(f.leads), 0), 2)::float8 AS pct_with_identity,
              round(100.0 * sum(f.leads_with_driver) / nullif(sum(f.leads), 0), 2)::float8 AS pct_with_driver
       FROM ops.v_cabinet_14d_funnel_weekly f
       GROUP BY GROUPING SETS ((f.week_start), ())
       ORDER BY GROUPING(f.week_start) DESC, f.week_start`,
    );
    const history = await client.query<HistoryRow>(
      `SELECT h.run_id::float8 AS run_id,
              to_char(h.taken_at AT TIME ZONE canon.setting('business_timezone'), 'YYYY-MM-DD HH24:MI') AS taken_at,
              (extract(epoch FROM h.taken_at) * 1000)::float8 AS taken_ms,
              h.leads, h.pct_with_identity::float8 AS pct_with_identity,
              h.limbo_no_identity, h.limbo_no_driver, h.limbo_no_trips_14d, h.limbo_trips_no_claim, h.limbo_ok,
              h.limbo_no_identity_change, h.limbo_no_driver_change, h.limbo_no_trips_14d_change,
              h.limbo_trips_no_claim_change, h.limbo_ok_change
       FROM ops.v_limbo_history h
       WHERE h.taken_at >= now() - make_interval(days => $1)
       ORDER BY h.taken_at, h.run_id`,
      [historyDays],
    );
    // The oldest leads only where a person can act now (ops.oldest_actionable_leads: a lead
    // awaiting review or missing every key, a person without a driver link, a reached
    // milestone without its claim); the others are counted (ops.limbo_stage_actions): the
    // job retries them, or they wait for trips, or someone already decided.
    const oldest = await client.query<OldLead>(
      `SELECT o.limbo_stage, o.lead_id, o.lead_source_pk, o.lead_date::text AS lead_date, o.age_days, o.lead_name,
              o.reason_code, o.limbo_reason_detail, o.stage_total::float8 AS stage_total
       FROM ops.oldest_actionable_leads($1) o`,
      [opts.oldestPerStage ?? 10],
    );
    const actions = await client.query<StageActions>(
      `SELECT a.limbo_stage, a.leads::float8 AS leads, a.actionable::float8 AS actionable FROM ops.limbo_stage_actions() a`,
    );
    const runs = await client.query<RunRow>(
      `SELECT r.id::float8 AS id, r.status, r.dry_run, r.trigger,
              to_char(r.started_at AT TIME ZONE canon.setting('business_timezone'), 'YYYY-MM-DD HH24:MI:SS') AS started_at,
              round(extract(epoch FROM coalesce(r.completed_at, clock_timestamp()) - r.started_at) * 1000)::float8 AS duration_ms,
              (r.stats #>> '{match,leads_evaluated}')::float8 AS leads_evaluated,
              (r.stats #>> '{match,newly_linked}')::float8 AS newly_linked,
              (r.stats #>> '{claims,claims_generated}')::float8 AS claims_generated,
              r.error_message
       FROM canon.ingestion_runs r
       WHERE r.source_tables::text LIKE '%module_ct_cabinet_leads%'
       ORDER BY r.created_at DESC, r.id DESC
       LIMIT $1`,
      [opts.runs ?? 20],
    );
    const alerts = await checkAlerts(client, { record: false });
    await client.query('COMMIT');
    const [total, ...weeks] = funnel.rows;
    const h = head.rows[0]!;
    return {
      generated_at: h.generated_at,
      business_today: h.business_today,
      timezone: h.timezone,
      funnel_total: total ?? emptyFunnel(),
      weeks,
      history: history.rows,
      history_days: historyDays,
      oldest: oldest.rows,
      stage_actions: actions.rows,
      runs: runs.rows,
      alerts,
    };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}

function emptyFunnel(): FunnelRow {
  const row = { week_start: null, pct_with_identity: null, pct_with_driver: null } as Partial<FunnelRow>;
  for (const c of FUNNEL_COLUMNS) (row as Record<string, number>)[c] = 0;
  return row as FunnelRow;
}
