// canon.require_note: the operator tools and repairs refuse to change anything without a note.
import test from 'ava';
import { createTestDb, type TestDb } from '../helpers/db.js';

let db: TestDb;
test.before(async () => {
  db = await createTestDb('require_note');
});
test.after.always(() => db.drop());

test.serial('refuses a NULL or blank note with 22023, saying what the note should explain', async (t) => {
  for (const note of [null, '', '   ']) {
    const err = await t.throwsAsync(db.query(`SELECT canon.require_note($1, 'say why lead ''K'' is ignored')`, [note]));
    t.is(err!.message, `a note is required: say why lead 'K' is ignored`);
    t.is((err as { code?: string }).code, '22023');
  }
});

test.serial('lets a note through', async (t) => {
  const [r] = await db.query<{ ok: string }>(`SELECT canon.require_note('wrong person', 'say why')::text AS ok`);
  t.is(r!.ok, '');
});

test.serial('each operator tool asks for its own note, after the key and before the job lock and the lead', async (t) => {
  const holder = await db.connect();
  await holder.query(`BEGIN`);
  await holder.query(`SELECT canon.take_job_lock()`);
  try {
    // An unknown lead and a held job lock: the note's refusal comes first, at once.
    const cases: [string, string, unknown[], string][] = [
      ['unlink_lead', `SELECT ops.unlink_lead($1, $2)`, ['NOPE', ' '], `a note is required: say why the link of lead 'NOPE' is wrong`],
      ['resolve_lead', `SELECT ops.resolve_lead($1, $2, $3)`, ['NOPE', 'd1', null], `a note is required: say why lead 'NOPE' belongs to driver 'd1'`],
      ['ignore_lead', `SELECT ops.ignore_lead($1, $2)`, ['NOPE', ''], `a note is required: say why lead 'NOPE' is ignored`],
      ['repair_lead_keys', `SELECT ops.repair_lead_keys($1)`, [null], 'a note is required: say why the lead keys are repaired'],
    ];
    for (const [tool, sql, params, message] of cases) {
      const err = await t.throwsAsync(db.query(sql, params), undefined, tool);
      t.is(err!.message, message, tool);
      t.is((err as { code?: string }).code, '22023', tool);
    }
  } finally {
    await holder.query(`ROLLBACK`);
  }
});
