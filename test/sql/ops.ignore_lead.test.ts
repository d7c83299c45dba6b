// ops.ignore_lead: an operator marks a lead IGNORED so the job stops retrying it.
import test from 'ava';
import { brokenInvariants, claimsOf, financeSettles, leadWithClaimsLeftBehind, settledRecordsOf } from '../helpers/claims.js';
import { freshDb, type TestDb } from '../helpers/db.js';
import { linkOf, runPipeline, unmatchedOf } from '../helpers/pipeline.js';
import { insertDriver, insertLead } from '../helpers/rows.js';
import { backendPid, blockedBy, start } from '../helpers/locks.js';

interface Ignored {
  action: string;
  unmatched_row_created: boolean;
  reason_code: string;
  status_before: string | null;
  note_before: string | null;
  claims_removed: { milestone: number; status: string }[];
}

async function ignore(db: TestDb, key: string, note: string): Promise<Ignored> {
  const [r] = await db.query<{ r: Ignored }>(`SELECT ops.ignore_lead($1, $2) AS r`, [key, note]);
  return r!.r;
}

test('an ignored lead is never retried, even when a matching driver arrives later', async (t) => {
  const db = await freshDb(t, 'ignore');
  await insertLead(db, { external_id: 'JUNK', first_name: 'Test', last_name: 'Lead', park_phone: '977111222' });
  await runPipeline(db);
  t.like(await unmatchedOf(db, 'JUNK'), { reason_code: 'NO_CANDIDATES', status: 'OPEN', attempts: 1 });

  const r = await ignore(db, 'JUNK', 'test lead of the cabinet support team');
  t.like(r, { action: 'IGNORE', unmatched_row_created: false, reason_code: 'NO_CANDIDATES', status_before: 'OPEN' });
  const [u] = await db.query<{ status: string; note: string; resolved_at: Date | null }>(
    `SELECT status, note, resolved_at FROM canon.identity_unmatched WHERE source_pk = 'JUNK'`,
  );
  t.like(u!, { status: 'IGNORED', note: 'test lead of the cabinet support team' });
  t.truthy(u!.resolved_at);

  // A driver with the same phone appears: the job would match it, but never looks again.
  await insertDriver(db, { driver_id: 'd1', first_name: 'Test', last_name: 'Lead', phone: '51977111222' });
  const run1 = await runPipeline(db);
  await runPipeline(db);
  t.is(await linkOf(db, 'JUNK'), undefined);
  t.like(await unmatchedOf(db, 'JUNK'), { status: 'IGNORED', reason_code: 'NO_CANDIDATES', attempts: 1 });
  t.is(run1.stats['match']?.['leads_selected'], 0);

  const [limbo] = await db.query<{ limbo_stage: string; limbo_reason_detail: string }>(
    `SELECT limbo_stage, limbo_reason_detail FROM ops.v_cabinet_leads_limbo WHERE lead_source_pk = 'JUNK'`,
  );
  t.is(limbo!.limbo_stage, 'NO_IDENTITY');
  t.regex(limbo!.limbo_reason_detail, /marked IGNORED by hand \(test lead of the cabinet support team\)/);
});

test('ignores a lead the job never evaluated: the unmatched row is created with reason MANUAL_IGNORE', async (t) => {
  const db = await freshDb(t, 'ignore');
  await insertDriver(db, { driver_id: 'd1', first_name: 'Rosa', last_name: 'Diaz', phone: '51977333444' });
  await insertLead(db, { external_id: 'OTHER-PARK', first_name: 'Rosa', last_name: 'Diaz', park_phone: '977333444' });

  const r = await ignore(db, 'OTHER-PARK', 'lead of another park, sent by mistake');
  t.like(r, { unmatched_row_created: true, reason_code: 'MANUAL_IGNORE', status_before: null });
  t.like(await unmatchedOf(db, 'OTHER-PARK'), { status: 'IGNORED', reason_code: 'MANUAL_IGNORE', attempts: 1 });
  await runPipeline(db);
  t.is(await linkOf(db, 'OTHER-PARK'), undefined, 'it would match d1 by phone, but it is never selected');
  t.like(await unmatchedOf(db, 'OTHER-PARK'), { status: 'IGNORED', attempts: 1 });
});

test('ignoring again records the new note and a second audit row', async (t) => {
  const db = await freshDb(t, 'ignore');
  await insertLead(db, { external_id: 'TWICE', first_name: null, last_name: null });
  await ignore(db, 'TWICE', 'first reason');
  const r = await ignore(db, 'TWICE', 'better reason');
  t.like(r, { status_before: 'IGNORED', note_before: 'first reason' });
  const audit = await db.query<{ action: string; note: string; decided_by: string; actor: string }>(
    `SELECT action, note, decided_by, actor FROM canon.identity_audit WHERE source_pk = 'TWICE' ORDER BY id`,
  );
  const [me] = await db.query<{ u: string }>(`SELECT current_user AS u`);
  t.deepEqual(audit, [
    { action: 'IGNORE', note: 'first reason', decided_by: 'manual', actor: me!.u },
    { action: 'IGNORE', note: 'better reason', decided_by: 'manual', actor: me!.u },
  ]);
});

test('refuses an unknown lead, a linked lead and a missing note, naming the value', async (t) => {
  const db = await freshDb(t, 'ignore');
  await insertDriver(db, { driver_id: 'j', first_name: 'Juan', last_name: 'Perez', phone: '51977456321' });
  await insertLead(db, { external_id: 'LINKED', first_name: 'Juan', last_name: 'Perez', park_phone: '977456321' });
  await runPipeline(db);
  const cases: [unknown[], RegExp, string][] = [
    [['NOPE', 'x'], /unknown lead 'NOPE'/, 'P0002'],
    [['LINKED', 'x'], /lead 'LINKED' is linked to person [0-9a-f-]{36} \(driver j, rule R1_PHONE_EXACT\): a linked lead is not retried; if the link is wrong, unlink it first with ops\.unlink_lead/, 'CL021'],
    [['LINKED', ''], /a note is required: say why lead 'LINKED' is ignored/, '22023'],
  ];
  for (const [params, message, code] of cases) {
    const err = await t.throwsAsync(db.query(`SELECT ops.ignore_lead($1, $2)`, params));
    t.regex(err!.message, message);
    t.is((err as { code?: string }).code, code);
  }
  t.is((await linkOf(db, 'LINKED'))?.driver_id, 'j');
  t.is(await unmatchedOf(db, 'LINKED'), undefined);
});

// Money paths are race-free (issue 14, item 5): finance settles claims in transactions of
// its own, at any moment; two real connections, interleaved through the locks themselves.

test('ignoring a lead whose claims were left behind waits for finance rejecting one of them, then refuses naming it', async (t) => {
  const db = await freshDb(t, 'ignore_race');
  await leadWithClaimsLeftBehind(db, 'LEFT', [{ milestone: 1 }, { milestone: 5 }]);
  const finance = await db.connect();
  const operator = await db.connect();

  const rejected = await financeSettles(finance, 'LEFT', 1, 'rejected');
  const ignoring = await start(operator, `SELECT ops.ignore_lead('LEFT', 'junk') AS r`);
  t.is(await blockedBy(db, ignoring, await backendPid(finance)), 'blocked', 'ignore waits for the decision in flight');
  await finance.query('COMMIT');

  const outcome = await ignoring.outcome;
  t.false(outcome.ok, 'ignore refuses once the claim is rejected');
  if (!outcome.ok) {
    t.is(outcome.error.code, 'CL025');
    t.regex(outcome.error.message, /lead 'LEFT' has settled claims \(M1 rejected\)/);
  }
  t.deepEqual((await claimsOf(db, 'LEFT'))[0], rejected);
  t.is((await claimsOf(db, 'LEFT')).length, 2);
  t.like((await settledRecordsOf(db, 'LEFT'))[0], { milestone: 1, status: 'rejected', unsettled_at: null });
  t.is(await unmatchedOf(db, 'LEFT'), undefined, 'not ignored');
  t.deepEqual(await brokenInvariants(db), []);
});

test('finance paying a left-behind claim while ignore_lead holds it waits, then finds no claim: ignore removed the unsettled claims', async (t) => {
  const db = await freshDb(t, 'ignore_race');
  await leadWithClaimsLeftBehind(db, 'OLD', [{ milestone: 1 }]);
  const finance = await db.connect();
  const operator = await db.connect();

  await operator.query('BEGIN');
  const { rows } = await operator.query<{ r: Ignored }>(`SELECT ops.ignore_lead('OLD', 'junk') AS r`);
  t.deepEqual(rows[0]!.r.claims_removed.map((c) => [c.milestone, c.status]), [[1, 'generated']]);
  const paying = await start(finance, `UPDATE canon.claims_yango_cabinet_14d SET status = 'paid', paid_at = now()
                                       WHERE lead_source_pk = 'OLD' AND milestone = 1`);
  t.is(await blockedBy(db, paying, await backendPid(operator)), 'blocked', 'the payment waits for the ignore');
  await operator.query('COMMIT');

  const outcome = await paying.outcome;
  t.is(outcome.ok && outcome.rowCount, 0);
  t.deepEqual(await claimsOf(db, 'OLD'), []);
  t.like(await unmatchedOf(db, 'OLD'), { status: 'IGNORED' });
  const [audit] = await db.query<{ details: { claims_removed: { milestone: number; status: string }[] } }>(
    `SELECT details FROM canon.identity_audit WHERE action = 'IGNORE' AND source_pk = 'OLD'`,
  );
  t.deepEqual(audit!.details.claims_removed.map((c) => [c.milestone, c.status]), [[1, 'generated']]);
  t.deepEqual(await brokenInvariants(db), []);
});

test('refuses a lead whose claims are already paid: money was paid for it, it is not junk', async (t) => {
  const db = await freshDb(t, 'ignore_race');
  await leadWithClaimsLeftBehind(db, 'PAID', [{ milestone: 1, status: 'paid' }, { milestone: 5 }]);
  const before = await claimsOf(db, 'PAID');
  const err = await t.throwsAsync(ignore(db, 'PAID', 'junk'));
  t.regex(err!.message, /lead 'PAID' has settled claims \(M1 paid\)/);
  t.is((err as { code?: string }).code, 'CL025');
  t.deepEqual(await claimsOf(db, 'PAID'), before);
  t.is(await unmatchedOf(db, 'PAID'), undefined);
});
