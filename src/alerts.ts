// Alerts, TypeScript side: ops.check_limbo_alerts decides (SQL); this module only reads
// its rows, words them for a terminal, logs them and posts them to a webhook. Used by
// the `alerts` and `status` commands, the report, and the worker after each run.
import type pg from 'pg';
import { inZone } from './local-time.js';
import type { Logger } from './logger.js';

export type Severity = 'WARNING' | 'CRITICAL';

/** One firing alert, as ops.check_limbo_alerts returns it (numbers as numbers, times ISO). */
export interface Alert {
  rule_code: string;
  severity: Severity;
  metric: string;
  measure: 'CURRENT' | 'WEEK_OVER_WEEK_PCT';
  comparison: string;
  threshold: number;
  current_value: number | null;
  previous_value: number | null;
  change_pct: number | null;
  subject: string;
  message: string;
  first_seen_at: string;
  last_seen_at: string;
  is_new: boolean;
  alert_id: number | null;
  /** when the webhook accepted this alert (null: never sent) */
  notified_at: string | null;
}

/** A pg pool or client, or graphile-worker's job helpers (their query() borrows a client per query). */
export interface Queryable {
  query<R extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
}

/**
 * The firing alerts. record = true (the check of the CLI and the worker) records them in
 * ops.alerts; false only reads (status, report), so read-only users can call it.
 */
export async function checkAlerts(db: Queryable, opts: { record: boolean }): Promise<Alert[]> {
  const res = await db.query<Alert>(
    `SELECT a.rule_code, a.severity, a.metric, a.measure, a.comparison,
            a.threshold::float8 AS threshold, a.current_value::float8 AS current_value,
            a.previous_value::float8 AS previous_value, a.change_pct::float8 AS change_pct,
            a.subject, a.message,
            to_char(a.first_seen_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS first_seen_at,
            to_char(a.last_seen_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS last_seen_at,
            a.is_new, a.alert_id::float8 AS alert_id,
            to_char(a.notified_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS notified_at
     FROM ops.check_limbo_alerts(p_record => $1) a`,
    [opts.record],
  );
  return res.rows;
}

/** One line in plain words: "CRITICAL LAST_RUN_FAILED: The last run (#12, ...) FAILED: ... (new)", times in timeZone. */
export function describeAlert(a: Alert, timeZone = 'UTC'): string {
  const since = a.is_new ? 'new' : `firing since ${inZone(a.first_seen_at, timeZone)} ${timeZone}`;
  return `${a.severity} ${a.rule_code}: ${a.message} (${since})`;
}

/** Log lines are events with fields; one warn line per firing alert. */
export function logAlerts(log: Logger, alerts: Alert[], fields: Record<string, unknown> = {}): void {
  for (const a of alerts) {
    log.warn(
      {
        ...fields,
        rule_code: a.rule_code,
        severity: a.severity,
        metric: a.metric,
        threshold: a.threshold,
        current_value: a.current_value,
        previous_value: a.previous_value,
        change_pct: a.change_pct,
        subject: a.subject || undefined,
        first_seen_at: a.first_seen_at,
        is_new: a.is_new,
        alert: a.message,
      },
      'limbo alert firing',
    );
  }
}

/**
 * What the webhook receives (Content-Type: application/json): every firing alert;
 * `new` counts those never sent before (their notified_at is null).
 */
export interface WebhookPayload {
  source: 'cabinet-leads';
  event: 'limbo_alerts';
  checked_at: string;
  run_id: number | null;
  run_status: string | null;
  firing: number;
  new: number;
  alerts: Alert[];
}

export interface WebhookOptions {
  /** per attempt, milliseconds (default 5000) */
  timeoutMs?: number;
  /** attempts in all, at least 1 (default 3) */
  attempts?: number;
  /** wait before the second attempt, doubled each time (default 1000 ms) */
  backoffMs?: number;
}

export interface WebhookResult {
  delivered: boolean;
  attempts: number;
  status?: number;
  error?: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * How a webhook URL is used: fetched without credentials (fetch refuses a URL with
 * user:password@), which go in an Authorization: Basic header instead, as curl sends
 * them; logged as scheme://host only, since the path and query often are the secret
 * (https://hooks.slack.com/services/T000/B000/XXXX).
 */
export interface WebhookTarget {
  /** the URL fetched: no credentials */
  url: string;
  /** what logs show: scheme://host[:port] */
  shown: string;
  headers: Record<string, string>;
  /** removes every secret part of the URL from a text (an error message) */
  redact(text: string): string;
}

export function webhookTarget(raw: string): WebhookTarget {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return { url: raw, shown: '(unparseable URL)', headers: {}, redact: () => '(error message withheld: it may quote the webhook URL)' };
  }
  const headers: Record<string, string> = {};
  const secrets = [raw, u.href];
  if (u.username !== '' || u.password !== '') {
    const user = decodeURIComponent(u.username);
    const password = decodeURIComponent(u.password);
    headers['authorization'] = `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
    secrets.push(u.username, u.password, user, password);
    u.username = '';
    u.password = '';
  }
  if (u.pathname !== '/') secrets.push(u.pathname, decodeURIComponent(u.pathname), ...u.pathname.split('/'));
  if (u.search !== '') secrets.push(u.search, ...[...u.searchParams.values()]);
  if (u.hash !== '') secrets.push(u.hash);
  const shown = `${u.protocol}//${u.host}`;
  // Longest first, so that a part inside a longer one does not leave the rest behind.
  const parts = [...new Set(secrets.filter((x) => x.length >= 3 && !shown.includes(x)))].sort((a, b) => b.length - a.length);
  return {
    url: u.href,
    shown,
    headers,
    redact: (text) => parts.reduce((t, part) => t.split(part).join('[redacted]'), text),
  };
}

/**
 * POSTs the payload as JSON with a timeout per attempt and bounded retries (network
 * errors, timeouts, 408, 429 and 5xx are retried; other statuses are final). Never
 * throws: the outcome is returned and logged, the webhook by scheme and host only.
 */
export async function postWebhook(url: string, payload: unknown, log: Logger, opts: WebhookOptions = {}): Promise<WebhookResult> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  const attempts = Math.max(1, Math.floor(opts.attempts ?? 3));
  const backoffMs = opts.backoffMs ?? 1000;
  const target = webhookTarget(url);
  let last: WebhookResult = { delivered: false, attempts: 0 };
  for (let attempt = 1; attempt <= attempts; attempt++) {
    if (attempt > 1) await sleep(backoffMs * 2 ** (attempt - 2));
    try {
      const res = await fetch(target.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'user-agent': 'cabinet-leads-alerts', ...target.headers },
        body: JSON.stringify(payload),
        signal: AbortSignal.timeout(timeoutMs),
        redirect: 'error',
      });
      await res.arrayBuffer().catch(() => undefined); // drain, free the socket
      if (res.ok) {
        log.info({ webhook: target.shown, status: res.status, attempt }, 'alert webhook delivered');
        return { delivered: true, attempts: attempt, status: res.status };
      }
      last = { delivered: false, attempts: attempt, status: res.status, error: `HTTP ${res.status}` };
      if (!(res.status === 408 || res.status === 429 || res.status >= 500)) break;
    } catch (err) {
      const e = err as Error;
      const reason = e.name === 'TimeoutError' ? `timed out after ${timeoutMs} ms` : (e.cause as Error | undefined)?.message ?? e.message;
      // Some fetch errors quote the URL: never let its secret parts through.
      last = { delivered: false, attempts: attempt, error: target.redact(reason) };
    }
    log.warn({ webhook: target.shown, attempt, attempts, status: last.status, error: last.error }, 'alert webhook attempt failed');
  }
  log.error({ webhook: target.shown, attempts: last.attempts, status: last.status, error: last.error }, 'alert webhook not delivered');
  return last;
}

export interface AfterRunOptions {
  webhookUrl: string | undefined;
  webhook?: WebhookOptions;
}

export interface AfterRunResult {
  alerts: Alert[];
  webhook: WebhookResult | null;
  error?: string;
}

/**
 * The worker's check after a run: records and logs the firing alerts (warn) and, when a
 * webhook URL is configured and some firing alert was never sent (notified_at null; step
 * 8 of the run may have opened it), posts every firing alert; the ones it accepted are
 * marked notified_at, so an alert is sent once per incident and a failed delivery is
 * tried again after the next run. Never throws: an alert problem must never fail the run.
 */
export async function checkAlertsAfterRun(
  db: Queryable,
  run: { id: number; status: string } | null,
  opts: AfterRunOptions,
  log: Logger,
): Promise<AfterRunResult> {
  let alerts: Alert[];
  try {
    alerts = await checkAlerts(db, { record: true });
  } catch (err) {
    const error = err instanceof Error ? err.message : String(err);
    log.error({ run_id: run?.id, error }, 'alert check failed');
    return { alerts: [], webhook: null, error };
  }
  logAlerts(log, alerts, { run_id: run?.id });
  if (alerts.length === 0) log.info({ run_id: run?.id, alerts_firing: 0 }, 'no limbo alert firing');
  const unsent = alerts.filter((a) => a.alert_id !== null && a.notified_at === null);
  if (!opts.webhookUrl || unsent.length === 0) return { alerts, webhook: null };
  const payload: WebhookPayload = {
    source: 'cabinet-leads',
    event: 'limbo_alerts',
    checked_at: new Date().toISOString(),
    run_id: run?.id ?? null,
    run_status: run?.status ?? null,
    firing: alerts.length,
    new: unsent.length,
    alerts,
  };
  const webhook = await postWebhook(opts.webhookUrl, payload, log, opts.webhook);
  if (webhook.delivered) {
    await db
      .query(`UPDATE ops.alerts SET notified_at = now() WHERE id = ANY($1::bigint[]) AND notified_at IS NULL`, [unsent.map((a) => a.alert_id)])
      .catch((err: unknown) => log.error({ error: String(err) }, 'cannot mark alerts as notified'));
  }
  return { alerts, webhook };
}
