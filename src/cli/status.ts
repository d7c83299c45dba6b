// cabinet-leads status: the last runs and the current limbo counts, for a terminal.
import { parse, intFlag } from './args.js';
import type { Command } from './command.js';
import { withDatabase } from './context.js';

interface RunLine {
  id: string;
  status: string;
  trigger: string;
  dry_run: boolean;
  started_at: Date;
  duration_ms: string | null;
  error_message: string | null;
}

function pad(s: string, n: number): string {
  return s.length >= n ? s : s + ' '.repeat(n - s.length);
}

export const statusCommand: Command = {
  name: 'status',
  summary: 'show the last runs and the limbo counts',
  help: `Usage: cabinet-leads status [--runs N] [--json]

Prints the last runs of the pipeline (canon.ingestion_runs) and, when the limbo
view exists, the number of leads per limbo stage.

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
        `SELECT id, status, trigger, dry_run, started_at,
                round(extract(epoch FROM coalesce(completed_at, clock_timestamp()) - started_at) * 1000)::text AS duration_ms,
                error_message
         FROM canon.ingestion_runs
         WHERE source_tables::text LIKE '%module_ct_cabinet_leads%'
         ORDER BY created_at DESC LIMIT $1`,
        [n],
      );
      const hasView = await db.pool.query(`SELECT to_regclass('ops.v_cabinet_leads_limbo') IS NOT NULL AS ok`);
      let limbo: { limbo_stage: string; count: string }[] | null = null;
      if (hasView.rows[0]?.ok) {
        const res = await db.pool.query<{ limbo_stage: string; count: string }>(
          `SELECT limbo_stage, COUNT(*) AS count FROM ops.v_cabinet_leads_limbo GROUP BY limbo_stage ORDER BY count DESC`,
        );
        limbo = res.rows;
      }
      if (values.json) {
        console.log(JSON.stringify({ runs: runs.rows, limbo }));
        return 0;
      }
      console.log('Last runs');
      if (runs.rows.length === 0) console.log('  (no run yet: cabinet-leads reconcile)');
      for (const r of runs.rows) {
        const when = r.started_at.toISOString().replace('T', ' ').slice(0, 19);
        const err = r.error_message ? `  ${r.error_message.split('\n')[0]?.slice(0, 100)}` : '';
        console.log(`  #${pad(r.id, 6)} ${pad(r.status + (r.dry_run ? ' (dry)' : ''), 16)} ${when}Z  ${pad(r.trigger, 7)} ${pad((r.duration_ms ?? '?') + ' ms', 10)}${err}`);
      }
      console.log('');
      if (limbo === null) console.log('Limbo: view ops.v_cabinet_leads_limbo not installed yet');
      else {
        console.log('Limbo (leads per stage)');
        for (const l of limbo) console.log(`  ${pad(l.limbo_stage, 16)} ${l.count}`);
      }
      return 0;
    });
  },
};
