import test from 'ava';
import { createTestDb, type TestDb } from '../helpers/db.js';

// The product's views read the upstream columns, so PostgreSQL refuses to drop or
// retype them; to simulate an upstream that changed anyway, drop the views first.
async function dropProductViews(db: TestDb): Promise<void> {
  await db.query(`DO $$
    DECLARE v record;
    BEGIN
      FOR v IN SELECT schemaname, viewname FROM pg_views WHERE schemaname IN ('canon', 'ops') LOOP
        EXECUTE format('DROP VIEW IF EXISTS %I.%I CASCADE', v.schemaname, v.viewname);
      END LOOP;
    END $$`);
}

test('passes on the tables created by the migrations', async (t) => {
  const db = await createTestDb('contract');
  try {
    const [r] = await db.query<{ n: number }>(`SELECT canon.check_source_contract() AS n`);
    t.true(r!.n > 20);
    t.deepEqual(await db.query(`SELECT * FROM canon.source_contract_violations()`), []);
  } finally {
    await db.drop();
  }
});

test('names every missing column and wrongly typed column in one error', async (t) => {
  const db = await createTestDb('contract');
  try {
    await dropProductViews(db);
    await db.query(`ALTER TABLE public.drivers DROP COLUMN phone`);
    await db.query(`ALTER TABLE public.summary_daily DROP COLUMN date_file`);
    await db.query(`ALTER TABLE public.module_ct_cabinet_leads ALTER COLUMN lead_created_at TYPE text`);
    const err = await t.throwsAsync(db.query(`SELECT canon.check_source_contract()`));
    t.is((err as Error & { code?: string }).code, 'CL002');
    t.regex(err!.message, /column public\.drivers\.phone is missing/);
    t.regex(err!.message, /column public\.summary_daily\.date_file is missing/);
    t.regex(err!.message, /column public\.module_ct_cabinet_leads\.lead_created_at has type text, expected timestamp/);
  } finally {
    await db.drop();
  }
});

test('names a missing table', async (t) => {
  const db = await createTestDb('contract');
  try {
    await dropProductViews(db);
    await db.query(`DROP TABLE public.summary_daily`);
    const err = await t.throwsAsync(db.query(`SELECT canon.check_source_contract()`));
    t.regex(err!.message, /table public\.summary_daily is missing/);
  } finally {
    await db.drop();
  }
});

test('a run against a broken contract is FAILED and names the column', async (t) => {
  const db = await createTestDb('contract');
  try {
    await dropProductViews(db);
    await db.query(`ALTER TABLE public.module_ct_cabinet_leads DROP COLUMN park_phone`);
    const c = await db.connect();
    const res = await c.query<{ run: { status: string; error_message: string; error_sqlstate: string } }>(
      `CALL ops.reconcile_cabinet_leads_pipeline(p_raise_on_failure => false)`,
    );
    const run = res.rows[0]!.run;
    t.is(run.status, 'FAILED');
    t.is(run.error_sqlstate, 'CL002');
    t.regex(run.error_message, /park_phone is missing/);
  } finally {
    await db.drop();
  }
});
