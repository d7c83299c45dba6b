// cabinet-leads db-url and cabinet-leads psql: a person's way into the database the
// product uses. The embedded server lets in only its owner (a private Unix socket, or TCP
// with a password kept in the data folder: src/embedded.ts), so these print or use what
// the product itself connects with; with DATABASE_URL set, psql gets its parts through
// libpq's environment variables (never on a command line, which other users can read).
import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { connectionStringOf, embeddedEndpoint, endOnSignals } from '../embedded.js';
import { ConfigError } from '../errors.js';
import { parse } from './args.js';
import type { Command } from './command.js';
import { loadConfigAndLogger, withDatabase } from './context.js';

export const dbUrlCommand: Command = {
  name: 'db-url',
  summary: "print the embedded server's connection string (for psql and other tools)",
  help: `Usage: cabinet-leads db-url

Prints the connection string of the embedded server of the data folder (DATABASE_URL
unset), e.g. for psql or a GUI tool run by the same OS user:
  psql "$(npx cabinet-leads db-url)"
On Linux and macOS it names the server's Unix socket folder, which only the OS user
that runs the product can enter; the string is the same at every start. The server
runs while the worker or a command runs; when none runs, the string is printed with a
note on stderr (cabinet-leads psql starts the server for the session). With TCP
(Windows, CABINET_EMBEDDED_TRANSPORT=tcp) the string holds the server's password: keep
it to yourself. Exit code 2 when DATABASE_URL is set (that is the connection string) or
when a TCP server is not running (its port is chosen at start).

Options:
  -h, --help  show this help`,
  async run(argv) {
    const { values } = parse('db-url', argv, {});
    if (values.help) {
      console.log(this.help);
      return 0;
    }
    const { config, log } = loadConfigAndLogger();
    if (config.databaseUrl !== undefined) {
      throw new ConfigError('DATABASE_URL is set: the product uses that server, and DATABASE_URL is its connection string (psql "$DATABASE_URL", or cabinet-leads psql)');
    }
    const found = embeddedEndpoint(config.dataDir, log, config.embeddedTransport);
    if (!found) {
      throw new ConfigError('no embedded server is running on the data folder, and its TCP port is chosen when it starts: start the worker (npm start) or use cabinet-leads psql');
    }
    console.log(connectionStringOf(found.endpoint));
    if (!found.running) process.stderr.write('cabinet-leads: note: the embedded server is not running now; it runs while the worker or a command runs (cabinet-leads psql starts it for a session)\n');
    return 0;
  },
};

/**
 * libpq's environment for a postgres:// connection string: PGHOST (a socket folder when
 * the host is one, percent-encoded), PGPORT, PGUSER, PGPASSWORD, PGDATABASE, and the
 * query parameters libpq also reads from the environment (sslmode, ...).
 */
export function libpqEnv(connectionString: string): NodeJS.ProcessEnv {
  const u = new URL(connectionString);
  const env: NodeJS.ProcessEnv = {};
  const set = (name: string, v: string | null | undefined) => {
    if (v !== null && v !== undefined && v !== '') env[name] = v;
  };
  set('PGHOST', decodeURIComponent(u.hostname));
  set('PGPORT', u.port);
  set('PGUSER', decodeURIComponent(u.username));
  set('PGPASSWORD', decodeURIComponent(u.password));
  set('PGDATABASE', decodeURIComponent(u.pathname.replace(/^\//, '')));
  const params: Record<string, string> = {
    host: 'PGHOST', port: 'PGPORT', user: 'PGUSER', password: 'PGPASSWORD', dbname: 'PGDATABASE',
    sslmode: 'PGSSLMODE', sslrootcert: 'PGSSLROOTCERT', sslcert: 'PGSSLCERT', sslkey: 'PGSSLKEY',
    application_name: 'PGAPPNAME', options: 'PGOPTIONS', connect_timeout: 'PGCONNECT_TIMEOUT',
  };
  for (const [key, name] of Object.entries(params)) set(name, u.searchParams.get(key));
  return env;
}

export const psqlCommand: Command = {
  name: 'psql',
  summary: 'open psql on the database the product uses',
  // psql answers Ctrl-C itself (it cancels the query); this process waits for it.
  handlesSignals: true,
  help: `Usage: cabinet-leads psql [psql options...]

Runs psql (the PostgreSQL client, from PATH) on the database the product uses: the
embedded server of the data folder (started for the session when it is not running,
stopped after), or DATABASE_URL. Options are passed to psql, e.g.
  npx cabinet-leads psql -c "SELECT limbo_stage, count(*) FROM ops.v_cabinet_leads_limbo GROUP BY 1"
Connection settings go to psql as PGHOST, PGPORT, PGUSER, PGPASSWORD and PGDATABASE,
never as arguments. The exit code is psql's (2 when psql is not installed).

Options:
  -h, --help  show this help (psql's own: cabinet-leads psql -- --help)`,
  async run(argv) {
    if (argv[0] === '--help' || argv[0] === '-h') {
      console.log(this.help);
      return 0;
    }
    const args = argv[0] === '--' ? argv.slice(1) : argv;
    // Until psql runs, a signal ends this command as it ends the others (stopping the
    // embedded server it started); then psql has the terminal and answers Ctrl-C itself.
    const endOnSignal = endOnSignals();
    return withDatabase(
      async ({ db }) => {
        endOnSignal();
        const child = spawn(process.env.PSQL ?? 'psql', args, { stdio: 'inherit', env: { ...process.env, ...libpqEnv(db.connectionString) } });
        const forward = (signal: NodeJS.Signals) => () => child.kill(signal);
        const onInt = () => {}; // psql got the terminal's Ctrl-C too
        const onTerm = forward('SIGTERM');
        const onHup = forward('SIGHUP');
        process.on('SIGINT', onInt);
        process.on('SIGTERM', onTerm);
        process.on('SIGHUP', onHup);
        try {
          return await new Promise<number>((resolve, reject) => {
            child.once('error', (err: NodeJS.ErrnoException) =>
              reject(err.code === 'ENOENT' ? new ConfigError('psql not found on PATH: install the PostgreSQL client, or connect another tool with cabinet-leads db-url') : err),
            );
            // Ended by a signal: the shell's convention, 128 + its number.
            child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 + (constants.signals[signal] ?? 0) : 1)));
          });
        } finally {
          process.removeListener('SIGINT', onInt);
          process.removeListener('SIGTERM', onTerm);
          process.removeListener('SIGHUP', onHup);
        }
      },
      { ensureSchema: false },
    );
  },
};
