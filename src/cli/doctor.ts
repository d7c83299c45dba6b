// cabinet-leads doctor: checks every invariant of the spec (ops.check_invariants) and
// exits 1 when one is violated, so that cron or CI can alarm on it.
import { oneLine } from '../errors.js';
import { isLockTimeout, lockTimeoutHint } from '../locks.js';
import { parse } from './args.js';
import type { Command } from './command.js';
import { withDatabase } from './context.js';

/** A check that could not run is exit code 2, never 1 (1 means "an invariant is violated"). */
class DoctorError extends Error {
  readonly exitCode = 2;
  override name = 'DoctorError';
}

interface Check {
  invariant: string;
  violations: string;
  examples: string[];
  description: string;
}

export const doctorCommand: Command = {
  name: 'doctor',
  summary: 'check the invariants (exit 1 when one is violated)',
  help: `Usage: cabinet-leads doctor [--repair] [--json]

Runs ops.check_invariants(): no orphan person, no lead both linked and OPEN-unmatched,
no driver linked twice, no run stuck RUNNING, one limbo row per lead, settled claims
guarded and unchanged, lead state counters equal to the stored state, settings valid
and guarded, no lead key stored with blanks at its ends, every cache (lead keys,
lead state, its marks, the never-evaluated list, retry marks, driver index) equal to its
live definition, no session holding the job lock and no graphile-worker job or queue
locked for longer than a run can last (setting job_lock_held_max_minutes; the example
names the holder and the statement that frees it). docs/operations.md says what to do
about each violation.

Options:
  --repair    first repair the caches that drifted (ops.repair_caches(): rewrites only
              what drifted; waits for a running pipeline run), then check
  --json      print the checks as JSON
  -h, --help  show this help

Exit codes: 0 every invariant holds, 1 some invariant is violated, 2 error.`,
  async run(argv) {
    const { values } = parse('doctor', argv, { json: { type: 'boolean' }, repair: { type: 'boolean' } });
    if (values.help) {
      console.log(this.help);
      return 0;
    }
    return withDatabase(async ({ db }) => {
      let repaired: Record<string, unknown> | undefined;
      let rows: Check[];
      try {
        if (values.repair) {
          const { rows: [r] } = await db.pool.query<{ r: Record<string, unknown> }>(`SELECT ops.repair_caches() AS r`);
          repaired = r!.r;
          if (!values.json) console.log(`repaired: ${JSON.stringify(repaired)}`);
        }
        ({ rows } = await db.pool.query<Check>(`SELECT * FROM ops.check_invariants()`));
      } catch (err) {
        // e.g. a table locked by another session for longer than the lock timeout
        const hint = isLockTimeout(err) ? `; ${await lockTimeoutHint(db.pool)}` : '';
        throw new DoctorError(`doctor: the ${values.repair ? 'repair or ' : ''}check failed: ${oneLine(err)}${hint}`);
      }
      const broken = rows.filter((r) => Number(r.violations) > 0);
      if (values.json) {
        const checks = rows.map((r) => ({ ...r, violations: Number(r.violations) }));
        console.log(JSON.stringify({ ok: broken.length === 0, checks, ...(repaired ? { repaired } : {}) }));
      } else {
        for (const r of rows) {
          const n = Number(r.violations);
          console.log(`${n === 0 ? 'ok  ' : 'FAIL'} ${r.invariant.padEnd(26)} ${n === 0 ? '' : `${n} violation(s), e.g. ${r.examples.slice(0, 3).join(', ')}: `}${r.description}`);
        }
        console.log(broken.length === 0 ? 'all invariants hold' : `${broken.length} invariant(s) violated`);
      }
      return broken.length === 0 ? 0 : 1;
    });
  },
};
