// The migrations: idempotent, safe on a database whose source tables already exist
// (with extra columns), and in agreement with sql/, the readable truth (no drift).
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { PROJECT_ROOT } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { migrate } from '../../src/migrate.js';
import { createEmptyDb, createTestDb, type TestDb } from '../helpers/db.js';

const log = createLogger({ logLevel: 'silent', logFormat: 'json' });
const SQL_DIR = path.join(PROJECT_ROOT, 'sql');

function sqlFiles(): { object: string; file: string }[] {
  return readdirSync(SQL_DIR, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.sql'))
    .map((f) => ({ object: path.basename(f, '.sql'), file: path.join(SQL_DIR, f) }))
    .sort((a, b) => a.object.localeCompare(b.object));
}

interface CatalogRow {
  object: string;
  kind: string;
  definition: string;
  comment: string | null;
}

/** Every function, procedure and view of canon and ops, as PostgreSQL prints it back. */
async function catalog(q: (sql: string) => Promise<CatalogRow[]>): Promise<CatalogRow[]> {
  return q(`
    SELECT n.nspname || '.' || p.proname AS object, 'function' AS kind,
           pg_get_functiondef(p.oid) AS definition, obj_description(p.oid, 'pg_proc') AS comment
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname IN ('canon', 'ops')
    UNION ALL
    SELECT n.nspname || '.' || c.relname, 'view', pg_get_viewdef(c.oid, true), obj_description(c.oid, 'pg_class')
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname IN ('canon', 'ops') AND c.relkind IN ('v', 'm')
    ORDER BY 1, 3`);
}

test('a fresh migrate creates exactly the functions and views that sql/ defines, one file each', async (t) => {
  const db = await createTestDb('drift');
  try {
    const objects = [...new Set((await catalog((s) => db.query<CatalogRow>(s))).map((r) => r.object))].sort();
    t.deepEqual(objects, sqlFiles().map((f) => f.object));
  } finally {
    await db.drop();
  }
});

test('a fresh migrate equals sql/: re-applying every sql/ file changes no definition (no drift)', async (t) => {
  const db = await createTestDb('drift');
  const c = await db.connect();
  try {
    const q = async (s: string) => (await c.query<CatalogRow>(s)).rows;
    const migrated = await catalog(q);
    await c.query('BEGIN');
    for (const f of sqlFiles()) {
      try {
        await c.query(readFileSync(f.file, 'utf8'));
      } catch (err) {
        t.fail(`${f.file} does not apply on the migrated schema: ${(err as Error).message}`);
      }
    }
    const fromSql = await catalog(q);
    await c.query('ROLLBACK');
    const byObject = (rows: CatalogRow[]) => new Map(rows.map((r) => [`${r.object} ${r.definition.slice(0, 200)}`, r]));
    const a = byObject(migrated);
    for (const r of fromSql) {
      const m = a.get(`${r.object} ${r.definition.slice(0, 200)}`);
      t.deepEqual(
        { definition: m?.definition, comment: m?.comment },
        { definition: r.definition, comment: r.comment },
        `${r.object}: the migrations do not produce sql/'s definition; snapshot it with scripts/new-migration.ts`,
      );
    }
    t.is(fromSql.length, migrated.length);
  } finally {
    await db.drop();
  }
});

test('migrating twice applies nothing the second time', async (t) => {
  const db = await createEmptyDb('migrate_twice');
  try {
    const first = await migrate(db.url, log);
    t.true(first.length >= 3);
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
