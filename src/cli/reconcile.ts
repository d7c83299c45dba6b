// cabinet-leads reconcile: one pipeline run, for cron and Windows Task Scheduler, or with
// --until-done a backfill (runs of --limit leads until nothing is left), or with --preview
// what the current decisions would change, written nowhere. Same code path as the worker
// task. Exit 0 completed, skipped or previewed, 1 failed, 2 usage/config.
import type pg from 'pg';
import { UsageError } from '../errors.js';
import { isLockTimeout } from '../locks.js';
import type { Logger } from '../logger.js';
import { PIPELINE_DEFAULTS, PIPELINE_LIMITS, isContractViolation, reconcile, type PipelineOptions, type WithClient, type RunRow } from '../pipeline.js';
import { duration, runFigures, runLine, soles, STAGES } from '../run-summary.js';
import { intFlag, parse } from './args.js';
import type { Command } from './command.js';
import { withDatabase } from './context.js';
import { previewText, readPreview } from './reconcile-preview.js';

const JOB_LOCK = `hashtext('cabinet_leads'), hashtext('reconcile_cabinet_leads_pipeline')`;

/**
 * Lead keys of the scope that the next runs will evaluate: never evaluated (no link, no
 * OPEN or IGNORED unmatched row) or OPEN and due for a retry. The total of --until-done's
 * progress; one pass over the lead table, once per backfill.
 */
async function leadsLeft(client: pg.ClientBase, daysBack: number): Promise<number> {
  const res = await client.query<{ n: string }>(
    `WITH keys AS (
       SELECT DISTINCT canon.lead_source_pk(l.external_id, l.id) AS pk
       FROM public.module_ct_cabinet_leads l
       WHERE canon.lead_date_of(l.lead_created_at) >= canon.business_today() - $1::integer
     )
     SELECT count(*) AS n
     FROM keys k
     WHERE NOT EXISTS (SELECT 1 FROM canon.identity_links x WHERE x.source_table = 'module_ct_cabinet_leads' AND x.source_pk = k.pk)
       AND NOT EXISTS (SELECT 1 FROM canon.identity_unmatched u
                       WHERE u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = k.pk
                         AND (u.status = 'IGNORED' OR (u.status = 'OPEN' AND NOT u.retry_due)))`,
    [daysBack],
  );
  return Number(res.rows[0]?.n ?? 0);
}

/** Waits until the run holding the job lock has finished (each wait bounded by lock_timeout). */
async function waitForJobLock(client: pg.ClientBase, log: Logger): Promise<void> {
  for (;;) {
    try {
      await client.query(`SELECT pg_advisory_lock(${JOB_LOCK})`);
      await client.query(`SELECT pg_advisory_unlock(${JOB_LOCK})`);
      return;
    } catch (err) {
      if (!isLockTimeout(err)) throw err;
      log.info('still waiting for the run that holds the job lock');
    }
  }
}

interface Progress {
  update(done: number, total: number): void;
  stop(): void;
}

/** A bar on a terminal (cli-progress), progress events in the log otherwise. */
async function progressReporter(tty: boolean, log: Logger, total: number): Promise<Progress> {
  const started = Date.now();
  if (!tty) {
    return {
      update(done, t) {
        const seconds = (Date.now() - started) / 1000;
        const rate = seconds > 0 ? done / seconds : 0;
        log.info(
          { event: 'progress', leads_done: done, leads_total: t, rate_per_s: Math.round(rate * 10) / 10, eta_s: rate > 0 ? Math.round((t - done) / rate) : null },
          'reconcile progress',
        );
      },
      stop() {},
    };
  }
  // Loaded only for a backfill in a terminal: every other run starts without it.
  const { default: cliProgress } = await import('cli-progress');
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: 'reconcile |{bar}| {value}/{total} leads | {rate} leads/s | {eta_formatted} left',
      hideCursor: true,
      etaBuffer: 20,
      fps: 5,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0, { rate: '0' });
  return {
    update(done, t) {
      const seconds = (Date.now() - started) / 1000;
      bar.setTotal(t);
      bar.update(done, { rate: seconds > 0 ? (done / seconds).toFixed(0) : '0' });
    },
    stop() {
      bar.stop();
    },
  };
}

/** The line after a backfill: every run's figures added up. */
function totalLine(runs: RunRow[], ms: number): string {
  const completed = runs.filter((r) => r.status === 'COMPLETED');
  const f = completed.map(runFigures);
  const sum = (pick: (x: (typeof f)[number]) => number) => f.reduce((a, x) => a + pick(x), 0);
  const int = (n: number) => n.toLocaleString('en-US');
  const first = f[0];
  const last = f[f.length - 1];
  const limbo: string[] = [];
  if (first && last) {
    const before = completed[0]!.stats['limbo_before'] as Record<string, number> | undefined;
    for (const stage of STAGES) {
      const after = last.limbo_after[stage];
      if (after === undefined) continue;
      const b = Number(before?.[stage] ?? 0);
      if (b !== after) limbo.push(`${stage} ${int(b)} → ${int(after)}`);
    }
  }
  return (
    `until done: ${runs.length} run(s) in ${duration(ms)}: ${int(sum((x) => x.leads_evaluated))} leads evaluated, ` +
    `${int(sum((x) => x.linked))} linked, ${int(sum((x) => x.unmatched))} unmatched, ` +
    `${int(sum((x) => x.claims_generated))} claims ${soles(sum((x) => x.claims_amount))}, ` +
    (limbo.length ? limbo.join(', ') : 'limbo unchanged')
  );
}

export const reconcileCommand: Command = {
  name: 'reconcile',
  summary: 'run the reconciliation pipeline once (or until nothing is left)',
  help: `Usage: cabinet-leads reconcile [--days-back N] [--limit N] [--until-done] [--dry-run] [--only-limbo] [--json]
       cabinet-leads reconcile --preview [--days-back N] [--only-limbo] [--json]

Runs ops.reconcile_cabinet_leads_pipeline once (the same code path as the worker's
scheduled task), logs it in canon.ingestion_runs and prints one line: leads evaluated,
linked per rule, unmatched per reason, claims generated with their amount, the change
of each limbo stage and the duration.

With --preview it runs nothing: it decides every lead of --days-back with the current
rules and probabilistic tier (ops.preview_links, in a READ ONLY transaction) and lists
the leads whose link would differ from what is stored: add, remove or change, whether a
run would apply it (runs only add links to the leads they evaluate: never evaluated, or
OPEN and due for a retry; they never remove or change a stored link) and why. Manual
links and ignored leads are left out. Leads and drivers as the last run keyed them.
To see a rule change before any run acts on it, make it in a psql transaction and read
SELECT * FROM ops.preview_links() before COMMIT or ROLLBACK (docs/matching.md,
"Previewing a rule change").

Options:
  --days-back N      leads with lead_date >= today - N (default ${PIPELINE_DEFAULTS.daysBack}, at most ${PIPELINE_LIMITS.daysBack.max})
  --limit N          at most N leads evaluated in this run (default ${PIPELINE_DEFAULTS.limit}, at most ${PIPELINE_LIMITS.limit.max})
  --until-done       a backfill: runs of --limit leads until none is left in --days-back
                     (a progress bar in a terminal, progress events in the log otherwise);
                     waits for a run of the worker that holds the lock instead of skipping
  --dry-run          compute the same stats, write nothing but the run log
  --only-limbo       re-evaluate only leads in limbo (NO_IDENTITY, NO_DRIVER, TRIPS_NO_CLAIM)
  --preview          write nothing: the links the current decisions would add, remove or change
                     (not with --limit, --until-done or --dry-run)
  --timeout N        abort a run (or the preview) after N seconds (default ${PIPELINE_DEFAULTS.timeoutSeconds}, 0 = none, at most ${PIPELINE_LIMITS.timeoutSeconds.max})
  --json             print the run row as JSON on stdout (one line per run); with --preview
                     one object: scope, summary per kind and every lead's row
  -h, --help         show this help

A lock held by another session on a table the run needs fails the run after 30 s
(lock_timeout; less when the session asks for less, e.g. PGOPTIONS='-c lock_timeout=5s').

Exit codes: 0 completed, skipped (another run was in progress) or previewed, 1 run failed,
2 usage or configuration error (bad flag or combination, database unreachable, contract
violated).`,
  async run(argv) {
    const { values } = parse('reconcile', argv, {
      'days-back': { type: 'string' },
      limit: { type: 'string' },
      'until-done': { type: 'boolean' },
      'dry-run': { type: 'boolean' },
      'only-limbo': { type: 'boolean' },
      preview: { type: 'boolean' },
      timeout: { type: 'string' },
      json: { type: 'boolean' },
    });
    if (values.help) {
      console.log(this.help);
      return 0;
    }
    if (values.preview) {
      // The preview decides the whole scope at once and writes nothing: these flags mean nothing to it.
      for (const flag of ['limit', 'until-done', 'dry-run'] as const) {
        if (values[flag] !== undefined) {
          throw new UsageError(`reconcile: --preview cannot be combined with --${flag}: the preview decides every lead of --days-back at once and writes nothing (see cabinet-leads reconcile --help)`);
        }
      }
    }
    const opts: PipelineOptions = {
      daysBack: intFlag('reconcile', 'days-back', values['days-back'], PIPELINE_DEFAULTS.daysBack, PIPELINE_LIMITS.daysBack.min, PIPELINE_LIMITS.daysBack.max),
      limit: intFlag('reconcile', 'limit', values.limit, PIPELINE_DEFAULTS.limit, PIPELINE_LIMITS.limit.min, PIPELINE_LIMITS.limit.max),
      timeoutSeconds: intFlag('reconcile', 'timeout', values.timeout, PIPELINE_DEFAULTS.timeoutSeconds, PIPELINE_LIMITS.timeoutSeconds.min, PIPELINE_LIMITS.timeoutSeconds.max),
      dryRun: values['dry-run'] ?? false,
      onlyLimbo: values['only-limbo'] ?? false,
      trigger: 'cli' as const,
    };
    if (values.preview) {
      return withDatabase(async ({ db, log }) => {
        const client = await db.pool.connect();
        try {
          const preview = await readPreview(client, opts, log);
          console.log(values.json ? JSON.stringify(preview) : previewText(preview));
          return 0;
        } finally {
          client.release();
        }
      });
    }
    // A dry run writes nothing: its next batch would be the same leads again.
    const untilDone = (values['until-done'] ?? false) && !opts.dryRun && opts.limit > 0;
    return withDatabase(async ({ db, log, config }) => {
      const client = await db.pool.connect();
      // Every run on this one connection (waitForJobLock waits on it); the alert check after each run too.
      const held: WithClient = (fn) => fn(client);
      const alerting = { webhookUrl: config.alertWebhookUrl };
      const runs: RunRow[] = [];
      const started = Date.now();
      let progress: Progress | undefined;
      const level = log.level;
      try {
        if (!untilDone) runs.push(await reconcile(held, opts, log, alerting));
        else {
          const tty = process.stderr.isTTY === true && !values.json;
          let total = await leadsLeft(client, opts.daysBack);
          progress = await progressReporter(tty, log, total);
          // The bar owns the terminal's last line: only warnings and errors are logged meanwhile.
          if (tty && log.isLevelEnabled('info')) log.level = 'warn';
          let done = 0;
          for (;;) {
            const run = await reconcile(held, opts, log, alerting);
            if (run.status === 'SKIPPED') {
              // The worker's run: wait for it, then go on (never counted as a batch).
              await waitForJobLock(client, log);
              continue;
            }
            runs.push(run);
            if (values.json) console.log(JSON.stringify(run));
            else if (!tty) console.log(runLine(run));
            if (run.status !== 'COMPLETED') break;
            const match = (run.stats['match'] ?? {}) as Record<string, unknown>;
            done += Number(match['leads_evaluated'] ?? 0);
            const last = Number(match['leads_selected'] ?? 0) < opts.limit || Number(match['leads_evaluated'] ?? 0) === 0;
            // New leads may arrive meanwhile: the total grows with them, and is exact at the end.
            total = last ? done : Math.max(total, done);
            progress.update(done, total);
            if (last) break;
          }
        }
      } finally {
        progress?.stop();
        log.level = level;
        client.release();
      }
      const run = runs[runs.length - 1]!;
      if (!untilDone) console.log(values.json ? JSON.stringify(run) : runLine(run));
      else if (!values.json) console.log(totalLine(runs, Date.now() - started));
      if (isContractViolation(run)) {
        process.stderr.write(`cabinet-leads: error: ${run.error_message ?? 'source contract violated'}\n`);
        return 2;
      }
      if (run.status === 'FAILED') {
        const hint = run.lock_hint !== undefined ? `; ${run.lock_hint}` : '';
        process.stderr.write(`cabinet-leads: error: run ${run.id} failed: ${(run.error_message ?? '').split('\n')[0]}${hint}\n`);
        return 1;
      }
      return 0;
    });
  },
};
