// Writes a migration as a snapshot of the given sql/ files, in the given order:
//   npx tsx scripts/new-migration.ts <name> sql/canon/canon.x.sql [sql/ops/ops.y.sql ...]
// A function or view change is always a new migration that copies its sql/ file, so
// that migrations stay immutable and sql/ stays the readable truth (test: no drift).
// After the first release only (migrations/README.md); a table change adds its ALTER TABLE
// statements by hand at the top of the migration written.
// --number N rewrites migration N in place: only for a migration not yet on main.
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const args = process.argv.slice(2);
let number: number | undefined;
const n = args.indexOf('--number');
if (n >= 0) {
  number = Number(args[n + 1]);
  args.splice(n, 2);
}
const [name, ...files] = args;
if (!name || !/^[a-z0-9_]+$/.test(name) || files.length === 0 || (number !== undefined && !Number.isInteger(number))) {
  console.error('usage: tsx scripts/new-migration.ts [--number N] <snake_case_name> <sql file> [...]');
  process.exit(2);
}
const dir = path.resolve(import.meta.dirname, '..', 'migrations');
const existing = readdirSync(dir).filter((f) => /^\d{4}_.*\.sql$/.test(f));
const last = existing.map((f) => Number.parseInt(f.slice(0, 4), 10)).reduce((a, b) => Math.max(a, b), 0);
const num = number ?? last + 1;
const prefix = String(num).padStart(4, '0');
for (const f of existing) if (f.startsWith(`${prefix}_`)) rmSync(path.join(dir, f));
const file = path.join(dir, `${prefix}_${name}.sql`);
const body = files
  .map((f) => `-- snapshot of ${f}\n${readFileSync(f, 'utf8').trimEnd()}\n`)
  .join('\n');
writeFileSync(file, `-- Up Migration\n${body}`);
console.log(`wrote ${path.relative(process.cwd(), file)}`);
