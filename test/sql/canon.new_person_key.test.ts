// New person keys (canon.new_person_key): RFC 9562 version 7 UUIDs, ordered by creation
// time (what lets a batch's new persons land at the right end of every person_key index),
// unique, and the default of identity_registry.person_key; the pipeline's new persons get
// them.
import test from 'ava';
import { freshDb } from '../helpers/db.js';
import { runPipeline } from '../helpers/pipeline.js';
import { addDays, businessToday } from '../helpers/rows.js';
import { linkedLead } from '../helpers/scenario.js';
import { generateDemoData } from '../../src/demo.js';
import { createLogger } from '../../src/logger.js';

test('version 7, variant RFC, the millisecond clock in the first 48 bits, unique', async (t) => {
  const db = await freshDb(t, 'person_key_v7');
  // (the clock read around the statement: a row's own clock reading could be a
  // millisecond or more away from the key's under load)
  const before = Date.now();
  const [r] = await db.query<{ n: number; distinct_keys: number; v7: number; variant: number; first_ms: string; last_ms: string }>(`
    WITH k AS (SELECT canon.new_person_key() AS key FROM generate_series(1, 20000)),
         m AS (SELECT key, ('x' || substr(replace(key::text, '-', ''), 1, 12))::bit(48)::bigint AS ms FROM k)
    SELECT count(*)::int AS n, count(DISTINCT key)::int AS distinct_keys,
           count(*) FILTER (WHERE substr(key::text, 15, 1) = '7')::int AS v7,
           count(*) FILTER (WHERE substr(key::text, 20, 1) IN ('8', '9', 'a', 'b'))::int AS variant,
           min(ms)::text AS first_ms, max(ms)::text AS last_ms
    FROM m`);
  const after = Date.now();
  t.like(r, { n: 20000, distinct_keys: 20000, v7: 20000, variant: 20000 });
  t.true(Number(r!.first_ms) >= before - 1 && Number(r!.last_ms) <= after + 1, `${before} <= ${r!.first_ms} .. ${r!.last_ms} <= ${after}`);
});

test('keys made later sort after keys made earlier (by the millisecond)', async (t) => {
  const db = await freshDb(t, 'person_key_order');
  const [a] = await db.query<{ k: string }>(`SELECT canon.new_person_key()::text AS k`);
  await db.query(`SELECT pg_sleep(0.005)`);
  const [b] = await db.query<{ k: string }>(`SELECT canon.new_person_key()::text AS k`);
  t.true(a!.k < b!.k, `${a!.k} < ${b!.k}`);
});

test('identity_registry defaults to it, and the persons a run creates have version 7 keys', async (t) => {
  const db = await freshDb(t, 'person_key_run');
  const [d] = await db.query<{ d: string }>(`
    SELECT pg_get_expr(adbin, adrelid) AS d FROM pg_attrdef
    WHERE adrelid = 'canon.identity_registry'::regclass
      AND adnum = (SELECT attnum FROM pg_attribute WHERE attrelid = 'canon.identity_registry'::regclass AND attname = 'person_key')`);
  t.is(d!.d, 'canon.new_person_key()');
  await linkedLead(db, addDays(await businessToday(db), -3));
  const c = await db.pool.connect();
  try {
    await generateDemoData(c, { seed: 7, leads: 300, drivers: 400, tripDays: 10, reset: false }, createLogger({ logLevel: 'silent', logFormat: 'json' }));
  } finally {
    c.release();
  }
  const run = await runPipeline(db, 'p_days_back => 12');
  t.is(run.status, 'COMPLETED', run.error_message ?? '');
  const [p] = await db.query<{ created: number; v7: number }>(`
    SELECT count(*)::int AS created, count(*) FILTER (WHERE substr(person_key::text, 15, 1) = '7')::int AS v7
    FROM canon.identity_registry WHERE created_run_id = $1`, [run.id]);
  t.true(p!.created > 100, `${p!.created} persons created`);
  t.is(p!.v7, p!.created);
});
