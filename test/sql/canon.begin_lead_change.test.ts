// canon.begin_lead_change: the operator tools' prologue after their argument checks: the job
// lock, then the lead's rows read as committed after it (unknown lead refused unless allowed).
import test from 'ava';
import { createTestDb, type TestDb } from '../helpers/db.js';
import { backendPid, blockedBy, start } from '../helpers/locks.js';
import { insertLead } from '../helpers/rows.js';

let db: TestDb;
test.before(async () => {
  db = await createTestDb('begin_lead_change');
});
test.after.always(() => db.drop());

interface Began {
  lead_rows: number;
  lead_id: number | null;
  lead_created_at: string | null;
  lead_name: string | null;
  park_phone: string | null;
  plate: string | null;
}

const BEGIN_SQL = `SELECT b.lead_rows, b.lead_id, b.lead_created_at::text AS lead_created_at, b.lead_name, b.park_phone, b.plate
                   FROM canon.begin_lead_change($1, $2) b`;

test.serial('counts the rows of the key and returns the first one (lowest id), blanks at the ends of external_id ignored', async (t) => {
  const first = await insertLead(db, {
    external_id: 'TWO-ROWS', lead_created_at: `'2025-03-01 10:00'`, first_name: 'Ana', middle_name: null, last_name: 'Lopes',
    park_phone: '977111222', asset_plate_number: 'ABC123',
  });
  await insertLead(db, { external_id: '\tTWO-ROWS ', first_name: 'Other', park_phone: '900000000', asset_plate_number: 'ZZZ999' });
  const [r] = await db.query<Began>(BEGIN_SQL, ['TWO-ROWS', false]);
  t.deepEqual(r, {
    lead_rows: 2, lead_id: first.id, lead_created_at: '2025-03-01 10:00:00', lead_name: 'Ana Lopes', park_phone: '977111222', plate: 'ABC123',
  });
});

test.serial('refuses an unknown lead with P0002 naming it, unless told a lead may be gone (then 0 rows)', async (t) => {
  const err = await t.throwsAsync(db.query(BEGIN_SQL, ['NOPE', false]));
  t.is(err!.message, `unknown lead 'NOPE': no row of public.module_ct_cabinet_leads has this lead_source_pk`);
  t.is((err as { code?: string }).code, 'P0002');
  const err2 = await t.throwsAsync(db.query(`SELECT canon.begin_lead_change('NOPE')`));
  t.is((err2 as { code?: string }).code, 'P0002', 'refusing is the default');

  const [r] = await db.query<Began>(BEGIN_SQL, ['NOPE', true]);
  t.deepEqual(r, { lead_rows: 0, lead_id: null, lead_created_at: null, lead_name: null, park_phone: null, plate: null });
});

test.serial('waits for the job lock, then reads the lead as committed by the holder', async (t) => {
  const holder = await db.connect();
  const operator = await db.connect();
  await holder.query(`BEGIN`);
  await holder.query(`SELECT canon.take_job_lock()`);
  // The holder writes the lead's only row: read before the lock it would be unknown.
  await holder.query(`INSERT INTO public.module_ct_cabinet_leads (external_id, lead_created_at) VALUES ('LATE', now())`);
  const began = await start<{ lead_rows: number }>(operator, `SELECT b.lead_rows FROM canon.begin_lead_change('LATE') b`);
  t.is(await blockedBy(db, began, await backendPid(holder)), 'blocked');
  await holder.query(`COMMIT`);
  const outcome = await began.outcome;
  t.true(outcome.ok);
  t.deepEqual(outcome.ok && outcome.rows, [{ lead_rows: 1 }]);
});

test.serial('a job lock held past lock_timeout is refused with 55P03, before the lead is read', async (t) => {
  const holder = await db.connect();
  const operator = await db.connect();
  await holder.query(`BEGIN`);
  await holder.query(`SELECT canon.take_job_lock()`);
  try {
    await operator.query(`SET lock_timeout = '50ms'`);
    const err = await t.throwsAsync(operator.query(`SELECT canon.begin_lead_change('NOPE')`));
    t.regex(err!.message, /holds the job lock for more than 50ms: try again when it has finished/);
    t.is((err as { code?: string }).code, '55P03', 'the lock first: not P0002 for the unknown lead');
  } finally {
    await holder.query(`ROLLBACK`);
  }
});

test.serial('every operator tool takes the job lock before deciding that a lead is unknown', async (t) => {
  const holder = await db.connect();
  const operator = await db.connect();
  for (const [tool, sql] of [
    ['unlink_lead', `SELECT ops.unlink_lead('NOPE', 'x')`],
    ['resolve_lead', `SELECT ops.resolve_lead('NOPE', 'd1', 'x')`],
    ['ignore_lead', `SELECT ops.ignore_lead('NOPE', 'x')`],
  ] as const) {
    await holder.query(`BEGIN`);
    await holder.query(`SELECT canon.take_job_lock()`);
    const call = await start(operator, sql);
    t.is(await blockedBy(db, call, await backendPid(holder)), 'blocked', tool);
    await holder.query(`ROLLBACK`);
    const outcome = await call.outcome;
    t.false(outcome.ok, tool);
    if (!outcome.ok) {
      t.is(outcome.error.message, `unknown lead 'NOPE': no row of public.module_ct_cabinet_leads has this lead_source_pk`, tool);
      t.is(outcome.error.code, 'P0002', tool);
    }
  }
});
