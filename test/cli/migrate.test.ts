// cabinet-leads migrate run by a role that owns its database but may not create roles
// (no CREATEROLE), on a cluster of its own where the product's roles do not exist yet:
// the migration applies, one line on stderr says why the roles are missing, the SQL for
// the DBA is printed; once a DBA ran it, migrate again grants the roles their rights.
import test from 'ava';
import pg from 'pg';
import { connectionStringOf, startEmbedded, type EmbeddedServer } from '../../src/embedded.js';
import { createLogger } from '../../src/logger.js';
import { runCli } from '../helpers/cli.js';
import { embeddedDataDir } from '../helpers/embedded.js';

const log = createLogger({ logLevel: 'silent', logFormat: 'json' });

async function sql<R extends pg.QueryResultRow>(url: string, text: string): Promise<R[]> {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => {});
  await c.connect();
  try {
    return (await c.query<R>(text)).rows;
  } finally {
    await c.end();
  }
}

let server: EmbeddedServer;

test.before(async () => {
  server = await startEmbedded(embeddedDataDir('migrate-roles'), log);
});
test.after.always(async () => {
  await server?.stop();
});

test('migrate by a role that may not create roles applies, says so in one line and prints the SQL for the DBA', async (t) => {
  const dba = connectionStringOf(server.endpoint, 'postgres');
  await sql(dba, `CREATE ROLE app_owner LOGIN`);
  await sql(dba, `CREATE DATABASE app OWNER app_owner`);
  const owner = new URL(connectionStringOf(server.endpoint, 'app'));
  owner.username = 'app_owner';
  const env = { DATABASE_URL: owner.toString(), LOG_LEVEL: 'warn' };

  const first = await runCli(['migrate'], env);
  t.is(first.code, 0, first.stderr);
  t.regex(first.stdout, /^applied \d+ migration\(s\): /m);
  const said = first.stderr.split('\n').filter((l) => l.startsWith('cabinet-leads migrate: '));
  t.deepEqual(said.length, 1, first.stderr);
  t.regex(said[0]!, /role app_owner may not create roles and cabinet_leads_job \/ cabinet_leads_reader do not exist/);
  const printed = first.stdout.split('\n').filter((l) => /^(CREATE|GRANT|--)/.test(l));
  t.deepEqual(printed, [
    'CREATE ROLE cabinet_leads_job NOLOGIN;',
    'CREATE ROLE cabinet_leads_reader NOLOGIN;',
    '-- then run cabinet-leads migrate again: it grants the roles their rights',
  ]);
  t.deepEqual(await sql(dba, `SELECT rolname FROM pg_roles WHERE rolname LIKE 'cabinet_leads_%'`), []);
  // The product works meanwhile, as the owner.
  const status = await runCli(['status'], env);
  t.is(status.code, 0, status.stderr);

  // The DBA runs what was printed; migrate again grants.
  await sql(dba, printed.join('\n'));
  const second = await runCli(['migrate'], env);
  t.is(second.code, 0, second.stderr);
  t.regex(second.stdout, /^schema up to date$/m);
  t.false(second.stderr.includes('cabinet-leads migrate:'), second.stderr);
  const app = connectionStringOf(server.endpoint, 'app');
  t.deepEqual(
    await sql(app, `SELECT has_table_privilege('cabinet_leads_job', 'canon.ingestion_runs', 'INSERT') AS job_writes,
                           has_table_privilege('cabinet_leads_reader', 'ops.v_cabinet_leads_limbo', 'SELECT') AS reader_reads,
                           has_table_privilege('cabinet_leads_reader', 'canon.ingestion_runs', 'INSERT') AS reader_writes,
                           (SELECT count(*)::int FROM pg_policy WHERE polname = 'cabinet_leads_job') AS worker_policies`),
    [{ job_writes: true, reader_reads: true, reader_writes: false, worker_policies: 4 }],
  );
});
