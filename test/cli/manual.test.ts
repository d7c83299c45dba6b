// cabinet-leads resolve-lead / ignore-lead / unlink-lead: the ops.* identity tools for
// people who do not use psql, as real processes: exit codes, messages, and the audit
// naming the OS user through application_name.
import { hostname, userInfo } from 'node:os';
import test from 'ava';
import { insertClaims, leadWithClaimsLeftBehind } from '../helpers/claims.js';
import { errorLine, runCli } from '../helpers/cli.js';
import { createTestDb, type TestDb } from '../helpers/db.js';
import { linkOf, runPipeline, unmatchedOf } from '../helpers/pipeline.js';
import { insertDriver, insertLead } from '../helpers/rows.js';

async function scenario(t: { teardown(fn: () => Promise<void>): void }): Promise<TestDb> {
  const db = await createTestDb('manual');
  t.teardown(() => db.drop());
  await insertDriver(db, { driver_id: 'a', first_name: 'Ana', last_name: 'Lopez', car_number: 'SHF001' });
  await insertDriver(db, { driver_id: 'b', first_name: 'Ana', last_name: 'Lopes', car_number: 'SHF001' });
  await insertDriver(db, { driver_id: 'j', first_name: 'Juan', last_name: 'Perez', phone: '51977456321' });
  await insertLead(db, { external_id: 'AMB', first_name: 'Ana', last_name: 'López', asset_plate_number: 'shf-001' });
  await insertLead(db, { external_id: 'OK', first_name: 'Juan', last_name: 'Perez', park_phone: '977456321' });
  await insertLead(db, { external_id: 'JUNK', first_name: 'Prueba', last_name: null });
  await runPipeline(db);
  return db;
}

const cli = (db: TestDb, args: string[]) => runCli(args, { DATABASE_URL: db.url, LOG_LEVEL: 'warn' });

test('resolve-lead links the lead, and the audit names the database user, the OS user and the note', async (t) => {
  const db = await scenario(t);
  const r = await cli(db, ['resolve-lead', 'AMB', 'a', '--note', 'called her']);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^lead AMB linked to driver a: person [0-9a-f-]{36} \(new\), MANUAL_RESOLUTION; unmatched AMBIGUOUS OPEN -> RESOLVED$/m);
  t.like(await linkOf(db, 'AMB'), { driver_id: 'a', match_rule: 'MANUAL_RESOLUTION' });
  const [audit] = await db.query<{ client: string; note: string; actor: string }>(
    `SELECT client, note, actor FROM canon.identity_audit WHERE action = 'RESOLVE'`,
  );
  const expected = `cabinet-leads resolve-lead (${userInfo().username}@${hostname()})`.slice(0, 63);
  t.is(audit!.client, expected);
  t.is(audit!.note, 'called her');
});

test('resolve-lead refused by the database exits 1 with its reason; --force goes through', async (t) => {
  const db = await scenario(t);
  const refused = await cli(db, ['resolve-lead', 'JUNK', 'j', '--note', 'same man']);
  t.is(refused.code, 1);
  t.regex(errorLine(refused), /^cabinet-leads: error: resolve-lead refused: driver 'j' is already linked to person [0-9a-f-]{36} with lead\(s\) OK: pass force => true/);
  t.is(refused.stdout, '');
  t.is(await linkOf(db, 'JUNK'), undefined);

  const forced = await cli(db, ['resolve-lead', 'JUNK', 'j', '--note', 'same man', '--force', '--json']);
  t.is(forced.code, 0, forced.stderr);
  t.like(JSON.parse(forced.stdout), { action: 'RESOLVE', forced: true, person_created: false, other_leads_of_person: ['OK'] });

  const unknown = await cli(db, ['resolve-lead', 'NOPE', 'j', '--note', 'x']);
  t.is(unknown.code, 1);
  t.regex(errorLine(unknown), /resolve-lead refused: unknown lead 'NOPE'/);
});

test('ignore-lead marks the lead IGNORED; unlink-lead removes a link so the next run evaluates it again', async (t) => {
  const db = await scenario(t);
  const ign = await cli(db, ['ignore-lead', 'JUNK', '--note', 'test lead']);
  t.is(ign.code, 0, ign.stderr);
  t.is(ign.stdout.trim(), 'lead JUNK IGNORED (was OPEN MISSING_KEYS): the job will not retry it');
  t.like(await unmatchedOf(db, 'JUNK'), { status: 'IGNORED' });

  const un = await cli(db, ['unlink-lead', 'OK', '--note', 'wrong person', '--json']);
  t.is(un.code, 0, un.stderr);
  t.like(JSON.parse(un.stdout), { action: 'UNLINK', driver_id: 'j', person_removed: true });
  t.is(await linkOf(db, 'OK'), undefined);
  const again = await cli(db, ['unlink-lead', 'OK', '--note', 'wrong person']);
  t.is(again.code, 1);
  t.regex(errorLine(again), /unlink-lead refused: lead 'OK' is not linked: nothing to unlink \(never evaluated\)/);

  await runPipeline(db);
  t.is((await linkOf(db, 'OK'))?.driver_id, 'j');
});

for (const [args, pattern] of [
  [['resolve-lead', 'AMB', 'a'], /resolve-lead: --note "\.\.\." is required/],
  [['resolve-lead', 'AMB', '--note', 'x'], /resolve-lead: expected LEAD_KEY DRIVER_ID, got "AMB"/],
  [['ignore-lead', '--note', 'x'], /ignore-lead: expected LEAD_KEY, got nothing/],
  [['unlink-lead', 'OK', '--note', ' '], /unlink-lead: --note "\.\.\." is required/],
  [['unlink-lead', 'OK', '--note', 'x', '--force'], /Unknown option '--force'/],
] as const) {
  test(`${args.join(' ')} is a usage error (exit 2)`, async (t) => {
    const r = await runCli([...args], { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/never-reached' });
    t.is(r.code, 2);
    t.regex(errorLine(r), pattern);
  });
}

test('ignore-lead says how many unsettled claims it removed; unlink-lead of a lead with a paid claim exits 1 naming it', async (t) => {
  const db = await scenario(t);
  await leadWithClaimsLeftBehind(db, 'LEFT', [{ milestone: 1 }, { milestone: 5 }]);
  const ign = await cli(db, ['ignore-lead', 'LEFT', '--note', 'junk']);
  t.is(ign.code, 0, ign.stderr);
  t.is(ign.stdout.trim(), 'lead LEFT IGNORED (never evaluated); 2 unsettled claim(s) removed: the job will not retry it');

  const ok = await linkOf(db, 'OK');
  await insertClaims(db, 'OK', ok!.person_key, 'j', [{ milestone: 1, status: 'paid' }]);
  const refused = await cli(db, ['unlink-lead', 'OK', '--note', 'wrong']);
  t.is(refused.code, 1);
  t.regex(errorLine(refused), /unlink-lead refused: lead 'OK' has settled claims \(M1 paid\)/);
  t.is((await linkOf(db, 'OK'))?.driver_id, 'j');
});

test('--help of each tool names its psql function', async (t) => {
  for (const [cmd, fn] of [['resolve-lead', 'ops.resolve_lead'], ['ignore-lead', 'ops.ignore_lead'], ['unlink-lead', 'ops.unlink_lead']]) {
    const r = await runCli([cmd!, '--help']);
    t.is(r.code, 0, cmd);
    t.regex(r.stdout, new RegExp(`^Usage: cabinet-leads ${cmd}`), cmd);
    t.true(r.stdout.includes(`${fn}(`), cmd);
  }
});
