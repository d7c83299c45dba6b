// cabinet-leads reconcile --preview: ops.preview_links in a READ ONLY transaction, worded
// for a person (a count per kind, then the leads) or printed as JSON. The SQL function
// decides every row; this file only counts and words them.
import type pg from 'pg';
import type { Logger } from '../logger.js';
import { columns, inZone } from './text.js';

export const PREVIEW_KINDS = ['add', 'remove', 'change'] as const;
export type PreviewKind = (typeof PREVIEW_KINDS)[number];

/** One row of ops.preview_links (scores as numbers). */
export interface PreviewRow {
  lead_id: number;
  lead_source_pk: string;
  lead_date: string;
  change_kind: PreviewKind;
  a_run_would_apply: boolean;
  stored_state: 'LINKED' | 'OPEN' | 'NOT_EVALUATED';
  stored_reason_code: string | null;
  stored_driver_id: string | null;
  stored_match_rule: string | null;
  stored_match_score: number | null;
  stored_confidence_level: string | null;
  stored_fs_version: number | null;
  proposed_driver_id: string | null;
  proposed_match_rule: string | null;
  proposed_match_score: number | null;
  proposed_confidence_level: string | null;
  proposed_fs_version: number | null;
  proposed_reason_code: string | null;
  settled_claims: string | null;
  why: string;
}

export interface Preview {
  days_back: number;
  scope_from: string;
  only_limbo: boolean;
  /** the last run that keyed the leads and drivers the preview decides on (none: no run yet) */
  as_of_run: { id: number; completed_at: string; days_back: number } | null;
  timezone: string;
  summary: Record<PreviewKind, { leads: number; a_run_would_apply: number }>;
  changes: PreviewRow[];
}

/** The preview, read in one READ ONLY transaction: nothing can be written, not even by mistake. */
export async function readPreview(
  client: pg.ClientBase,
  opts: { daysBack: number; onlyLimbo: boolean; timeoutSeconds: number },
  log: Logger,
): Promise<Preview> {
  const started = Date.now();
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    await client.query(`SELECT set_config('statement_timeout', $1, true)`, [`${opts.timeoutSeconds}s`]);
    const head = await client.query<{ scope_from: string; tz: string; run_id: string | null; completed_at: Date | null; runs_days_back: number }>(
      `SELECT (canon.business_today() - $1::integer)::text AS scope_from, canon.setting('business_timezone') AS tz,
              s.run_id::text, r.completed_at, s.days_back AS runs_days_back
       FROM canon.last_run_scope() s
       LEFT JOIN canon.ingestion_runs r ON r.id = s.run_id`,
      [opts.daysBack],
    );
    const rows = await client.query<PreviewRow>(
      `SELECT p.lead_id, p.lead_source_pk, p.lead_date::text, p.change_kind, p.a_run_would_apply,
              p.stored_state, p.stored_reason_code, p.stored_driver_id, p.stored_match_rule,
              p.stored_match_score::float8 AS stored_match_score, p.stored_confidence_level, p.stored_fs_version,
              p.proposed_driver_id, p.proposed_match_rule, p.proposed_match_score::float8 AS proposed_match_score,
              p.proposed_confidence_level, p.proposed_fs_version, p.proposed_reason_code, p.settled_claims, p.why
       FROM ops.preview_links(p_days_back => $1, p_only_limbo => $2) p`,
      [opts.daysBack, opts.onlyLimbo],
    );
    const h = head.rows[0]!;
    const summary = Object.fromEntries(PREVIEW_KINDS.map((k) => [k, { leads: 0, a_run_would_apply: 0 }])) as Preview['summary'];
    for (const r of rows.rows) {
      summary[r.change_kind].leads++;
      if (r.a_run_would_apply) summary[r.change_kind].a_run_would_apply++;
    }
    log.info(
      { event: 'preview', days_back: opts.daysBack, only_limbo: opts.onlyLimbo, ...Object.fromEntries(PREVIEW_KINDS.map((k) => [k, summary[k].leads])), duration_ms: Date.now() - started },
      'reconcile preview',
    );
    return {
      days_back: opts.daysBack,
      scope_from: h.scope_from,
      only_limbo: opts.onlyLimbo,
      as_of_run: h.run_id === null ? null : { id: Number(h.run_id), completed_at: h.completed_at!.toISOString(), days_back: h.runs_days_back },
      timezone: h.tz,
      summary,
      changes: rows.rows,
    };
  } finally {
    await client.query('ROLLBACK').catch(() => {});
  }
}

/** The rows shown in a terminal; --json prints them all. */
export const PREVIEW_ROWS_SHOWN = 50;

// (a rule by its number, R3, as `review` shows it; the why spells it out)
const link = (driver: string | null, rule: string | null, score: number | null) =>
  `${driver ?? 'no driver'} ${rule ? rule.split('_')[0] : ''} ${score === null ? '' : score.toFixed(2)}`.trim();

function storedCell(r: PreviewRow): string {
  if (r.stored_state === 'LINKED') return link(r.stored_driver_id, r.stored_match_rule, r.stored_match_score);
  return r.stored_state === 'OPEN' ? `OPEN ${r.stored_reason_code}` : 'not evaluated';
}

function proposedCell(r: PreviewRow): string {
  return r.proposed_match_rule === null ? `${r.proposed_reason_code} (no link)` : link(r.proposed_driver_id, r.proposed_match_rule, r.proposed_match_score);
}

export function previewText(p: Preview): string {
  const int = (n: number) => n.toLocaleString('en-US');
  const scope = `leads dated from ${p.scope_from} (days-back ${p.days_back}${p.only_limbo ? ', only-limbo' : ''})`;
  const lines: string[] = [];
  lines.push(
    p.as_of_run
      ? `Leads and drivers as run ${p.as_of_run.id} keyed them (${inZone(p.as_of_run.completed_at, p.timezone)}, ${p.timezone}); a run refreshes both first.` +
          (p.as_of_run.days_back !== p.days_back ? ` That run's days-back was ${p.as_of_run.days_back}.` : '')
      : 'No run has keyed the leads yet: the preview sees none until a first run (cabinet-leads reconcile --limit 0 keys them without deciding any).',
  );
  if (p.changes.length === 0) {
    lines.push(`No link would change: the current decisions agree with what is stored for the ${scope}. Nothing was written.`);
    return lines.join('\n');
  }
  lines.push(`Preview of the current decisions on the ${scope}, against what is stored; nothing was written.`);
  lines.push(
    ...columns([
      ['', 'leads', 'a run applies'],
      ...PREVIEW_KINDS.map((k) => [k, int(p.summary[k].leads), int(p.summary[k].a_run_would_apply)]),
    ], '  '),
  );
  lines.push('A run adds links to the leads it evaluates and never removes or changes a stored one.');
  lines.push('');
  const shown = p.changes.slice(0, PREVIEW_ROWS_SHOWN);
  lines.push(
    ...columns([
      ['lead', 'date', 'kind', 'run applies', 'stored', 'proposed', 'why'],
      ...shown.map((r) => [r.lead_source_pk, r.lead_date, r.change_kind, r.a_run_would_apply ? 'yes' : 'no', storedCell(r), proposedCell(r), r.why]),
    ]),
  );
  if (p.changes.length > shown.length) {
    lines.push(`(first ${shown.length} of ${int(p.changes.length)} shown: --json prints them all; in psql: SELECT * FROM ops.preview_links(${p.days_back}))`);
  }
  return lines.join('\n');
}
