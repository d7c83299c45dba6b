// The whole schema of the product as PostgreSQL prints it back, one row per fact, to
// compare a fresh migrate with sql/ (test/migrations/migrate.test.ts).
import type pg from 'pg';

export const PRODUCT_SCHEMAS = ['canon', 'canon_internal', 'ops'];

export interface CatalogFact {
  kind: string;
  object: string;
  definition: string;
}

const FACTS = `
WITH ns AS (
  SELECT oid, nspname FROM pg_namespace WHERE nspname = ANY($1::text[])
), rel AS (
  SELECT c.oid, ns.nspname || '.' || c.relname AS name, c.relkind, c.reloptions, c.relacl
  FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'c')
), upstream AS (
  -- the upstream tables the product creates when absent, and its index on one of them
  SELECT c.oid, 'public.' || c.relname AS name, c.relkind, c.reloptions, c.relacl
  FROM pg_class c
  WHERE c.relnamespace = 'public'::regnamespace
    AND c.relname IN ('module_ct_cabinet_leads', 'drivers', 'summary_daily')
), tab AS (
  SELECT * FROM rel WHERE relkind IN ('r', 'p', 'c') UNION ALL SELECT * FROM upstream
)
SELECT 'schema' AS kind, nspname AS object,
       coalesce(obj_description(ns.oid, 'pg_namespace'), '') || ' acl ' || coalesce((SELECT nspacl::text FROM pg_namespace n WHERE n.oid = ns.oid), '') AS definition
FROM ns
UNION ALL
SELECT 'extension', extname, extversion FROM pg_extension WHERE extname <> 'plpgsql'
UNION ALL
SELECT 'relation', name, relkind::text || ' ' || coalesce(reloptions::text, '') || ' acl ' || coalesce(relacl::text, '')
       || ' comment ' || coalesce(obj_description(oid, 'pg_class'), '')
FROM tab
UNION ALL
SELECT 'column', t.name || '.' || a.attname,
       format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
       || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '')
       || CASE a.attidentity WHEN 'a' THEN ' IDENTITY ALWAYS' WHEN 'd' THEN ' IDENTITY BY DEFAULT' ELSE '' END
       || CASE a.attgenerated WHEN 's' THEN ' GENERATED' ELSE '' END
       || ' #' || a.attnum
       || ' comment ' || coalesce(col_description(a.attrelid, a.attnum), '')
       || ' acl ' || coalesce(a.attacl::text, '')
FROM tab t JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
UNION ALL
SELECT 'constraint', t.name || ' ' || c.conname, pg_get_constraintdef(c.oid) || coalesce(' comment ' || obj_description(c.oid, 'pg_constraint'), '')
FROM tab t JOIN pg_constraint c ON c.conrelid = t.oid
UNION ALL
SELECT 'index', t.name || ' ' || i.relname, pg_get_indexdef(i.oid) || coalesce(' comment ' || obj_description(i.oid, 'pg_class'), '')
FROM tab t JOIN pg_index x ON x.indrelid = t.oid JOIN pg_class i ON i.oid = x.indexrelid
UNION ALL
SELECT 'trigger', t.name || ' ' || g.tgname, pg_get_triggerdef(g.oid) || CASE WHEN g.tgenabled <> 'O' THEN ' enabled ' || g.tgenabled::text ELSE '' END
FROM tab t JOIN pg_trigger g ON g.tgrelid = t.oid AND NOT g.tgisinternal
UNION ALL
SELECT 'view', name, pg_get_viewdef(oid, true) || ' acl ' || coalesce(relacl::text, '') || ' comment ' || coalesce(obj_description(oid, 'pg_class'), '')
FROM rel WHERE relkind IN ('v', 'm')
UNION ALL
SELECT 'sequence', name, coalesce(relacl::text, '') FROM rel WHERE relkind = 'S'
UNION ALL
SELECT 'function', ns.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
       pg_get_functiondef(p.oid) || ' acl ' || coalesce(p.proacl::text, '') || ' comment ' || coalesce(obj_description(p.oid, 'pg_proc'), '')
FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace
UNION ALL
SELECT 'type', ns.nspname || '.' || t.typname, t.typtype::text || coalesce(' comment ' || obj_description(t.oid, 'pg_type'), '')
FROM pg_type t JOIN ns ON ns.oid = t.typnamespace
WHERE t.typtype IN ('e', 'd') OR (t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
ORDER BY 1, 2, 3`;

export async function catalogFacts(client: pg.ClientBase): Promise<CatalogFact[]> {
  return (await client.query<CatalogFact>(FACTS, [PRODUCT_SCHEMAS])).rows;
}

/**
 * The rows of every product table that has some (the seed rows of a fresh schema), as
 * JSON without their timestamps (now() differs between two databases).
 */
export async function seedRows(client: pg.ClientBase): Promise<Record<string, unknown[]>> {
  const tables = (
    await client.query<{ name: string; stamps: string[] }>(
      `SELECT format('%I.%I', n.nspname, c.relname) AS name,
              coalesce(array_agg(a.attname::text) FILTER (WHERE a.atttypid IN ('timestamptz'::regtype, 'timestamp'::regtype)), '{}') AS stamps
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
       WHERE n.nspname = ANY($1::text[]) AND c.relkind IN ('r', 'p')
       GROUP BY 1 ORDER BY 1`,
      [PRODUCT_SCHEMAS],
    )
  ).rows;
  const out: Record<string, unknown[]> = {};
  for (const t of tables) {
    const { rows } = await client.query<{ rows: unknown[] | null }>(
      `SELECT jsonb_agg(r ORDER BY r::text) AS rows FROM (SELECT to_jsonb(t) - $1::text[] AS r FROM ${t.name} t) s`,
      [t.stamps],
    );
    if (rows[0]?.rows) out[t.name] = rows[0].rows;
  }
  return out;
}
