// cabinet-leads worker: the long-running scheduler (graphile-worker + crontab). Stops
// gracefully on SIGINT/SIGTERM, at any point of its start-up too: the running job
// finishes, then the database closes and the embedded server (if it started it) stops.
import type { Runner } from 'graphile-worker';
import { openDatabase, type Database } from '../db.js';
import type { Logger } from '../logger.js';
import { migrate } from '../migrate.js';
import { parse } from './args.js';
import type { Command } from './command.js';
import { loadConfigAndLogger } from './context.js';

/**
 * A newcomer's first `npm start` finds no lead: say so and name the next step, instead of
 * running every 15 minutes on nothing in silence.
 */
async function tellWhenEmpty(db: Database, log: Logger): Promise<void> {
  const res = await db.pool
    .query<{ empty: boolean }>(`SELECT NOT EXISTS (SELECT 1 FROM public.module_ct_cabinet_leads) AS empty`)
    .catch(() => undefined); // a schema not migrated yet: the runs will say so
  if (!res?.rows[0]?.empty) return;
  log.warn(
    { leads: 0, next_step: ['cabinet-leads demo', 'cabinet-leads import-leads FILE.csv'] },
    'the database has no lead yet: the runs have nothing to do. Next: `npx cabinet-leads demo` (synthetic data to try it) or `npx cabinet-leads import-leads FILE.csv` (a cabinet export); the next run picks them up',
  );
}

/**
 * A signal this soon after the first is the same interrupt, not a second one: on Ctrl-C
 * the terminal signals the worker and npm (when run by npm start) forwards its own copy.
 */
const SAME_INTERRUPT_MS = 1000;

export const workerCommand: Command = {
  name: 'worker',
  summary: 'run the scheduler (every 15 minutes by the crontab file)',
  handlesSignals: true,
  help: `Usage: cabinet-leads worker [--migrate] [--crontab FILE]

Runs graphile-worker with the crontab file (default: ./crontab, every 15 minutes).
Any number of workers may run against one database: each cron slot runs once.
SIGINT (Ctrl-C) or SIGTERM stops it gracefully, also during start-up: a running job
finishes first, then the embedded server (if this worker started it) stops; exit
code 0. A second signal (a second apart or more) exits at once (the run is then rolled
back and later marked abandoned). A bad crontab file exits 2 naming the line.

Options:
  --migrate       apply pending migrations before starting (npm start does this)
  --crontab FILE  crontab file to use instead of ./crontab
  -h, --help      show this help`,
  async run(argv) {
    const { values } = parse('worker', argv, { migrate: { type: 'boolean' }, crontab: { type: 'string' } });
    if (values.help) {
      console.log(this.help);
      return 0;
    }
    const { config, log } = loadConfigAndLogger();
    // graphile-worker is loaded only by this command: the one-shot commands start faster.
    const [{ loadCrontab, startWorker }, { TASKS }] = await Promise.all([import('../worker.js'), import('../../tasks/index.js')]);
    // Checked before anything starts: a bad crontab is a configuration error (exit 2).
    const cronItems = loadCrontab(TASKS, values.crontab);
    // graphile-worker 0.17's unawaited outcome queries (src/worker-outcomes.ts) reject
    // unhandled while the database is down: log them and keep the scheduler running.
    process.on('unhandledRejection', (reason) => {
      log.error({ error: reason instanceof Error ? reason.message : String(reason) }, 'unhandled rejection in the worker (kept running)');
    });

    // Listening before the database opens: a signal during the first start (initdb,
    // migrations) stops the worker too, once the step under way is done.
    const stopping = new AbortController();
    let runner: Runner | undefined;
    let firstSignalAt = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping.signal.aborted) {
        if (Date.now() - firstSignalAt < SAME_INTERRUPT_MS) return;
        log.warn({ signal }, 'second signal: exiting now');
        process.exit(130); // the embedded server, if ours, is told to stop on exit (src/embedded.ts)
      }
      firstSignalAt = Date.now();
      log.info({ signal }, 'stopping worker gracefully');
      stopping.abort();
      runner?.stop().catch((err: unknown) => log.error({ err }, 'worker stop failed'));
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);

    let db: Database;
    try {
      db = await openDatabase(config, log, 'cabinet-leads-worker', { signal: stopping.signal });
    } catch (err) {
      if (stopping.signal.aborted && err instanceof Error && err.name === 'AbortError') {
        log.info('worker stopped before it started');
        return 0;
      }
      throw err;
    }
    try {
      if (values.migrate && !stopping.signal.aborted) await migrate(db.connectionString, log);
      if (!stopping.signal.aborted) await tellWhenEmpty(db, log);
      if (!stopping.signal.aborted) {
        const worker = await startWorker({ connectionString: db.connectionString, tasks: TASKS, cronItems, ...(values.crontab ? { crontabFile: values.crontab } : {}) }, log);
        runner = worker.runner;
        // A signal that came while it started.
        if (stopping.signal.aborted) runner.stop().catch((err: unknown) => log.error({ err }, 'worker stop failed'));
        try {
          await runner.promise;
        } finally {
          await worker.close();
        }
      }
      log.info('worker stopped');
      return 0;
    } finally {
      // Jobs are done: now the database (and the embedded server, if this worker started it).
      await db.close();
    }
  },
};
