// cabinet-leads migrate: applies pending migrations (what a DBA runs on deploy).
import { openDatabase } from '../db.js';
import { dbaRequestLine, migrate, type DbaRequest } from '../migrate.js';
import { parse } from './args.js';
import type { Command } from './command.js';
import { loadConfigAndLogger } from './context.js';

export const migrateCommand: Command = {
  name: 'migrate',
  summary: 'apply pending database migrations',
  help: `Usage: cabinet-leads migrate [--json]

Applies the pending SQL migrations of migrations/ (node-pg-migrate, bookkeeping in
schema cabinet_migrations) in one transaction. Safe to run twice and from several
hosts at once. Creates the source tables only when they do not exist. Then installs
or upgrades graphile-worker's schema, and creates the roles cabinet_leads_job and
cabinet_leads_reader (NOLOGIN) and grants them their rights again (docs/security.md).
Run it as the role that owns the schemas. When that role may not create roles (or
grant on the upstream tables), the migration still applies: one line on stderr says
so and the SQL a DBA must run is printed on stdout; then run migrate again.

Options:
  --json      print the applied migration names as JSON
  -h, --help  show this help

Environment: DATABASE_URL (else the embedded server in .data/).`,
  async run(argv) {
    const { values } = parse('migrate', argv, { json: { type: 'boolean' } });
    if (values.help) {
      console.log(this.help);
      return 0;
    }
    const { config, log } = loadConfigAndLogger();
    const db = await openDatabase(config, log);
    try {
      let dba: DbaRequest | undefined;
      const applied = await migrate(db.connectionString, log, { onDbaRequest: (r) => (dba = r) });
      if (values.json) console.log(JSON.stringify({ applied, ...(dba ? { dba_sql: dba.sql } : {}) }));
      else console.log(applied.length ? `applied ${applied.length} migration(s): ${applied.join(', ')}` : 'schema up to date');
      if (dba) {
        process.stderr.write(`cabinet-leads migrate: ${dbaRequestLine(dba)}\n`);
        if (!values.json) console.log(dba.sql.join('\n'));
      }
      return 0;
    } finally {
      await db.close();
    }
  },
};
