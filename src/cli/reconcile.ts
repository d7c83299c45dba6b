// cabinet-leads reconcile: one pipeline run, for cron and Windows Task Scheduler. Same
// code path as the worker task. Exit 0 completed or skipped, 1 failed, 2 usage/config.
import { checkAlertsAfterRun } from '../alerts.js';
import { LOCK_NOT_AVAILABLE, lockTimeoutHint } from '../locks.js';
import { PIPELINE_DEFAULTS, PIPELINE_LIMITS, isContractViolation, runPipeline, type RunRow } from '../pipeline.js';
import { intFlag, parse } from './args.js';
import type { Command } from './command.js';
import { withDatabase } from './context.js';

function summary(run: RunRow): string {
  const total = (run.stats['durations_ms'] as Record<string, number> | undefined)?.['total'];
  const dry = run.dry_run ? ' (dry run: nothing written)' : '';
  const base = `run ${run.id} ${run.status}${dry}${total !== undefined ? ` in ${total} ms` : ''}`;
  if (run.status === 'FAILED') return `${base}: ${run.error_message ?? 'unknown error'}`;
  if (run.status === 'SKIPPED') return `${base}: another run holds the lock`;
  const pending = run.stats['steps_not_implemented'] as string[] | undefined;
  return pending && pending.length ? `${base}; steps not implemented yet: ${pending.join(', ')}` : base;
}

export const reconcileCommand: Command = {
  name: 'reconcile',
  summary: 'run the reconciliation pipeline once',
  help: `Usage: cabinet-leads reconcile [--days-back N] [--limit N] [--dry-run] [--only-limbo] [--json]

Runs ops.reconcile_cabinet_leads_pipeline once (the same code path as the worker's
scheduled task) and logs it in canon.ingestion_runs.

Options:
  --days-back N      leads with lead_date >= today - N (default ${PIPELINE_DEFAULTS.daysBack}, at most ${PIPELINE_LIMITS.daysBack.max})
  --limit N          at most N leads evaluated in this run (default ${PIPELINE_DEFAULTS.limit}, at most ${PIPELINE_LIMITS.limit.max})
  --dry-run          compute the same stats, write nothing but the run log
  --only-limbo       re-evaluate only leads in limbo (NO_IDENTITY, NO_DRIVER, TRIPS_NO_CLAIM)
  --timeout N        abort the run after N seconds (default ${PIPELINE_DEFAULTS.timeoutSeconds}, 0 = none, at most ${PIPELINE_LIMITS.timeoutSeconds.max})
  --json             print the run row as JSON on stdout
  -h, --help         show this help

A lock held by another session on a table the run needs fails the run after 30 s
(lock_timeout; less when the session asks for less, e.g. PGOPTIONS='-c lock_timeout=5s').

Exit codes: 0 completed or skipped (another run was in progress), 1 run failed,
2 usage or configuration error (bad flag, database unreachable, contract violated).`,
  async run(argv) {
    const { values } = parse('reconcile', argv, {
      'days-back': { type: 'string' },
      limit: { type: 'string' },
      'dry-run': { type: 'boolean' },
      'only-limbo': { type: 'boolean' },
      timeout: { type: 'string' },
      json: { type: 'boolean' },
    });
    if (values.help) {
      console.log(this.help);
      return 0;
    }
    const opts = {
      daysBack: intFlag('reconcile', 'days-back', values['days-back'], PIPELINE_DEFAULTS.daysBack, PIPELINE_LIMITS.daysBack.min, PIPELINE_LIMITS.daysBack.max),
      limit: intFlag('reconcile', 'limit', values.limit, PIPELINE_DEFAULTS.limit, PIPELINE_LIMITS.limit.min, PIPELINE_LIMITS.limit.max),
      timeoutSeconds: intFlag('reconcile', 'timeout', values.timeout, PIPELINE_DEFAULTS.timeoutSeconds, PIPELINE_LIMITS.timeoutSeconds.min, PIPELINE_LIMITS.timeoutSeconds.max),
      dryRun: values['dry-run'] ?? false,
      onlyLimbo: values['only-limbo'] ?? false,
      trigger: 'cli' as const,
    };
    return withDatabase(async ({ db, log, config }) => {
      const client = await db.pool.connect();
      let run: RunRow;
      try {
        run = await runPipeline(client, opts, log);
      } finally {
        client.release();
      }
      // Who holds the lock the run gave up on, looked up at once (it may let go soon).
      const lockHint = run.status === 'FAILED' && run.error_sqlstate === LOCK_NOT_AVAILABLE ? await lockTimeoutHint(db.pool) : undefined;
      // As the worker does after each run: firing alerts logged (warn) and sent to the
      // optional webhook; never changes the exit code, which is about the run.
      if (!run.dry_run && run.status !== 'SKIPPED') {
        await checkAlertsAfterRun(db.pool, run, { webhookUrl: config.alertWebhookUrl }, log);
      }
      if (values.json) console.log(JSON.stringify(run));
      else console.log(summary(run));
      if (isContractViolation(run)) {
        process.stderr.write(`cabinet-leads: error: ${run.error_message ?? 'source contract violated'}\n`);
        return 2;
      }
      if (run.status === 'FAILED') {
        const hint = lockHint !== undefined ? `; ${lockHint}` : '';
        process.stderr.write(`cabinet-leads: error: run ${run.id} failed: ${(run.error_message ?? '').split('\n')[0]}${hint}\n`);
        return 1;
      }
      return 0;
    });
  },
};
