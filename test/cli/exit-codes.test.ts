// Every command exits with the same code with DATABASE_URL (a server of its own) and
// without it (the embedded server the command starts itself), SPEC 7: 0 completed or
// skipped, 1 the run failed (alerts: some fire; doctor: an invariant is violated; rows
// rejected; a manual tool refused), 2 usage or configuration error. Each case runs the
// real CLI as a process both ways: on a fresh database of the test server, and on one
// embedded data folder shared by the cases (reset from a migrated template before each).
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import pg from 'pg';
import { PROJECT_ROOT } from '../../src/config.js';
import { serverState, startEmbedded } from '../../src/embedded.js';
import { createLogger } from '../../src/logger.js';
import { migrate } from '../../src/migrate.js';
import { errorLine, runCli, type CliResult } from '../helpers/cli.js';
import { createEmptyDb, createTestDb } from '../helpers/db.js';
import { embeddedDataDir } from '../helpers/embedded.js';

const log = createLogger({ logLevel: 'silent', logFormat: 'json' });
const TEMPLATE = 'cabinet_leads_exit_codes_tpl';
const fixture = (name: string) => path.join(PROJECT_ROOT, 'test', 'fixtures', 'import', name);

interface Case {
  name: string;
  args: (dir: string) => string[];
  code: 0 | 1 | 2;
  env?: Record<string, string>;
  /** SQL on the case's database before the command runs. */
  setup?: string;
  /** No schema at all (the migrate case); else the migrated template. */
  empty?: boolean;
  /** Ends before any database is opened: nothing to reset. */
  noDatabase?: boolean;
  /** What the output must say, either way. */
  says?: RegExp;
}

const completedRun = `INSERT INTO canon.ingestion_runs (job_name, status, source_tables, started_at, created_at, completed_at)
  VALUES ('reconcile_cabinet_leads_pipeline', 'COMPLETED', '["module_ct_cabinet_leads"]', now(), now(), now())`;

const cases: Case[] = [
  { name: 'reconcile completed', args: () => ['reconcile'], code: 0, says: /run \d+ COMPLETED/ },
  {
    name: 'reconcile failed',
    args: () => ['reconcile'],
    env: { PGOPTIONS: '-c cabinet.failpoint=after_claims' },
    code: 1,
    says: /run \d+ failed: failpoint "after_claims"/,
  },
  {
    name: 'reconcile with the source contract violated',
    args: () => ['reconcile'],
    setup: `ALTER TABLE public.drivers DROP COLUMN car_number`,
    code: 2,
    says: /source contract violated/,
  },
  { name: 'reconcile with a bad flag', args: () => ['reconcile', '--limit', '-1'], noDatabase: true, code: 2, says: /invalid --limit -1/ },
  { name: 'reconcile --preview', args: () => ['reconcile', '--preview'], code: 0, says: /No link would change/ },
  { name: 'reconcile --preview with --until-done', args: () => ['reconcile', '--preview', '--until-done'], noDatabase: true, code: 2, says: /--until-done/ },
  { name: 'alerts, none fire', args: () => ['alerts'], setup: completedRun, code: 0, says: /No alert fires/ },
  {
    name: 'alerts, some fire',
    args: () => ['alerts'],
    setup: `${completedRun};
      INSERT INTO canon.ingestion_runs (job_name, status, source_tables, started_at, created_at, completed_at, error_message)
      VALUES ('reconcile_cabinet_leads_pipeline', 'FAILED', '["module_ct_cabinet_leads"]', now(), now(), now(), 'boom')`,
    code: 1,
    says: /1 alert firing/,
  },
  { name: 'import-leads with rejected rows', args: () => ['import-leads', fixture('broken.csv')], code: 1, says: /rejected 8/ },
  { name: 'import-leads of a clean file', args: () => ['import-leads', fixture('bom_crlf.csv')], code: 0, says: /rejected 0/ },
  { name: 'import-leads of a Spanish Excel CSV with rejected rows', args: () => ['import-leads', fixture('excel_es_windows1252.csv')], code: 1, says: /Windows-1252 \(detected\)[^]*rejected 3/ },
  { name: 'export claims to an xlsx', args: (dir) => ['export', 'claims', '--out', path.join(dir, 'claims.xlsx')], code: 0, says: /wrote .*claims\.xlsx: 0 claims, xlsx/ },
  { name: 'export limbo to a CSV', args: (dir) => ['export', 'limbo', '--out', path.join(dir, 'limbo.csv')], code: 0, says: /wrote .*limbo\.csv: 0 leads, csv/ },
  {
    name: 'export failing on the database',
    args: (dir) => ['export', 'claims', '--out', path.join(dir, 'claims.csv')],
    setup: `DROP VIEW ops.v_cabinet_claims`,
    code: 1,
    says: /relation "ops\.v_cabinet_claims" does not exist/,
  },
  { name: 'export with a bad flag', args: () => ['export', 'claims', '--status', 'lost'], noDatabase: true, code: 2, says: /invalid --status "lost"/ },
  {
    name: 'resolve-lead refused (unknown lead)',
    args: () => ['resolve-lead', 'NOPE', 'd1', '--note', 'x'],
    code: 1,
    says: /resolve-lead refused: unknown lead 'NOPE'/,
  },
  { name: 'ignore-lead refused (unknown lead)', args: () => ['ignore-lead', 'NOPE', '--note', 'x'], code: 1, says: /ignore-lead refused/ },
  { name: 'unlink-lead refused (unknown lead)', args: () => ['unlink-lead', 'NOPE', '--note', 'x'], code: 1, says: /unlink-lead refused/ },
  { name: 'doctor, all hold', args: () => ['doctor'], code: 0, says: /all invariants hold/ },
  {
    name: 'doctor, one violated',
    args: () => ['doctor'],
    setup: `INSERT INTO canon.ingestion_runs (job_name, status, started_at) VALUES ('reconcile_cabinet_leads_pipeline', 'RUNNING', now() - interval '3 hours')`,
    code: 1,
    says: /1 invariant\(s\) violated/,
  },
  { name: 'status', args: () => ['status'], code: 0 },
  { name: 'report', args: (dir) => ['report', '--out', path.join(dir, 'report.html')], code: 0, says: /wrote .*report\.html/ },
  { name: 'migrate on an empty database', args: () => ['migrate'], empty: true, code: 0, says: /applied \d+ migration\(s\)/ },
  { name: 'demo', args: () => ['demo', '--leads', '20', '--drivers', '20', '--trip-days', '3'], code: 0 },
  {
    name: 'worker with a bad crontab',
    args: (dir) => {
      const file = path.join(dir, 'crontab.bad');
      writeFileSync(file, '# a typo in the task name\n*/15 * * * * reconcile_cabinet_lead_pipeline\n');
      return ['worker', '--crontab', file];
    },
    noDatabase: true,
    code: 2,
    says: /invalid crontab .*crontab\.bad line 2: unknown task "reconcile_cabinet_lead_pipeline"/,
  },
];

async function sql(url: string, text: string): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => {});
  await c.connect();
  try {
    await c.query(text);
  } finally {
    await c.end();
  }
}

let dataDir: string;

test.before(async () => {
  dataDir = embeddedDataDir('exit-codes');
  // The first start runs initdb; the migrated template is what every case starts from.
  const server = await startEmbedded(dataDir, log);
  try {
    const admin = server.connectionString.replace(/\/cabinet_leads$/, '/postgres');
    await sql(admin, `CREATE DATABASE ${TEMPLATE}`);
    await migrate(admin.replace(/\/postgres$/, `/${TEMPLATE}`), log);
  } finally {
    await server.stop();
  }
});

/** The command on a fresh database of the test server. */
async function withServer(c: Case): Promise<CliResult> {
  const db = c.empty ? await createEmptyDb('exit_codes') : await createTestDb('exit_codes');
  try {
    if (c.setup) await db.query(c.setup);
    return await runCli(c.args(dataDir), { DATABASE_URL: db.url, LOG_LEVEL: 'warn', ...c.env });
  } finally {
    await db.drop();
  }
}

/** The command on the embedded folder, its database reset (by a server the test starts and stops) first. */
async function withEmbedded(c: Case): Promise<CliResult> {
  if (c.noDatabase) return runCli(c.args(dataDir), { DATABASE_URL: '', CABINET_DATA_DIR: dataDir, LOG_LEVEL: 'warn', ...c.env });
  const server = await startEmbedded(dataDir, log);
  try {
    const admin = server.connectionString.replace(/\/cabinet_leads$/, '/postgres');
    await sql(admin, `DROP DATABASE cabinet_leads WITH (FORCE)`);
    await sql(admin, `CREATE DATABASE cabinet_leads${c.empty ? '' : ` TEMPLATE ${TEMPLATE}`}`);
    if (c.setup) await sql(server.connectionString, c.setup);
  } finally {
    await server.stop();
  }
  return runCli(c.args(dataDir), { DATABASE_URL: '', CABINET_DATA_DIR: dataDir, LOG_LEVEL: 'warn', ...c.env });
}

for (const c of cases) {
  // Serial: one embedded data folder; the two ways of one case run side by side.
  test.serial(`${c.name}: exit ${c.code} with DATABASE_URL and with the embedded server`, async (t) => {
    const [server, embedded] = await Promise.all([withServer(c), withEmbedded(c)]);
    t.is(server.code, c.code, `with DATABASE_URL: ${server.stdout}${server.stderr}`);
    t.is(embedded.code, c.code, `embedded: ${embedded.stdout}${embedded.stderr}`);
    if (c.says) {
      t.regex(server.stdout + errorLine(server), c.says, 'with DATABASE_URL');
      t.regex(embedded.stdout + errorLine(embedded), c.says, 'embedded');
    }
    t.is(serverState(path.join(dataDir, 'pg')), undefined, 'the command stopped the embedded server it started');
  });
}

test.serial('--version prints the package version and exits 0, with or without a database', async (t) => {
  const { version } = JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string };
  for (const env of [{ DATABASE_URL: 'postgres://postgres@127.0.0.1:1/never-reached' }, { DATABASE_URL: '', CABINET_DATA_DIR: dataDir }]) {
    const r = await runCli(['--version'], env);
    t.is(r.code, 0, r.stderr);
    t.is(r.stdout, `${version}\n`);
  }
});
