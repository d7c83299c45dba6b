// canon.require_lead_key: the operator tools' first check, a NULL or blank lead key refused.
import test from 'ava';
import { createTestDb, type TestDb } from '../helpers/db.js';

let db: TestDb;
test.before(async () => {
  db = await createTestDb('require_lead_key');
});
test.after.always(() => db.drop());

/** The three operator tools, called with a key and a note (resolve also with a driver). */
const TOOLS: [string, string][] = [
  ['unlink_lead', `SELECT ops.unlink_lead($1, $2)`],
  ['resolve_lead', `SELECT ops.resolve_lead($1, 'd1', $2)`],
  ['ignore_lead', `SELECT ops.ignore_lead($1, $2)`],
];

test.serial('refuses a NULL or blank key with 22023, naming the value', async (t) => {
  const cases: [string | null, string][] = [
    [null, 'invalid lead_source_pk NULL: expected a lead key'],
    ['', `invalid lead_source_pk '': expected a lead key`],
    ['   ', `invalid lead_source_pk '   ': expected a lead key`],
  ];
  for (const [key, message] of cases) {
    const err = await t.throwsAsync(db.query(`SELECT canon.require_lead_key($1)`, [key]));
    t.is(err!.message, message);
    t.is((err as { code?: string }).code, '22023');
  }
});

test.serial('lets a key through as it is, blanks around it included (canon.lead_source_pk decides which lead it is)', async (t) => {
  const rows = await db.query<{ ok: string }>(
    `SELECT canon.require_lead_key(k)::text AS ok FROM unnest(ARRAY['NB-1', ' NB-1 ', E'NB-1\\t']) k`,
  );
  t.deepEqual(rows.map((r) => r.ok), ['', '', '']);
});

test.serial('every operator tool checks the key before anything else (the note, the driver, the job lock)', async (t) => {
  const holder = await db.connect();
  await holder.query(`BEGIN`);
  await holder.query(`SELECT canon.take_job_lock()`);
  try {
    for (const [tool, sql] of TOOLS) {
      // NULL note and a held job lock: the key's refusal comes first, at once.
      const err = await t.throwsAsync(db.query(sql.replace(`'d1'`, 'NULL'), [null, null]), undefined, tool);
      t.is(err!.message, 'invalid lead_source_pk NULL: expected a lead key', tool);
      t.is((err as { code?: string }).code, '22023', tool);
    }
  } finally {
    await holder.query(`ROLLBACK`);
  }
});
