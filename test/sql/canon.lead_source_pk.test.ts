import test from 'ava';
import pg from 'pg';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { PROJECT_ROOT } from '../../src/config.js';
import { createTestDb, type TestDb } from '../helpers/db.js';
import { ADMIN_URL, urlFor } from '../helpers/env.js';

let db: TestDb;
test.before(async () => {
  db = await createTestDb('lead_source_pk');
});
test.after.always(() => db.drop());

/** Unicode White_Space plus the invisible characters named in docs/limbo-and-claims.md. */
const INVISIBLE = [0x180e, 0x200b, 0x2060, 0xfeff];

async function blanks(): Promise<number[]> {
  const [r] = await db.query<{ b: string }>(`SELECT canon.blank_characters() AS b`);
  return [...r!.b].map((c) => c.codePointAt(0)!);
}

test('uses the trimmed external_id when present', async (t) => {
  const [r] = await db.query<{ k: string }>(`SELECT canon.lead_source_pk('  abc123 ', 7) AS k`);
  t.is(r?.k, 'abc123');
});

test('falls back to the integer id for NULL, empty and blank external ids', async (t) => {
  const rows = await db.query<{ k: string }>(
    `SELECT canon.lead_source_pk(x, 42) AS k FROM unnest(ARRAY[NULL, '', '   ', E'\\t\\r\\n', E'\\u00a0\\u200b\\ufeff']::text[]) x`,
  );
  t.deepEqual(rows.map((r) => r.k), ['42', '42', '42', '42', '42']);
});

test('external ids that differ only by blanks at their ends are one key, whichever blank and end', async (t) => {
  const codes = await blanks();
  const rows = await db.query<{ code: number; k: string }>(
    `SELECT c AS code, canon.lead_source_pk(x, 1) AS k
     FROM unnest($1::int[]) c
     CROSS JOIN LATERAL (VALUES ('NB-1' || chr(c)), (chr(c) || 'NB-1'), (chr(c) || chr(c) || 'NB-1 ' || chr(c))) v (x)`,
    [codes],
  );
  t.is(rows.length, codes.length * 3);
  for (const r of rows) t.is(r.k, 'NB-1', `U+${r.code.toString(16).toUpperCase().padStart(4, '0')}`);
  // The case: 'NB-1<TAB>' and 'NB-1' (and an NBSP copy-paste) are one lead.
  const [one] = await db.query<{ n: number }>(
    `SELECT count(DISTINCT canon.lead_source_pk(x, 1))::int AS n FROM unnest(ARRAY['NB-1', E'NB-1\\t', E'\\u00a0NB-1', E'NB-1\\r\\n']) x`,
  );
  t.is(one!.n, 1);
});

test('blanks inside an id, and other characters at its ends, are kept', async (t) => {
  const rows = await db.query<{ k: string }>(
    `SELECT canon.lead_source_pk(x, 1) AS k FROM unnest(ARRAY[E'NB\\t1', E'NB\\u00a01 ', '-NB-1-', E'NB-1\\u200d', '_']) x`,
  );
  t.deepEqual(rows.map((r) => r.k), ['NB\t1', 'NB\u00a01', '-NB-1-', 'NB-1\u200d', '_']);
});

test('the blank characters are Unicode White_Space plus U+180E, U+200B, U+2060 and U+FEFF', async (t) => {
  const whiteSpace: number[] = [];
  for (let cp = 0; cp <= 0xffff; cp++) if (/\p{White_Space}/u.test(String.fromCodePoint(cp))) whiteSpace.push(cp);
  const sql = await blanks();
  t.deepEqual([...sql].sort((a, b) => a - b), [...whiteSpace, ...INVISIBLE].sort((a, b) => a - b));
  // Whatever JavaScript's trim() strips is blank here too (the import trims other cells with it).
  const trimmedByJs: number[] = [];
  for (let cp = 0; cp <= 0xffff; cp++) if (String.fromCodePoint(cp).trim() === '') trimmedByJs.push(cp);
  t.deepEqual(trimmedByJs.filter((cp) => !sql.includes(cp)), []);
});

test('is inlined into the query with the blank list as a constant (no call per row)', async (t) => {
  const plan = await db.query<{ 'QUERY PLAN': string }>(
    `EXPLAIN (VERBOSE, COSTS OFF) SELECT canon.lead_source_pk(external_id, id) FROM public.module_ct_cabinet_leads`,
  );
  const output = plan.map((r) => r['QUERY PLAN']).join('\n');
  t.regex(output, /btrim\(\(?external_id\)?(::text)?, '[^']+'::text\)/);
  t.notRegex(output, /lead_source_pk|blank_characters/);
});

test('in a database that is not UTF-8 the list holds the blanks that encoding has', async (t) => {
  const name = `t_blank_win1252_${process.pid}`;
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name} ENCODING 'WIN1252' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`);
  const c = new pg.Client({ connectionString: urlFor(name) });
  try {
    await c.connect();
    await c.query(`CREATE SCHEMA canon`);
    await c.query(readFileSync(path.join(PROJECT_ROOT, 'sql', 'canon', 'canon.blank_characters.sql'), 'utf8'));
    await c.query(readFileSync(path.join(PROJECT_ROOT, 'sql', 'canon', 'canon.lead_source_pk.sql'), 'utf8'));
    const [r] = await c.query<{ b: string; k: string }>(`SELECT canon.blank_characters() AS b, canon.lead_source_pk(E'\\u00a0NB-1\\t', 1) AS k`).then((x) => x.rows);
    t.deepEqual([...r!.b].map((ch) => ch.codePointAt(0)), [0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x20, 0xa0]);
    t.is(r!.k, 'NB-1');
  } finally {
    await c.end().catch(() => {});
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
  }
});
