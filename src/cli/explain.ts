// cabinet-leads explain KEY: ops.explain_lead as text a person reads, the sentence first:
// the lead, its keys, its state (link or unmatched row), whether the runs still evaluate
// it, the decision the matcher would take now and every candidate with why. The SQL
// function decides everything; --json prints its result as is.
import { positionalsOf, RefusedError } from './manual.js';
import { parse } from './args.js';
import type { Command } from './command.js';
import { withDatabase } from './context.js';
import { columns, inZone } from './text.js';

interface Explained {
  lead_source_pk: string;
  lead_rows: number[];
  driver_index_refreshed_at: string | null;
  keys: { lead_date: string | null; lead_name: string | null; phone_norm: string | null; plate_norm: string | null; license_norm: string | null; name_norm: string | null } | null;
  link: { person_key: string; match_rule: string; match_score: number; linked_at: string; run_id: number | null; driver_id: string | null } | null;
  unmatched: { reason_code: string; status: string; attempts: number; first_attempt_at: string; last_attempt_at: string; note: string | null } | null;
  scope: { days_back: number; scope_from: string; as_of_run: number | null; in_scope: boolean | null };
  decision_now: { decision: string; driver_id: string | null; match_rule: string | null; match_score: number | null };
  candidates: {
    driver_id: string;
    driver_name: string | null;
    park_id: string | null;
    in_target_park: boolean;
    phone: string | null;
    plate: string | null;
    rule: string;
    score: number;
    name_similarity: number | null;
    hire_date: string | null;
    hire_in_window: boolean;
    kept: boolean;
    reject_reason: string | null;
  }[];
  explanation: string;
}

const dash = (v: unknown) => (v === null || v === undefined || v === '' ? '-' : String(v));

export function explainText(e: Explained, timeZone: string): string {
  const k = e.keys;
  const lines = [`${e.lead_source_pk}: ${e.explanation}`, ''];
  const rows: string[][] = [];
  rows.push(['lead', `${dash(k?.lead_date)}, ${dash(k?.lead_name)} (lead row${e.lead_rows.length === 1 ? '' : 's'} ${e.lead_rows.join(', ')})`]);
  rows.push(['keys', `phone ${dash(k?.phone_norm)}, plate ${dash(k?.plate_norm)}, licence ${dash(k?.license_norm)}, name ${dash(k?.name_norm)}`]);
  if (e.link) {
    rows.push(['state', `linked to driver ${dash(e.link.driver_id)} by ${e.link.match_rule} (score ${e.link.match_score}) at ${inZone(e.link.linked_at, timeZone)}${e.link.run_id ? `, run ${e.link.run_id}` : ''}`]);
  } else if (e.unmatched) {
    const u = e.unmatched;
    rows.push(['state', `${u.reason_code}, ${u.status}, ${u.attempts} attempt${u.attempts === 1 ? '' : 's'}, last at ${inZone(u.last_attempt_at, timeZone)}${u.note ? `; note: ${u.note}` : ''}`]);
  } else rows.push(['state', 'not evaluated yet']);
  const s = e.scope;
  rows.push(['scope', `the runs evaluate lead dates from ${s.scope_from} (days_back ${s.days_back}${s.as_of_run ? ` of run ${s.as_of_run}` : ', the default'}): ${s.in_scope === null ? 'the lead has no date' : s.in_scope ? 'in scope' : 'out of scope, not retried'}`]);
  const d = e.decision_now;
  rows.push(['now', `${d.decision}${d.driver_id ? ` driver ${d.driver_id} by ${d.match_rule} (score ${d.match_score})` : ''}`]);
  lines.push(...columns(rows));
  lines.push('');
  if (e.candidates.length === 0) lines.push('No candidate: no driver has its phone, plate or licence.');
  else {
    lines.push(`Candidates (driver index as of ${inZone(e.driver_index_refreshed_at, timeZone)}, ${timeZone}):`);
    const head = ['driver', 'name', 'park', 'phone', 'plate', 'hired', 'rule', 'score', 'name sim.', 'kept', 'why not'];
    lines.push(
      ...columns(
        [
          head,
          ...e.candidates.map((c) => [
            c.driver_id,
            dash(c.driver_name),
            c.in_target_park ? 'target' : c.park_id ? `other ${c.park_id.slice(0, 8)}` : '-',
            dash(c.phone),
            dash(c.plate),
            `${dash(c.hire_date)}${c.hire_date && !c.hire_in_window ? ' (outside window)' : ''}`,
            c.rule,
            String(c.score),
            c.name_similarity === null ? '-' : Number(c.name_similarity).toFixed(2),
            c.kept ? 'yes' : 'no',
            dash(c.reject_reason),
          ]),
        ],
        '  ',
      ),
    );
  }
  return lines.join('\n');
}

export const explainCommand: Command = {
  name: 'explain',
  summary: 'explain why a lead is (not) matched, the sentence first',
  help: `Usage: cabinet-leads explain LEAD_KEY [--json]

Prints ops.explain_lead(LEAD_KEY) as text: one sentence saying why the lead is or is not
matched and what to do, then its keys, its state (link or unmatched row), whether the
runs still evaluate it (days_back), the decision the matcher would take now and every
candidate driver with rule, score, name similarity and why it was kept or not. Times in
the business time zone (canon.settings). Changes nothing but the lead's matching keys.

Options:
  --json      print the function's result as JSON
  -h, --help  show this help

Exit codes: 0 explained, 1 unknown lead key, 2 usage error.`,
  async run(argv) {
    const { values, positionals } = parse('explain', argv, { json: { type: 'boolean' } }, true);
    if (values.help) {
      console.log(this.help);
      return 0;
    }
    const [key] = positionalsOf('explain', positionals, ['LEAD_KEY']);
    return withDatabase(async ({ db }) => {
      let e: Explained;
      let timeZone: string;
      try {
        const res = await db.pool.query<{ e: Explained; tz: string }>(`SELECT ops.explain_lead($1) AS e, canon.setting('business_timezone') AS tz`, [key]);
        e = res.rows[0]!.e;
        timeZone = res.rows[0]!.tz;
      } catch (err) {
        if ((err as { code?: string }).code === 'P0002') throw new RefusedError(`explain: ${(err as Error).message}`);
        throw err;
      }
      console.log(values.json ? JSON.stringify(e) : explainText(e, timeZone));
      return 0;
    });
  },
};
