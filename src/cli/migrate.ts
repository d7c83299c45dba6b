// cabinet-leads migrate: applies pending migrations (what a DBA runs on deploy).
import { openDatabase } from '../db.js';
import { migrate } from '../migrate.js';
import { parse } from './args.js';
import type { Command } from './command.js';
import { loadConfigAndLogger } from './context.js';

export const migrateCommand: Command = {
  name: 'migrate',
  summary: 'apply pending database migrations',
  help: `Usage: cabinet-leads migrate [--json]

Applies the pending SQL migrations of migrations/ (node-pg-migrate, bookkeeping in
schema cabinet_migrations) in one transaction. Safe to run twice and from several
hosts at once. Creates the source tables only when they do not exist.

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
      const applied = await migrate(db.connectionString, log);
      if (values.json) console.log(JSON.stringify({ applied }));
      else console.log(applied.length ? `applied ${applied.length} migration(s): ${applied.join(', ')}` : 'schema up to date');
      return 0;
    } finally {
      await db.close();
    }
  },
};
