// The migrations: in agreement with sql/, the readable truth, over the whole catalog (no
// drift); applied once; safe on a database whose upstream tables already exist.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { PROJECT_ROOT } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { migrate } from '../../src/migrate.js';
import { loadOrder, PRELUDE } from '../../scripts/baseline.js';
import { catalogFacts, seedRows, type CatalogFact } from '../helpers/catalog.js';
import { createEmptyDb, createTestDb, type TestDb } from '../helpers/db.js';

const log = createLogger({ logLevel: 'silent', logFormat: 'json' });
const SQL_DIR = path.join(PROJECT_ROOT, 'sql');

/** The database objects sql/ defines: every file but a schema's own (sql/canon/canon.sql). */
function fileObjects(): string[] {
  return readdirSync(SQL_DIR, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.sql'))
    .map((f) => path.basename(f, '.sql'))
    .filter((o) => o.includes('.'))
    .sort();
}

/**
 * A database built the other way: every file of sql/, in the order of sql/load-order.txt,
 * applied by migrate() as one migration (so that what migrate adds after the migrations,
 * graphile-worker's schema and the roles' grants, is there too).
 */
async function loadSql(db: TestDb, t: ExecutionContext): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'sql-as-migration-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const body = loadOrder().map((f) => `-- ${f}\n${readFileSync(path.join(PROJECT_ROOT, f), 'utf8')}`).join('\n');
  writeFileSync(path.join(dir, '0001_sql.sql'), `-- Up Migration\n${PRELUDE}\n${body}`);
  await migrate(db.url, log, { dir });
}

/** What differs between two lists of facts, one line per object. */
function differences(migrated: CatalogFact[], fromSql: CatalogFact[]): string[] {
  const key = (f: CatalogFact) => `${f.kind} ${f.object}`;
  const a = new Map(migrated.map((f) => [key(f), f.definition]));
  const b = new Map(fromSql.map((f) => [key(f), f.definition]));
  const out: string[] = [];
  for (const [k, v] of a) {
    if (!b.has(k)) out.push(`${k}: made by the migrations, not by sql/`);
    else if (b.get(k) !== v) out.push(`${k}: the migrations make\n  ${v}\nbut sql/ says\n  ${b.get(k)}`);
  }
  for (const k of b.keys()) if (!a.has(k)) out.push(`${k}: in sql/, not made by the migrations`);
  return out;
}

test('sql/load-order.txt lists every file of sql/ exactly once', (t) => {
  const order = loadOrder();
  t.is(new Set(order).size, order.length);
});

test('every table, view, function and type of the product has its own file in sql/, named schema.object', async (t) => {
  const db = await createTestDb('objects');
  const c = await db.connect();
  try {
    const facts = await catalogFacts(c);
    const objects = facts
      .filter((f) => ['relation', 'view', 'function', 'type'].includes(f.kind) && !f.definition.startsWith('S'))
      .map((f) => f.object.replace(/\(.*$/, ''));
    t.deepEqual([...new Set(objects)].sort(), fileObjects());
  } finally {
    await db.drop();
  }
});

test('a fresh migrate equals sql/ loaded in its order: every table, column, constraint, index, trigger, function, view, type, comment, grant and seed row', async (t) => {
  const migrated = await createEmptyDb('from_migrations');
  const loaded = await createEmptyDb('from_sql');
  try {
    await migrate(migrated.url, log);
    await loadSql(loaded, t);
    const [a, b] = await Promise.all([migrated.connect(), loaded.connect()]);
    const diffs = differences(await catalogFacts(a), await catalogFacts(b));
    t.deepEqual(diffs, [], `the migrations do not make what sql/ says (docs/development.md):\n${diffs.join('\n')}`);
    t.deepEqual(await seedRows(a), await seedRows(b));
    // The comparison covers every kind of fact (a catalog query that returned nothing would compare nothing).
    t.deepEqual(
      [...new Set((await catalogFacts(a)).map((f) => f.kind))].sort(),
      ['column', 'constraint', 'extension', 'function', 'index', 'relation', 'schema', 'sequence', 'trigger', 'type', 'view'],
    );
  } finally {
    await Promise.all([migrated.drop(), loaded.drop()]);
  }
});

test('migrating twice applies nothing the second time', async (t) => {
  const db = await createEmptyDb('migrate_twice');
  try {
    const first = await migrate(db.url, log);
    t.deepEqual(first, ['0001_baseline']);
    t.deepEqual(await migrate(db.url, log), []);
  } finally {
    await db.drop();
  }
});

test('existing upstream tables with extra columns are kept as they are', async (t) => {
  const db = await createEmptyDb('upstream');
  try {
    await db.query(`
      CREATE TABLE public.module_ct_cabinet_leads (
        id integer PRIMARY KEY, external_id varchar, lead_created_at timestamp, first_name varchar,
        middle_name varchar, last_name varchar, park_phone varchar, asset_plate_number varchar,
        upstream_extra jsonb, created_at timestamp);
      CREATE TABLE public.drivers (
        driver_id varchar NOT NULL, park_id varchar, first_name varchar, middle_name varchar, last_name varchar,
        full_name varchar, phone varchar, license_number varchar, license_normalized_number varchar,
        car_number varchar, car_normalized_number varchar, hire_date date, rating float8, account_balance numeric,
        created_at timestamp, updated_at timestamp);
      CREATE TABLE public.summary_daily (driver_id varchar, date_file varchar, count_orders_completed integer, park_id varchar);
      INSERT INTO public.drivers (driver_id, park_id, phone, rating) VALUES ('d1', 'p1', '51977456321', 4.9);`);
    const before = await db.query(`SELECT table_name, column_name, data_type FROM information_schema.columns
                                   WHERE table_schema = 'public' ORDER BY 1, 2`);
    const indexesBefore = await db.query(`SELECT indexname FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1`);
    await migrate(db.url, log);
    t.deepEqual(
      await db.query(`SELECT table_name, column_name, data_type FROM information_schema.columns
                      WHERE table_schema = 'public' ORDER BY 1, 2`),
      before,
    );
    const indexesAfter = await db.query<{ indexname: string }>(`SELECT indexname FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1`);
    // The only object the product may add to an upstream table is the documented trip-date index.
    t.deepEqual(
      indexesAfter.map((r) => r.indexname).filter((n) => n !== 'summary_daily_driver_trip_date_idx'),
      (indexesBefore as { indexname: string }[]).map((r) => r.indexname),
    );
    t.deepEqual(await db.query(`SELECT driver_id, rating FROM public.drivers`), [{ driver_id: 'd1', rating: 4.9 }]);
    t.deepEqual(await db.query(`SELECT * FROM canon.source_contract_violations()`), []);
  } finally {
    await db.drop();
  }
});

test('a database migrated by another build (a migration this version does not have) is refused, saying how to start again', async (t) => {
  const db = await createEmptyDb('other_build');
  try {
    await migrate(db.url, log);
    await db.query(`INSERT INTO cabinet_migrations.pgmigrations (name, run_on) VALUES ('0035_steps_named_and_shared_pieces', now())`);
    const err = await t.throwsAsync(migrate(db.url, log));
    t.regex(err!.message, /migrated by another build of cabinet-leads: it has applied 1 migration\(s\) this version does not have \(0035_steps_named_and_shared_pieces\)/);
    t.regex(err!.message, /DROP SCHEMA canon, canon_internal, ops, cabinet_migrations CASCADE/);
    t.is((err as { exitCode?: number }).exitCode, 2);
  } finally {
    await db.drop();
  }
});
