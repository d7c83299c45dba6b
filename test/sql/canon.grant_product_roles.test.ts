// The product's roles (canon.grant_product_roles, run by every migrate), tried through
// real connections of LOGIN members of each, as a DBA grants them: what each can do, and
// that everything else is refused with "permission denied" (42501).
//   cabinet_leads_job     runs the pipeline and every operator function; writes rows;
//                         creates, alters and drops nothing.
//   cabinet_leads_reader  reads the ops views and tables, the run log and the settings;
//                         may call ops.explain_lead and ops.check_limbo_alerts read only;
//                         writes nothing, calls no pipeline.
import test, { type ExecutionContext } from 'ava';
import { freshDb, type TestDb } from '../helpers/db.js';
import { loginRole, type LoginRole } from '../helpers/roles.js';
import { seedDemo } from '../reliability/support.js';

/** The SQLSTATE of a statement as this role (undefined: it succeeded). */
async function refusal(role: LoginRole, sql: string): Promise<string | undefined> {
  try {
    await role.query(sql);
    return undefined;
  } catch (err) {
    return (err as { code?: string }).code ?? String(err);
  }
}

async function assertRefused(t: ExecutionContext, role: LoginRole, statements: string[]): Promise<void> {
  for (const sql of statements) t.is(await refusal(role, sql), '42501', `refused to ${role.name}: ${sql}`);
}

async function seeded(t: ExecutionContext, label: string): Promise<TestDb> {
  const db = await freshDb(t, label);
  await seedDemo(db, { seed: 15, leads: 120, drivers: 240, tripDays: 30 });
  return db;
}

test('the job role runs the pipeline, the operator functions and doctor; it creates, alters and drops nothing', async (t) => {
  const db = await seeded(t, 'roles_job');
  const job = await loginRole(t, db.url, 'cabinet_leads_job');

  const [call] = await job.query<{ run: { id: number; status: string; stats: { match: { newly_linked: number }; driver_index: { first_build_bulk: boolean; indexes_created: number } } } }>(
    `CALL ops.reconcile_cabinet_leads_pipeline(p_days_back => 30, p_limit => 2000, run => NULL)`,
  );
  t.is(call!.run.status, 'COMPLETED');
  t.true(call!.run.stats.match.newly_linked > 10, `the run linked leads (${call!.run.stats.match.newly_linked})`);
  const [{ n: recorded } = { n: 0 }] = await job.query<{ n: number }>(`SELECT count(*)::int AS n FROM ops.check_limbo_alerts()`);
  t.true(recorded >= 0);
  const [lead] = await job.query<{ lead_source_pk: string }>(
    `SELECT lead_source_pk FROM ops.v_cabinet_leads_limbo WHERE limbo_stage = 'NO_IDENTITY' ORDER BY lead_source_pk LIMIT 1`,
  );
  const [ignored] = await job.query<{ r: { action: string; db_user: string } }>(`SELECT ops.ignore_lead($1, 'test lead') AS r`, [lead!.lead_source_pk]);
  t.deepEqual(ignored!.r.action, 'IGNORE');
  t.is(ignored!.r.db_user, job.name, 'audited as the login role');
  await job.query(`SELECT ops.repair_caches()`);
  t.deepEqual(await job.query(`SELECT invariant FROM ops.check_invariants() WHERE violations > 0`), []);
  // graphile-worker's schema (row level security on, no policy for others): a job added and seen.
  const [added] = await job.query<{ id: string }>(`SELECT (graphile_worker.add_job('reconcile_cabinet_leads_pipeline', '{}'::json)).id::text AS id`);
  t.deepEqual(await job.query(`SELECT id::text FROM graphile_worker._private_jobs`), [{ id: added!.id }]);

  await assertRefused(t, job, [
    `CREATE TABLE canon.t_job (i int)`,
    `CREATE VIEW ops.v_job AS SELECT 1 AS one`,
    `CREATE FUNCTION ops.f_job() RETURNS int LANGUAGE sql AS 'SELECT 1'`,
    `CREATE SCHEMA s_job`,
    `ALTER TABLE canon.settings ADD COLUMN x int`,
    `ALTER FUNCTION ops.explain_lead(text) SECURITY INVOKER`,
    `DROP VIEW ops.v_cabinet_leads_limbo`,
    `DROP TABLE canon.ingestion_runs`,
    `TRUNCATE canon.ingestion_runs`,
    `ALTER TABLE graphile_worker._private_jobs DISABLE ROW LEVEL SECURITY`,
    `DROP POLICY cabinet_leads_job ON graphile_worker._private_jobs`,
    `DROP INDEX canon_internal.driver_index_plate_idx`,
    `CREATE INDEX driver_index_job_idx ON canon_internal.driver_index (park_id)`,
  ]);
  // the first run built the driver index with its indexes created after the rows, as the owner
  t.like(call!.run.stats.driver_index, { first_build_bulk: true, indexes_created: 6 });
  const indexes = await job.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_indexes WHERE schemaname = 'canon_internal' AND tablename = 'driver_index'`);
  t.deepEqual(indexes, [{ n: 7 }]);
  // PostgreSQL 15 took CREATE on schema public from PUBLIC (13 and 14 give it: docs/security.md).
  const [v] = await db.query<{ v: number }>(`SELECT current_setting('server_version_num')::int AS v`);
  if (v!.v >= 150000) await assertRefused(t, job, [`CREATE TABLE public.t_job (i int)`]);
});

test('the reader selects every ops view as the owner sees it, the runs, explain_lead and the read-only alert check', async (t) => {
  const db = await seeded(t, 'roles_reader');
  const c = await db.pool.connect();
  try {
    await c.query(`CALL ops.reconcile_cabinet_leads_pipeline(p_days_back => 30, p_limit => 2000, run => NULL)`);
  } finally {
    c.release();
  }
  const reader = await loginRole(t, db.url, 'cabinet_leads_reader');

  const views = await db.query<{ v: string }>(
    `SELECT c.oid::regclass::text AS v FROM pg_class c WHERE c.relnamespace = 'ops'::regnamespace AND c.relkind IN ('v', 'm') ORDER BY 1`,
  );
  t.true(views.length >= 9, views.map((x) => x.v).join(', '));
  for (const { v } of views) {
    const sql = `SELECT count(*)::int AS n, coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '') AS h FROM ${v} x`;
    t.deepEqual(await reader.query(sql), await db.query(sql), `${v} as the reader`);
  }
  const limbo = await reader.query<{ n: number }>(`SELECT count(*)::int AS n FROM ops.v_cabinet_leads_limbo`);
  t.true(limbo[0]!.n > 100);
  t.deepEqual(
    await reader.query(`SELECT id, status FROM canon.ingestion_runs WHERE source_tables::text LIKE '%module_ct_cabinet_leads%' ORDER BY created_at DESC LIMIT 10`),
    await db.query(`SELECT id, status FROM canon.ingestion_runs WHERE source_tables::text LIKE '%module_ct_cabinet_leads%' ORDER BY created_at DESC LIMIT 10`),
  );
  const firing = `SELECT rule_code, subject, current_value, is_new, alert_id FROM ops.check_limbo_alerts(p_record => false) ORDER BY 1, 2`;
  t.deepEqual(await reader.query(firing), await db.query(firing));
  const alertsBefore = await db.query(`SELECT * FROM ops.alerts ORDER BY id`);

  // explain_lead runs with its owner's rights (it keys the lead first): also on a lead no run has seen.
  await db.query(`INSERT INTO public.module_ct_cabinet_leads (external_id, lead_created_at, first_name, last_name, park_phone)
                  VALUES ('roles-new-lead', now()::timestamp, 'ANA', 'QUISPE', '977000111')`);
  const [explained] = await reader.query<{ e: { lead_source_pk: string; keys: { phone_norm: string }; decision_now: { decision: string } } }>(
    `SELECT ops.explain_lead('roles-new-lead') AS e`,
  );
  t.is(explained!.e.lead_source_pk, 'roles-new-lead');
  t.is(explained!.e.keys.phone_norm, '977000111');
  t.truthy(explained!.e.decision_now.decision);

  await assertRefused(t, reader, [
    `CALL ops.reconcile_cabinet_leads_pipeline(p_days_back => 30, p_limit => 2000, run => NULL)`,
    `SELECT * FROM ops.check_limbo_alerts()`,
    `SELECT ops.resolve_lead('roles-new-lead', 'd1', 'why')`,
    `SELECT ops.ignore_lead('roles-new-lead', 'why')`,
    `SELECT ops.repair_caches()`,
    `SELECT * FROM ops.check_invariants()`,
    `SELECT * FROM canon.identity_links LIMIT 1`,
    `SELECT * FROM canon.claims_yango_cabinet_14d LIMIT 1`,
    `SELECT * FROM public.drivers LIMIT 1`,
    `SELECT canon.refresh_lead_keys(ARRAY[1])`,
    `SELECT canon.suspend_driver_index_indexes()`,
    `SELECT canon.restore_driver_index_indexes()`,
    `SELECT canon.flush_driver_index_keys()`,
    `UPDATE canon.settings SET value = '3' WHERE key = 'shared_phone_min_other_people'`,
    `DELETE FROM canon.ingestion_runs`,
    `INSERT INTO ops.alerts (rule_code, subject) VALUES ('X', '')`,
    `UPDATE ops.alert_rules SET enabled = false`,
    `SELECT * FROM graphile_worker.jobs`,
    `CREATE TABLE ops.t_reader (i int)`,
  ]);
  t.deepEqual(await db.query(`SELECT * FROM ops.alerts ORDER BY id`), alertsBefore, 'the reader recorded no alert');
});

test('objects a later migration adds are covered: the job writes a new table, the reader reads a new ops view', async (t) => {
  const db = await freshDb(t, 'roles_later');
  // As the migrating role, after canon.grant_product_roles ran: its default privileges apply.
  await db.query(`CREATE TABLE canon.t_later (id int);
                  CREATE VIEW ops.v_later AS SELECT 42 AS answer;
                  CREATE FUNCTION canon.f_later() RETURNS int LANGUAGE sql AS 'SELECT 7';`);
  const job = await loginRole(t, db.url, 'cabinet_leads_job');
  const reader = await loginRole(t, db.url, 'cabinet_leads_reader');
  await job.query(`INSERT INTO canon.t_later VALUES (1)`);
  t.deepEqual(await job.query(`SELECT canon.f_later() AS f`), [{ f: 7 }]);
  t.deepEqual(await reader.query(`SELECT answer FROM ops.v_later`), [{ answer: 42 }]);
  t.is(await refusal(reader, `SELECT * FROM canon.t_later`), '42501');
  // And the next migrate grants them again, whatever the default privileges.
  await db.query(`ALTER DEFAULT PRIVILEGES IN SCHEMA canon REVOKE ALL ON TABLES FROM cabinet_leads_job;
                  CREATE TABLE canon.t_later2 (id int);`);
  t.is(await refusal(job, `INSERT INTO canon.t_later2 VALUES (1)`), '42501');
  t.deepEqual(await db.query(`SELECT g FROM canon.grant_product_roles() g`), []);
  t.is(await refusal(job, `INSERT INTO canon.t_later2 VALUES (1)`), undefined);
});
