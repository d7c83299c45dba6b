// cabinet-leads review: the leads a person must decide (ops.v_review_queue: AMBIGUOUS,
// CONFLICT, WEAK_MATCH_ONLY, SHARED_KEY, PROBABLE_MATCH; most money at stake first, then the oldest), each
// with its candidates side by side and the exact commands that decide it. Read only.
import { UsageError } from '../errors.js';
import { soles } from '../run-summary.js';
import { intFlag, parse } from './args.js';
import type { Command } from './command.js';
import { withDatabase } from './context.js';
import { columns, shellQuote } from './text.js';

const REASONS = ['AMBIGUOUS', 'CONFLICT', 'WEAK_MATCH_ONLY', 'SHARED_KEY', 'PROBABLE_MATCH'];

interface Candidate {
  driver_id: string;
  driver_name: string | null;
  park_id: string | null;
  in_target_park: boolean;
  phone: string | null;
  plate: string | null;
  hire_date: string | null;
  rule: string | null;
  score: number | null;
  name_similarity: number | null;
  why_not_linked: string;
  trips_in_window: number;
  amount_in_window: number;
}

interface QueueRow {
  review_rank: string;
  lead_source_pk: string;
  lead_date: string | null;
  age_days: number | null;
  lead_name: string | null;
  park_phone: string | null;
  asset_plate_number: string | null;
  reason_code: string;
  money_at_stake: string;
  candidates: Candidate[];
  attempts: number;
  total: string;
}

const dash = (v: unknown) => (v === null || v === undefined || v === '' ? '-' : String(v));

function leadBlock(r: QueueRow): string[] {
  const age = r.age_days === null ? '' : ` (${r.age_days} day${r.age_days === 1 ? '' : 's'} ago)`;
  const out = [
    `#${r.review_rank}  ${r.lead_source_pk}  ${r.reason_code}  at stake ${soles(Number(r.money_at_stake))}`,
    `    lead ${dash(r.lead_date)}${age}, ${dash(r.lead_name)}, phone ${dash(r.park_phone)}, plate ${dash(r.asset_plate_number)}`,
  ];
  const head = ['driver', 'name', 'park', 'phone', 'plate', 'hired', 'rule', 'score', 'name sim.', 'trips 14d', 'would claim', 'why not linked'];
  const rows = r.candidates.map((c) => [
    c.driver_id,
    dash(c.driver_name),
    c.in_target_park ? 'target' : c.park_id ? `other ${c.park_id.slice(0, 8)}` : '-',
    dash(c.phone),
    dash(c.plate),
    dash(c.hire_date),
    c.rule ? c.rule.split('_')[0]! : '-',
    dash(c.score),
    c.name_similarity === null ? '-' : Number(c.name_similarity).toFixed(2),
    String(c.trips_in_window),
    soles(Number(c.amount_in_window)),
    c.why_not_linked,
  ]);
  out.push(...columns([head, ...rows], '    '));
  const key = shellQuote(r.lead_source_pk);
  for (const [i, c] of r.candidates.entries()) {
    out.push(`    ${(i === 0 ? 'link it:' : '').padEnd(10)} cabinet-leads resolve-lead ${key} ${shellQuote(c.driver_id)} --note "why this driver"`);
  }
  out.push(`    ${(r.candidates.length ? 'or ignore:' : 'ignore:').padEnd(10)} cabinet-leads ignore-lead ${key} --note "why no driver"`);
  return out;
}

export const reviewCommand: Command = {
  name: 'review',
  summary: 'list the leads a person must decide, with candidates and the commands to decide them',
  help: `Usage: cabinet-leads review [--reason CODE] [--limit N] [--json]

Lists the leads that wait for a person: AMBIGUOUS (several drivers fit as well), CONFLICT
(rules point to different drivers), WEAK_MATCH_ONLY (the plate is known, the name differs),
SHARED_KEY (only an office phone), PROBABLE_MATCH (the probabilistic tier finds a probable
driver, not certain enough; the evidence in words under why not linked); the job never
decides these. A candidate that is not the lead's: cabinet-leads not-this-driver. Most money at stake first
(what the lead would claim with its best candidate's trips), then the oldest. Each lead
shows its candidates side by side (driver, name, park, phone, plate, hire date, rule,
score, name similarity, trips in the lead's 14-day window, why not linked) and the exact
resolve-lead / ignore-lead commands that decide it. Read only; the same rows in psql:
  SELECT * FROM ops.v_review_queue ORDER BY review_rank;

Options:
  --reason CODE  only this reason (${REASONS.join(', ')})
  --limit N      at most N leads (default 20)
  --json         print the rows as JSON
  -h, --help     show this help

Exit code 0 (also when leads are waiting: \`alerts\` is the check that fails).`,
  async run(argv) {
    const { values } = parse('review', argv, { reason: { type: 'string' }, limit: { type: 'string' }, json: { type: 'boolean' } });
    if (values.help) {
      console.log(this.help);
      return 0;
    }
    const limit = intFlag('review', 'limit', values.limit, 20, 1, 100_000);
    const reason = values.reason?.toUpperCase();
    if (reason !== undefined && !REASONS.includes(reason)) {
      throw new UsageError(`review: invalid --reason ${JSON.stringify(values.reason)}: expected one of ${REASONS.join(', ')}`);
    }
    return withDatabase(async ({ db }) => {
      const res = await db.pool.query<QueueRow>(
        `SELECT q.review_rank::text, q.lead_source_pk, q.lead_date::text, q.age_days, q.lead_name, q.park_phone, q.asset_plate_number,
                q.reason_code, q.money_at_stake::text, q.candidates, q.attempts, count(*) OVER ()::text AS total
         FROM ops.v_review_queue q
         WHERE $1::text IS NULL OR q.reason_code = $1
         ORDER BY q.review_rank
         LIMIT $2`,
        [reason ?? null, limit],
      );
      if (values.json) {
        console.log(JSON.stringify(res.rows.map(({ total: _total, ...r }) => r)));
        return 0;
      }
      const total = Number(res.rows[0]?.total ?? 0);
      if (total === 0) {
        console.log(`No lead waits for a person${reason ? ` (${reason})` : ''}.`);
        return 0;
      }
      console.log(
        `${total} lead${total === 1 ? ' waits' : 's wait'} for a person${reason ? ` (${reason})` : ''}; most money at stake first, then the oldest` +
          `${total > res.rows.length ? ` (first ${res.rows.length} shown: --limit)` : ''}.`,
      );
      console.log('Candidates as the matcher saw them at its last attempt; `cabinet-leads explain KEY` re-checks one now.');
      for (const r of res.rows) console.log(['', ...leadBlock(r)].join('\n'));
      return 0;
    });
  },
};
