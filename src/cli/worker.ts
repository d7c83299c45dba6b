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
    // graphile-worker 0.17 does not await every bookkeeping query (failJob); with the
    // database down that rejection must not kill the scheduler: log it, and once the
    // database answers again release the job it left locked (see startWorker).
    let releaseOwnLocks: (() => Promise<void>) | undefined;
    let releasing = false;
    process.on('unhandledRejection', (reason) => {
      log.error({ error: reason instanceof Error ? reason.message : String(reason) }, 'unhandled rejection in the worker (kept running)');
      if (releasing || !releaseOwnLocks) return;
      releasing = true;
      const attempt = (n: number) => {
        releaseOwnLocks!().then(
          () => (releasing = false),
          (err: unknown) => {
            if (n >= 60) {
              releasing = false;
              log.error({ error: String(err) }, 'could not release locked jobs; see docs/operations.md (unlock)');
            } else setTimeout(() => attempt(n + 1), 2000).unref();
          },
        );
      };
      setTimeout(() => attempt(1), 1000).unref();
    });
    const db = await openDatabase(config, log, 'cabinet-leads-worker');
    try {
      if (values.migrate) await migrate(db.connectionString, log);
      // graphile-worker is loaded only by this command: the one-shot commands start faster.
      const { startWorker } = await import('../worker.js');
      const worker = await startWorker({ connectionString: db.connectionString, ...(values.crontab ? { crontabFile: values.crontab } : {}) }, log);
      const runner = worker.runner;
      releaseOwnLocks = worker.releaseOwnLocks;
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
      await runner.promise;
      log.info('worker stopped');
      return 0;
    } finally {
      await db.close();
    }
  },
};
