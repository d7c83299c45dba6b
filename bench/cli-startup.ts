// The cron path: what one `cabinet-leads reconcile` process costs when there is nothing to
// do (an idle run), against the floor of any Node client, a bare `node` process that
// connects and runs SELECT 1, measured in the same run, alternating, medians of --rounds.
// Also the same reconcile run from the TypeScript sources (tsx, what every start paid
// before the CLI was compiled by `npm ci`: CABINET_LEADS_FROM_SOURCE=1).
//   npm run bench:startup -- [--rounds 15] [--leads 2000]
// DATABASE_URL: the server to use (a database is created and dropped); unset: embedded.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { PROJECT_ROOT } from '../src/config.js';
import { benchArgs, benchDatabase, demo, intArg, loadAvg, machine, median, ms, pipeline, table } from './lib.js';

benchArgs(import.meta.url, { values: ['rounds', 'leads'] });
const rounds = intArg('rounds', 15);
const leads = intArg('leads', 2000);
const BIN = path.join(PROJECT_ROOT, 'bin', 'cabinet-leads.js');
const FLOOR = `import pg from 'pg'; const c = new pg.Client({ connectionString: process.env.DATABASE_URL }); await c.connect(); await c.query('SELECT 1'); await c.end();`;

function timed(args: string[], env: NodeJS.ProcessEnv): number {
  const t = performance.now();
  const r = spawnSync(process.execPath, args, { cwd: PROJECT_ROOT, env: { ...process.env, LOG_FORMAT: 'json', LOG_LEVEL: 'warn', ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  const elapsed = performance.now() - t;
  if (r.status !== 0) throw new Error(`${args.join(' ')} exited ${r.status}: ${r.stderr.toString().slice(-500)}`);
  return elapsed;
}

const db = await benchDatabase('startup');
try {
  if (leads > 0) await demo(db, { seed: 42, leads, drivers: Math.max(leads * 2, 10), tripDays: 30 });
  await pipeline(db, 'p_days_back => 30, p_limit => 1000000'); // the backfill: later runs are idle
  const env = { DATABASE_URL: db.url };
  const compiled = existsSync(path.join(PROJECT_ROOT, 'dist', 'build.json'));
  const cases: [string, string, string[], NodeJS.ProcessEnv][] = [
    ['floor: node, connect, SELECT 1', `node --input-type=module -e "<pg connect; SELECT 1>"`, ['--input-type=module', '-e', FLOOR], env],
    ['reconcile, idle (compiled by npm ci)', 'node bin/cabinet-leads.js reconcile', [BIN, 'reconcile'], env],
    ['reconcile, idle, from the sources (tsx)', 'CABINET_LEADS_FROM_SOURCE=1 node bin/cabinet-leads.js reconcile', [BIN, 'reconcile'], { ...env, CABINET_LEADS_FROM_SOURCE: '1' }],
  ];
  for (const [, , args, e] of cases) timed(args, e); // warm the OS caches
  const times = cases.map(() => [] as number[]);
  for (let i = 0; i < rounds; i++) cases.forEach(([, , args, e], k) => times[k]!.push(timed(args, e)));
  const sql = await db.pool.query<{ ms: string }>(
    `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY (stats->'durations_ms'->>'total')::float8)::text AS ms
     FROM (SELECT stats FROM canon.ingestion_runs WHERE trigger = 'cli' ORDER BY id DESC LIMIT $1) r`,
    [rounds * 2],
  );
  const floor = median(times[0]!);
  console.log(`command: npm run bench:startup -- --rounds ${rounds} --leads ${leads}`);
  console.log(`machine: ${machine(db.serverVersion)}; load average ${loadAvg()}`);
  if (!compiled) console.log('note: dist/ is missing (npm ci with --ignore-scripts?): the "compiled" row ran from the sources too');
  console.log(
    table([
      ['process', 'command', 'median wall', 'min', 'max', 'x floor'],
      ...cases.map(([name, command], k) => [name, command, ms(median(times[k]!)), ms(Math.min(...times[k]!)), ms(Math.max(...times[k]!)), (median(times[k]!) / floor).toFixed(2)]),
    ]),
  );
  console.log(`SQL of an idle run (stats.durations_ms.total, median): ${ms(Number(sql.rows[0]?.ms))}`);
} finally {
  await db.close();
}
