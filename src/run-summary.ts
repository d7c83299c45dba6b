// What a person reads about one pipeline run, from its stats (the procedure decides, this
// file only words it): one line for the terminal (`cabinet-leads reconcile`) and the same
// figures as log fields (the worker's and the CLI's 'pipeline run completed' event).
import type { RunRow } from './pipeline.js';

export const STAGES = ['NO_IDENTITY', 'NO_DRIVER', 'NO_TRIPS_14D', 'TRIPS_NO_CLAIM', 'OK'] as const;

export interface RunFigures {
  run_id: number;
  status: string;
  dry_run: boolean;
  duration_ms: number | undefined;
  leads_evaluated: number;
  linked: number;
  linked_by_rule: Record<string, number>;
  unmatched: number;
  unmatched_by_reason: Record<string, number>;
  claims_generated: number;
  claims_amount: number;
  /** stages whose count changed: [before, after] */
  limbo_change: Record<string, [number, number]>;
  limbo_after: Record<string, number>;
}

type Stats = Record<string, unknown>;

function obj(v: unknown): Stats {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Stats) : {};
}

function num(v: unknown): number {
  const n = typeof v === 'number' ? v : typeof v === 'string' ? Number(v) : NaN;
  return Number.isFinite(n) ? n : 0;
}

function counts(v: unknown): Record<string, number> {
  return Object.fromEntries(Object.entries(obj(v)).map(([k, n]) => [k, num(n)]));
}

/** The figures of a run, as log fields. */
export function runFigures(run: RunRow): RunFigures {
  const s = run.stats ?? {};
  const match = obj(s['match']);
  const claims = obj(s['claims']);
  const before = counts(s['limbo_before']);
  const after = counts(s['limbo_after']);
  const change: Record<string, [number, number]> = {};
  for (const stage of STAGES) {
    if (!(stage in after)) continue;
    const b = before[stage] ?? 0;
    const a = after[stage]!;
    if (a !== b) change[stage] = [b, a];
  }
  const total = obj(s['durations_ms'])['total'];
  return {
    run_id: run.id,
    status: run.status,
    dry_run: run.dry_run,
    duration_ms: typeof total === 'number' ? total : undefined,
    leads_evaluated: num(match['leads_evaluated']),
    linked: num(match['newly_linked']),
    linked_by_rule: counts(match['newly_linked_by_rule']),
    unmatched: num(match['unmatched']),
    unmatched_by_reason: counts(match['unmatched_by_reason']),
    claims_generated: num(claims['claims_generated']),
    claims_amount: num(claims['claims_generated_amount']),
    limbo_change: change,
    limbo_after: after,
  };
}

const int = (n: number) => Math.round(n).toLocaleString('en-US');

/** S/ 22,270.00 */
export function soles(n: number): string {
  return `S/ ${n.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
}

/** 59 ms, 0.8 s, 22.9 s, 3 min 05 s (? when unknown) */
export function duration(ms: number): string {
  if (!Number.isFinite(ms)) return '?';
  if (ms < 100) return `${Math.round(ms)} ms`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
}

/** R1_PHONE_EXACT -> R1 */
function ruleShort(rule: string): string {
  return rule.split('_')[0] ?? rule;
}

function breakdown(byKey: Record<string, number>, short: (k: string) => string = (k) => k): string {
  const parts = Object.entries(byKey)
    .filter(([, n]) => n > 0)
    .sort(([a, x], [b, y]) => y - x || a.localeCompare(b))
    .map(([k, n]) => `${short(k)} ${int(n)}`);
  return parts.length ? ` (${parts.join(', ')})` : '';
}

/**
 * run 12 COMPLETED in 0.8 s: 1,981 leads evaluated, 1,214 linked (R1 900, R3 314),
 * 767 unmatched (NO_CANDIDATES 600, ...), 615 claims S/ 22,270.00, NO_IDENTITY 1,984 → 1,215, OK 0 → 336
 */
export function runLine(run: RunRow): string {
  const f = runFigures(run);
  const dry = run.dry_run ? ' (dry run: nothing written)' : '';
  const head = `run ${run.id} ${run.status}${dry}${f.duration_ms !== undefined ? ` in ${duration(f.duration_ms)}` : ''}`;
  if (run.status === 'FAILED') return `${head}: ${(run.error_message ?? 'unknown error').split('\n')[0]}`;
  if (run.status === 'SKIPPED') return `${head}: another run holds the lock`;
  if (run.status !== 'COMPLETED') return head;
  const limbo = Object.entries(f.limbo_change).map(([stage, [b, a]]) => `${stage} ${int(b)} → ${int(a)}`);
  return (
    `${head}: ${int(f.leads_evaluated)} leads evaluated, ` +
    `${int(f.linked)} linked${breakdown(f.linked_by_rule, ruleShort)}, ` +
    `${int(f.unmatched)} unmatched${breakdown(f.unmatched_by_reason)}, ` +
    `${int(f.claims_generated)} claims ${soles(f.claims_amount)}, ` +
    (limbo.length ? limbo.join(', ') : 'limbo unchanged')
  );
}
