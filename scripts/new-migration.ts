// Writes the next migration as a snapshot of the given sql/ files, in the given order:
//   npx tsx scripts/new-migration.ts <name> sql/canon/canon.x.sql [sql/ops/ops.y.sql ...]
// A function or view change is always a new migration that copies its sql/ file, so
// that migrations stay immutable and sql/ stays the readable truth (test: no drift).
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const [name, ...files] = process.argv.slice(2);
if (!name || !/^[a-z0-9_]+$/.test(name) || files.length === 0) {
  console.error('usage: tsx scripts/new-migration.ts <snake_case_name> <sql file> [...]');
  process.exit(2);
}
const dir = path.resolve(import.meta.dirname, '..', 'migrations');
const last = readdirSync(dir)
  .map((f) => Number.parseInt(f.slice(0, 4), 10))
  .filter((n) => Number.isFinite(n))
  .reduce((a, b) => Math.max(a, b), 0);
const file = path.join(dir, `${String(last + 1).padStart(4, '0')}_${name}.sql`);
const body = files
  .map((f) => `-- snapshot of ${f}\n${readFileSync(f, 'utf8').trimEnd()}\n`)
  .join('\n');
writeFileSync(file, `-- Up Migration\n${body}`);
console.log(`wrote ${path.relative(process.cwd(), file)}`);
