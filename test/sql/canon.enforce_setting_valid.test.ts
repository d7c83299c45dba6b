// canon.settings refuses, where it is written, a value every later run would fail on
// (trigger settings_validate, canon.enforce_setting_valid; the rule is
// canon.setting_problem): an unknown time zone, a blank park id, an integer setting that
// is not an integer or out of its range; each error names the setting and the value.
// A typed setting is never deleted, renamed or truncated away. Valid values pass.
import test from 'ava';
import { createTestDb, type TestDb } from '../helpers/db.js';

let db: TestDb;
test.before(async () => {
  db = await createTestDb('settings_valid');
});
test.after.always(() => db.drop());

/** The error an UPDATE of one setting fails with, or 'ok' (in a transaction rolled back: the settings stay as seeded). */
async function update(key: string, value: string | null): Promise<{ code: string; message: string } | 'ok'> {
  const c = await db.pool.connect();
  try {
    await c.query('BEGIN');
    await c.query(`UPDATE canon.settings SET value = $2 WHERE key = $1`, [key, value]);
    return 'ok';
  } catch (e) {
    return { code: (e as { code: string }).code, message: (e as Error).message };
  } finally {
    await c.query('ROLLBACK');
    c.release();
  }
}

/** The same through canon.setting_problem: NULL (valid) or the sentence. */
async function problem(key: string, value: string | null): Promise<string | null> {
  const [r] = await db.query<{ p: string | null }>(
    `SELECT canon.setting_problem($2, s.value_type, s.min_value, s.max_value) AS p FROM canon.settings s WHERE s.key = $1`,
    [key, value],
  );
  return r!.p;
}

test('every setting the product reads has a type; the seeded values are valid', async (t) => {
  const rows = await db.query<{ key: string; value_type: string; min_value: string | null; max_value: string | null; problem: string | null }>(
    `SELECT key, value_type, min_value::text, max_value::text, canon.setting_problem(value, value_type, min_value, max_value) AS problem
     FROM canon.settings ORDER BY key`,
  );
  t.deepEqual(
    rows.map((r) => [r.key, r.value_type, r.min_value, r.max_value, r.problem]),
    [
      ['alert_week_complete_after_days', 'INTEGER', '0', '365', null],
      ['business_timezone', 'TIME_ZONE', null, null, null],
      ['doctor_lead_state_days', 'INTEGER', '0', '36500', null],
      ['driver_index_full_refresh_hours', 'INTEGER', '0', '8760', null],
      ['job_lock_held_max_minutes', 'INTEGER', '1', '10080', null],
      ['shared_phone_min_other_people', 'INTEGER', '1', '1000', null],
      ['source_full_read_hours', 'INTEGER', '1', '8760', null],
      ['target_park_id', 'IDENTIFIER', null, null, null],
    ],
  );
});

test('an unknown time zone is refused at UPDATE, naming the setting and the value, with the closest name', async (t) => {
  const r = await update('business_timezone', 'America/Lim');
  t.like(r, { code: '22023' });
  t.is((r as { message: string }).message,
    "invalid setting business_timezone = 'America/Lim': unknown time zone: expected a name of pg_timezone_names (did you mean America/Lima?)");
  t.regex(await problem('business_timezone', 'Mars/Olympus') ?? '', /^unknown time zone: expected a name of pg_timezone_names such as America\/Lima$/);
});

test('offsets and abbreviations PostgreSQL would read another way are refused; zone names in any case pass', async (t) => {
  // 'UTC-5' is UTC+5 to PostgreSQL (POSIX), 'PET' a fixed-offset abbreviation: not zone names.
  t.regex(await problem('business_timezone', 'UTC-5') ?? '', /an offset like UTC-5 means UTC\+5 to PostgreSQL/);
  t.regex(await problem('business_timezone', 'PET') ?? '', /^unknown time zone/);
  for (const ok of ['America/Lima', 'america/lima', 'UTC', 'Etc/GMT+5', 'Europe/Madrid']) {
    t.is(await update('business_timezone', ok), 'ok', ok);
  }
});

test('a blank target park id, or one with spaces at its ends, is refused at UPDATE and INSERT', async (t) => {
  for (const value of ['', '   ', '\t', '\u00a0', ' 08e20910d81d42658d4334d3f6d10ac0', '08e20910d81d42658d4334d3f6d10ac0\n']) {
    const r = await update('target_park_id', value);
    t.like(r, { code: '22023' }, JSON.stringify(value));
    t.true((r as { message: string }).message.startsWith(`invalid setting target_park_id = '${value.replace(/'/g, "''")}': `), JSON.stringify(value));
  }
  t.regex((await update('target_park_id', '') as { message: string }).message, /: blank: expected an identifier$/);
  t.regex((await update('target_park_id', 'abc ') as { message: string }).message, /: spaces or control characters at its ends/);
  t.is(await update('target_park_id', 'another-park'), 'ok');
  // A new typed setting is checked on INSERT too.
  await t.throwsAsync(
    db.query(`INSERT INTO canon.settings (key, value, description, value_type) VALUES ('other_park_id', ' ', 'x', 'IDENTIFIER')`),
    { message: "invalid setting other_park_id = ' ': blank: expected an identifier" },
  );
});

test('an integer setting that is not an integer, or out of its range, is refused naming the range', async (t) => {
  const cases: [string, string, RegExp][] = [
    ['alert_week_complete_after_days', 'three', /^invalid setting alert_week_complete_after_days = 'three': not an integer: expected an integer from 0 to 365$/],
    ['alert_week_complete_after_days', '1.5', /not an integer/],
    ['alert_week_complete_after_days', ' 3', /not an integer/],
    ['alert_week_complete_after_days', '', /not an integer/],
    ['alert_week_complete_after_days', '-1', /^invalid setting alert_week_complete_after_days = '-1': out of range: expected an integer from 0 to 365$/],
    ['alert_week_complete_after_days', '366', /out of range/],
    ['alert_week_complete_after_days', '99999999999999999999999', /out of range/],
    ['driver_index_full_refresh_hours', '8761', /out of range: expected an integer from 0 to 8760/],
    ['driver_index_full_refresh_hours', '2147483648', /out of range/],
    ['shared_phone_min_other_people', '0', /out of range: expected an integer from 1 to 1000/],
    ['alert_week_complete_after_days', '1e3', /not an integer: expected an integer from 0 to 365/],
  ];
  for (const [key, value, message] of cases) {
    const r = await update(key, value);
    t.like(r, { code: '22023' }, `${key} = ${value}`);
    t.regex((r as { message: string }).message, message, `${key} = ${value}`);
  }
  for (const [key, value] of [['alert_week_complete_after_days', '0'], ['alert_week_complete_after_days', '365'], ['driver_index_full_refresh_hours', '0'], ['shared_phone_min_other_people', '1000'], ['alert_week_complete_after_days', '007']]) {
    t.is(await update(key!, value!), 'ok', `${key} = ${value}`);
  }
});

test('a typed setting cannot be deleted, renamed or truncated away; an untyped one can be deleted', async (t) => {
  await t.throwsAsync(db.query(`DELETE FROM canon.settings WHERE key = 'business_timezone'`), {
    code: '23001',
    message: 'setting business_timezone cannot be deleted: the product reads it; UPDATE its value instead',
  });
  await t.throwsAsync(db.query(`UPDATE canon.settings SET key = 'tz' WHERE key = 'business_timezone'`), { message: /cannot be renamed/ });
  await t.throwsAsync(db.query(`TRUNCATE canon.settings`), { message: /canon\.settings cannot be truncated/ });
  await db.query(`INSERT INTO canon.settings (key, value, description) VALUES ('note_for_ops', 'anything', 'free text')`);
  await db.query(`DELETE FROM canon.settings WHERE key = 'note_for_ops'`);
  const [n] = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM canon.settings`);
  t.is(n!.n, 8);
});

test('a changed value stamps updated_at', async (t) => {
  const c = await db.pool.connect();
  try {
    await c.query('BEGIN');
    await c.query(`UPDATE canon.settings SET updated_at = '2000-01-01' WHERE key = 'alert_week_complete_after_days'`);
    await c.query(`UPDATE canon.settings SET description = description WHERE key = 'alert_week_complete_after_days'`);
    const same = await c.query<{ y: number }>(`SELECT extract(year FROM updated_at)::int AS y FROM canon.settings WHERE key = 'alert_week_complete_after_days'`);
    t.is(same.rows[0]!.y, 2000, 'no value change, no stamp');
    await c.query(`UPDATE canon.settings SET value = '4' WHERE key = 'alert_week_complete_after_days'`);
    const changed = await c.query<{ now: boolean }>(`SELECT updated_at = now() AS now FROM canon.settings WHERE key = 'alert_week_complete_after_days'`);
    t.true(changed.rows[0]!.now);
  } finally {
    await c.query('ROLLBACK');
    c.release();
  }
});
