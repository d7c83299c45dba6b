// The baseline migration, written from sql/ (before the first release: docs/development.md):
//   npx tsx scripts/baseline.ts            writes migrations/0001_baseline.sql from the files
//                                           of sql/, in the order of sql/load-order.txt
//   npx tsx scripts/baseline.ts --order    finds an order the files load in (dependencies
//                                           first) by loading them into an empty database of
//                                           DATABASE_URL's server, and writes sql/load-order.txt
// A file's place in the order matters only when an object needs another to exist when it
// is created: a view the relations and functions it reads, a table the functions of its
// triggers and defaults, a function the types of its signature. Function bodies are not
// checked at creation (check_function_bodies is off), so functions load in any order.
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';

const ROOT = path.resolve(import.meta.dirname, '..');
const SQL_DIR = path.join(ROOT, 'sql');
const ORDER_FILE = path.join(SQL_DIR, 'load-order.txt');
const BASELINE = path.join(ROOT, 'migrations', '0001_baseline.sql');
export const PRELUDE = 'SET check_function_bodies = off;';

function sqlFiles(): string[] {
  return readdirSync(SQL_DIR, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.sql'))
    .map((f) => `sql/${f.split(path.sep).join('/')}`)
    .sort();
}

/** The files of sql/load-order.txt, checked against sql/: none missing, none extra. */
export function loadOrder(): string[] {
  const listed = readFileSync(ORDER_FILE, 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const files = sqlFiles();
  const missing = files.filter((f) => !listed.includes(f));
  const extra = listed.filter((f) => !files.includes(f));
  if (missing.length || extra.length) {
    throw new Error(`sql/load-order.txt does not list sql/ exactly: missing ${JSON.stringify(missing)}, extra ${JSON.stringify(extra)}`);
  }
  return listed;
}

/** schema 0, type 1, function 2, table 3, view 4, upstream table 5. */
function kindRank(file: string): number {
  if (file.startsWith('sql/public/')) return 5;
  if (!path.basename(file, '.sql').includes('.')) return 0;
  const text = readFileSync(path.join(ROOT, file), 'utf8');
  if (/^CREATE TYPE /m.test(text)) return 1;
  if (/^CREATE TABLE /m.test(text)) return 3;
  if (/^CREATE (OR REPLACE )?VIEW /m.test(text)) return 4;
  return 2;
}

async function findOrder(url: string): Promise<void> {
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  const name = `cabinet_leads_order_${process.pid}`;
  await admin.query(`CREATE DATABASE ${name}`);
  const u = new URL(url);
  u.pathname = `/${name}`;
  const c = new pg.Client({ connectionString: u.toString() });
  await c.connect();
  try {
    await c.query('BEGIN');
    await c.query(PRELUDE);
    // Readable as well as valid: schemas, then types, functions, tables, views, the upstream
    // tables; within a kind by name, except where an object needs another one first.
    let pending = sqlFiles().sort((a, b) => kindRank(a) - kindRank(b) || a.localeCompare(b));
    const order: string[] = [];
    while (pending.length) {
      let loaded: string | undefined;
      const errors: string[] = [];
      for (const f of pending) {
        await c.query('SAVEPOINT f');
        try {
          await c.query(readFileSync(path.join(ROOT, f), 'utf8'));
          await c.query('RELEASE SAVEPOINT f');
          loaded = f;
          break;
        } catch (err) {
          await c.query('ROLLBACK TO SAVEPOINT f');
          errors.push(`${f}: ${(err as Error).message}`);
        }
      }
      if (!loaded) throw new Error(`these files load in no order:\n${errors.join('\n')}`);
      order.push(loaded);
      pending = pending.filter((f) => f !== loaded);
    }
    writeFileSync(
      ORDER_FILE,
      `# The order sql/'s files load in (dependencies first), for the baseline migration and the drift\n` +
        `# test. Written by: npx tsx scripts/baseline.ts --order (then edited by hand only to move a file).\n` +
        `${order.join('\n')}\n`,
    );
    console.log(`wrote sql/load-order.txt (${order.length} files)`);
  } finally {
    await c.end();
    await admin.query(`DROP DATABASE IF EXISTS ${name}`);
    await admin.end();
  }
}

function writeBaseline(): void {
  const body = loadOrder()
    .map((f) => `-- snapshot of ${f}\n${readFileSync(path.join(ROOT, f), 'utf8').trimEnd()}\n`)
    .join('\n');
  writeFileSync(
    BASELINE,
    `-- Up Migration\n-- The baseline: every object of sql/, in the order of sql/load-order.txt\n` +
      `-- (npx tsx scripts/baseline.ts). Before the first release it is written again from sql/;\n` +
      `-- after it, it never changes (migrations/README.md).\n${PRELUDE}\n\n${body}`,
  );
  console.log(`wrote ${path.relative(process.cwd(), BASELINE)}`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(import.meta.filename)) {
  if (process.argv.includes('--order')) {
    const url = process.env.DATABASE_URL;
    if (!url) {
      console.error('scripts/baseline.ts --order: set DATABASE_URL to a server where a scratch database may be created');
      process.exit(2);
    }
    await findOrder(url);
  } else {
    writeBaseline();
  }
}
