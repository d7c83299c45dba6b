import test from 'ava';
import fc from 'fast-check';
import { createTestDb, type TestDb } from '../helpers/db.js';
import '../helpers/rows.js';

let db: TestDb;
test.before(async () => {
  db = await createTestDb('parse_date_file');
});
test.after.always(() => db.drop());

async function parse(values: (string | null)[]): Promise<(string | null)[]> {
  const rows = await db.query<{ d: string | null }>(
    `SELECT canon.parse_date_file(x)::text AS d FROM unnest($1::text[]) WITH ORDINALITY u (x, n) ORDER BY n`,
    [values],
  );
  return rows.map((r) => r.d);
}

test('reads DD-MM-YYYY and YYYY-MM-DD as the same day', async (t) => {
  t.deepEqual(await parse(['05-03-2026', '2026-03-05']), ['2026-03-05', '2026-03-05']);
});

test('trims surrounding blanks', async (t) => {
  t.deepEqual(await parse([' 05-03-2026 ', '\t2026-03-05\n']), ['2026-03-05', '2026-03-05']);
});

test('returns NULL for days that do not exist instead of raising', async (t) => {
  t.deepEqual(
    await parse(['31-02-2026', '2026-13-01', '2026-00-10', '2026-01-00', '31-04-2026', '29-02-2025', '29-02-1900', '0000-01-01', '01-01-0000']),
    [null, null, null, null, null, null, null, null, null],
  );
});

test('accepts 29 February of leap years only', async (t) => {
  t.deepEqual(await parse(['29-02-2024', '2000-02-29', '2100-02-29']), ['2024-02-29', '2000-02-29', null]);
});

test('returns NULL for NULL, blanks, other formats and junk', async (t) => {
  t.deepEqual(
    await parse([null, '', '   ', '2026-1-5', '5-3-2026', '05/03/2026', '20260305', '2026-03-05T00:00', '٠٥-٠٣-٢٠٢٦', '05-03-2026🚕', 'x'.repeat(10_000), "'; DROP TABLE x; --"]),
    [null, null, null, null, null, null, null, null, null, null, null, null],
  );
});

test('never raises and agrees with the calendar on any input', async (t) => {
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(
        fc.string({ maxLength: 14 }),
        fc.tuple(fc.integer({ min: 0, max: 39 }), fc.integer({ min: 0, max: 19 }), fc.integer({ min: 0, max: 9999 })).map(
          ([d, m, y]) => `${String(d).padStart(2, '0')}-${String(m).padStart(2, '0')}-${String(y).padStart(4, '0')}`,
        ),
      ),
      async (s) => {
        const [got] = await parse([s]);
        const m = /^(\d{2})-(\d{2})-(\d{4})$/.exec(s.trim());
        if (!m) return got === null || /^\d{4}-\d{2}-\d{2}$/.test(s.trim());
        const [d, mo, y] = [Number(m[1]), Number(m[2]), Number(m[3])];
        const js = new Date(Date.UTC(2000, mo - 1, d));
        js.setUTCFullYear(y);
        const valid = y >= 1 && mo >= 1 && mo <= 12 && d >= 1 && js.getUTCDate() === d && js.getUTCMonth() === mo - 1;
        return valid ? got === `${m[3]}-${m[2]}-${m[1]}` : got === null;
      },
    ),
    { numRuns: 300 },
  );
  t.pass();
});

test('is IMMUTABLE and PARALLEL SAFE, so it can back an index', async (t) => {
  const [r] = await db.query<{ volatile: string; parallel: string }>(
    `SELECT provolatile AS volatile, proparallel AS parallel FROM pg_proc WHERE oid = 'canon.parse_date_file(text)'::regprocedure`,
  );
  t.deepEqual(r, { volatile: 'i', parallel: 's' });
});

test('trip lookups by driver and day range use summary_daily_driver_trip_date_idx', async (t) => {
  const c = await db.connect();
  await c.query('BEGIN');
  await c.query(`SET LOCAL enable_seqscan = off`);
  const { rows } = await c.query<{ 'QUERY PLAN': string }>(
    `EXPLAIN SELECT sum(count_orders_completed) FROM public.summary_daily
     WHERE driver_id = 'd1' AND canon.parse_date_file(date_file) >= DATE '2026-01-01'
       AND canon.parse_date_file(date_file) < DATE '2026-01-15'`,
  );
  await c.query('ROLLBACK');
  t.regex(rows.map((r) => r['QUERY PLAN']).join('\n'), /summary_daily_driver_trip_date_idx/);
});
