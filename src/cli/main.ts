// cabinet-leads: dispatches to a subcommand; maps every error to a one-line message on
// stderr and an exit code that means something (0 ok, 1 run failed, 2 usage/config).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { PROJECT_ROOT } from '../config.js';
import { endOnSignals } from '../embedded.js';
import { exitCodeOf, oneLine, UsageError } from '../errors.js';
import { alertsCommand } from './alerts.js';
import type { Command } from './command.js';
import { demoCommand } from './demo.js';
import { doctorCommand } from './doctor.js';
import { exportCommand } from './export.js';
import { importLeadsCommand } from './import-leads.js';
import { ignoreLeadCommand, resolveLeadCommand, unlinkLeadCommand } from './manual.js';
import { migrateCommand } from './migrate.js';
import { reconcileCommand } from './reconcile.js';
import { reportCommand } from './report.js';
import { statusCommand } from './status.js';
import { workerCommand } from './worker.js';

const commands: Command[] = [
  migrateCommand,
  reconcileCommand,
  workerCommand,
  statusCommand,
  alertsCommand,
  reportCommand,
  doctorCommand,
  importLeadsCommand,
  exportCommand,
  resolveLeadCommand,
  ignoreLeadCommand,
  unlinkLeadCommand,
  demoCommand,
];

function mainHelp(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return `Usage: cabinet-leads <command> [options]

Reconciles cabinet leads into identities, drivers, trips and 14-day claims, and
classifies every lead stuck on the way (limbo). PostgreSQL does the work.

Commands:
${commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join('\n')}

Run cabinet-leads <command> --help for its options; cabinet-leads --version prints the version.
Environment: DATABASE_URL (unset: embedded PostgreSQL in .data/), LOG_LEVEL, LOG_FORMAT (json|pretty).`;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    console.log(mainHelp());
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === '-v') {
    console.log((JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string }).version);
    return 0;
  }
  const command = commands.find((c) => c.name === name);
  if (!command) throw new UsageError(`unknown command ${JSON.stringify(name)}; commands: ${commands.map((c) => c.name).join(', ')}`);
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
