// cabinet-leads worker: the long-running scheduler (graphile-worker + crontab). Stops
// gracefully on SIGINT/SIGTERM: the running job finishes, then the database closes.
import { openDatabase } from '../db.js';
import { migrate } from '../migrate.js';
import { parse } from './args.js';
import type { Command } from './command.js';
import { loadConfigAndLogger } from './context.js';

export const workerCommand: Command = {
  name: 'worker',
  summary: 'run the scheduler (every 15 minutes by the crontab file)',
  handlesSignals: true,
  help: `Usage: cabinet-leads worker [--migrate] [--crontab FILE]

Runs graphile-worker with the crontab file (default: ./crontab, every 15 minutes).
Any number of workers may run against one database: each cron slot runs once.
SIGINT or SIGTERM stops it gracefully (a running job finishes first); a second
signal exits at once (the run is then rolled back and later marked abandoned).

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
    // graphile-worker 0.17 does not await the query that records a job's outcome
    // (failJob/completeJob); with the database down its rejection is unhandled and would
    // kill the scheduler (Node's default). Log it and keep running: startWorker records
    // that outcome again once the database answers, which frees the job and its queue.
    process.on('unhandledRejection', (reason) => {
      log.error({ error: reason instanceof Error ? reason.message : String(reason) }, 'unhandled rejection in the worker (kept running)');
    });
    const db = await openDatabase(config, log, 'cabinet-leads-worker');
    try {
      if (values.migrate) await migrate(db.connectionString, log);
      // graphile-worker is loaded only by this command: the one-shot commands start faster.
      const { startWorker } = await import('../worker.js');
      const worker = await startWorker({ connectionString: db.connectionString, ...(values.crontab ? { crontabFile: values.crontab } : {}) }, log);
      const runner = worker.runner;
      let stopping = false;
      const onSignal = (signal: NodeJS.Signals) => {
        if (stopping) {
          log.warn({ signal }, 'second signal: exiting now');
          process.exit(130);
        }
        stopping = true;
        log.info({ signal }, 'stopping worker gracefully');
        runner.stop().catch((err: unknown) => log.error({ err }, 'worker stop failed'));
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      try {
        await runner.promise;
      } finally {
        await worker.flushPendingOutcomes();
      }
      log.info('worker stopped');
      return 0;
    } finally {
      await db.close();
    }
  },
};
