// cabinet-leads: dispatches to a subcommand; maps every error to a one-line message on
// stderr and an exit code that means something (0 ok, 1 run failed, 2 usage/config).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { PROJECT_ROOT } from '../config.js';
import { endOnSignals } from '../embedded.js';
import { exitCodeOf, oneLine, UsageError } from '../errors.js';
import type { Command } from './command.js';

/**
 * Every command, in the order of the help, loaded only when it runs: a cron call of
 * `reconcile` does not pay for the report, the CSV import or the demo generator.
 */
const commands: [string, () => Promise<Command>][] = [
  ['migrate', async () => (await import('./migrate.js')).migrateCommand],
  ['reconcile', async () => (await import('./reconcile.js')).reconcileCommand],
  ['worker', async () => (await import('./worker.js')).workerCommand],
  ['status', async () => (await import('./status.js')).statusCommand],
  ['review', async () => (await import('./review.js')).reviewCommand],
  ['explain', async () => (await import('./explain.js')).explainCommand],
  ['alerts', async () => (await import('./alerts.js')).alertsCommand],
  ['report', async () => (await import('./report.js')).reportCommand],
  ['doctor', async () => (await import('./doctor.js')).doctorCommand],
  ['import-leads', async () => (await import('./import-leads.js')).importLeadsCommand],
  ['export', async () => (await import('./export.js')).exportCommand],
  ['resolve-lead', async () => (await import('./manual.js')).resolveLeadCommand],
  ['ignore-lead', async () => (await import('./manual.js')).ignoreLeadCommand],
  ['unlink-lead', async () => (await import('./manual.js')).unlinkLeadCommand],
  ['not-this-driver', async () => (await import('./manual.js')).notThisDriverCommand],
  ['demo', async () => (await import('./demo.js')).demoCommand],
  ['db-url', async () => (await import('./db.js')).dbUrlCommand],
  ['psql', async () => (await import('./db.js')).psqlCommand],
];

async function mainHelp(): Promise<string> {
  const loaded = await Promise.all(commands.map(([, load]) => load()));
  const width = Math.max(...loaded.map((c) => c.name.length));
  return `Usage: cabinet-leads <command> [options]

Reconciles cabinet leads into identities, drivers, trips and 14-day claims, and
classifies every lead stuck on the way (limbo). PostgreSQL does the work.

Commands:
${loaded.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join('\n')}

Run cabinet-leads <command> --help for its options; cabinet-leads --version prints the version.
Environment: DATABASE_URL (unset: embedded PostgreSQL in .data/, reached by its owner only:
cabinet-leads db-url, cabinet-leads psql), LOG_LEVEL, LOG_FORMAT (json|pretty), ALERT_WEBHOOK_URL.
Secrets come from the environment only and are never logged (docs/security.md).`;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    console.log(await mainHelp());
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === '-v') {
    console.log((JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string }).version);
    return 0;
  }
  const entry = commands.find(([n]) => n === name);
  if (!entry) throw new UsageError(`unknown command ${JSON.stringify(name)}; commands: ${commands.map(([n]) => n).join(', ')}`);
  const command = await entry[1]();
  // A one-shot command ends on SIGINT/SIGTERM/SIGHUP as it would without an embedded
  // server (killed by that signal: the open transaction rolls back), once the server it
  // started has stopped.
  if (!command.handlesSignals) endOnSignals(() => (interrupted = true));
  return command.run(rest);
}

/** A signal ends a one-shot command (endOnSignals): its failing queries are not the error to report. */
let interrupted = false;

// Windows consoles: never let an encoding problem on output kill the run.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
});

// A socket to a server that never answered can keep the event loop alive after we
// are done: the exit code is decided, so leave shortly after, whatever is pending.
function finish(code: number): void {
  if (interrupted) return; // the signal ends the process (endOnSignals)
  process.exitCode = code;
  setTimeout(() => process.exit(code), 500).unref();
}

main(process.argv.slice(2)).then(finish, (err: unknown) => {
  if (interrupted) return; // the server stopped under the interrupted command: not an error of its own
  process.stderr.write(`cabinet-leads: error: ${oneLine(err)}\n`);
  finish(exitCodeOf(err));
});
