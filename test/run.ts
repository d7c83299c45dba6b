// The test command (npm test): prepares one PostgreSQL server and a template database
// built by the migrations, runs ava against it, and ends with the summary line
// "tests: N passed, M failed" that CI reads.
//   TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npm test   (an existing server)
//   npm test                                                                (embedded server)
// Extra arguments go to ava (e.g. a file: npm test -- test/sql/canon.setting.test.ts).
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import pg from 'pg';
import { PROJECT_ROOT } from '../src/config.js';
import { describeUrl } from '../src/db.js';
import { endOnSignals, startEmbedded, type EmbeddedServer } from '../src/embedded.js';
import { createLogger } from '../src/logger.js';
import { migrate } from '../src/migrate.js';

const log = createLogger({ logLevel: process.env.LOG_LEVEL ?? 'warn', logFormat: 'json' });

function withDb(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

async function adminQuery(url: string, sql: string): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

async function main(): Promise<number> {
  let embedded: EmbeddedServer | undefined;
  let adminUrl = process.env.TEST_DATABASE_URL;
  if (!adminUrl) {
    // Ctrl-C on the tests stops the server too (it runs in its own session).
    endOnSignals();
    embedded = await startEmbedded(path.join(PROJECT_ROOT, '.data', 'test'), log);
    adminUrl = withDb(embedded.connectionString, 'postgres');
  }
  const template = `cabinet_leads_tpl_${randomBytes(4).toString('hex')}`;
  let code = 1;
  try {
    await adminQuery(adminUrl, `CREATE DATABASE ${template}`);
    await migrate(withDb(adminUrl, template), log);
    const version = await (async () => {
      const c = new pg.Client({ connectionString: adminUrl });
      await c.connect();
      const v = (await c.query<{ v: string }>(`SELECT current_setting('server_version') AS v`)).rows[0]?.v;
      await c.end();
      return v;
    })();
    console.log(`# server: PostgreSQL ${version} at ${describeUrl(adminUrl)}${embedded ? ` (embedded, ${embedded.endpoint.transport})` : ''}; template ${template}`);
    const counts = { pass: 0, fail: 0, skip: 0, todo: 0 };
    code = await new Promise<number>((resolve) => {
      const child = spawn(process.execPath, [path.join(PROJECT_ROOT, 'node_modules', 'ava', 'entrypoints', 'cli.mjs'), '--tap', ...process.argv.slice(2)], {
        cwd: PROJECT_ROOT,
        env: { ...process.env, TEST_ADMIN_URL: adminUrl, TEST_TEMPLATE_DB: template, TEST_SERVER_EMBEDDED: embedded ? '1' : '' },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let buf = '';
      child.stdout.on('data', (chunk: Buffer) => {
        process.stdout.write(chunk);
        buf += chunk.toString('utf8');
        let i: number;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          const m = /^# (pass|fail|skip|todo) (\d+)$/.exec(line.trim());
          if (m) counts[m[1] as keyof typeof counts] = Number(m[2]);
        }
      });
      child.on('close', (c) => resolve(c ?? 1));
    });
    const skipped = counts.skip + counts.todo;
    console.log(`tests: ${counts.pass} passed, ${counts.fail} failed${skipped ? `, ${skipped} skipped` : ''}`);
    if (counts.pass + counts.fail === 0) code = code || 1;
    if (counts.fail > 0) code = code || 1;
  } finally {
    await adminQuery(adminUrl, `DROP DATABASE IF EXISTS ${template} WITH (FORCE)`).catch(() => {});
    await embedded?.stop();
  }
  return code;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`test runner: ${err instanceof Error ? err.message : String(err)}`);
    console.log('tests: 0 passed, 1 failed');
    process.exit(1);
  },
);
