// The name comparison of the probabilistic tier, token by token (canon.name_token_levels,
// canon.name_phonetic): spellings of one sound are PHONETIC, one typing error is TYPO even
// on short tokens, glued tokens and particles are GLUED, a token the driver lacks is NONE
// and one the lead lacks is MISSING.
import test from 'ava';
import { createTestDb, type TestDb } from '../helpers/db.js';

let db: TestDb;
test.before(async () => {
  db = await createTestDb('name_token_levels');
});
test.after.always(() => db.drop());

async function levels(lead: string[], driver: string[]): Promise<string[][]> {
  const rows = await db.query<{ side: string; token: string; partner: string | null; level: string }>(
    `SELECT * FROM canon.name_token_levels($1, $2) ORDER BY side DESC, token`, [lead, driver]);
  return rows.map((r) => [r.side, r.token, r.partner ?? '', r.level]);
}

test('the Spanish phonetic key makes QU/K, V/B, Z/S, Y/I, LL/Y, silent H spellings equal', async (t) => {
  const rows = await db.query<{ a: string; b: string }>(
    `SELECT canon.name_phonetic(a) AS a, canon.name_phonetic(b) AS b
     FROM unnest($1::text[], $2::text[]) WITH ORDINALITY u(a, b, i) ORDER BY i`,
    [['QUISPE', 'VASQUEZ', 'YUPANQUI', 'LLANOS', 'HUAMAN', 'CESAR', 'JHON', 'GERMAN'],
      ['KISPE', 'BAZQUEZ', 'IUPANKI', 'YANOS', 'UAMAN', 'SESAR', 'JON', 'JERMAN']]);
  t.deepEqual(rows.map((r) => r.a), rows.map((r) => r.b));
  const [other] = await db.query<{ same: boolean }>(`SELECT canon.name_phonetic('QUISPE') = canon.name_phonetic('QUISPER') AS same`);
  t.false(other!.same);
});

test('each lead token gets its best partner: exact, phonetic, typo (also on 4-letter tokens), initial, none', async (t) => {
  t.deepEqual(await levels(['J', 'JSOE', 'KISPE', 'MAMNAI', 'PEPE'], ['JOSE', 'MAMANI', 'QUISPE', 'ROJAS']), [
    ['LEAD', 'J', 'JOSE', 'INITIAL'],
    ['LEAD', 'JSOE', 'JOSE', 'TYPO'],
    ['LEAD', 'KISPE', 'QUISPE', 'PHONETIC'],
    ['LEAD', 'MAMNAI', 'MAMANI', 'TYPO'],
    ['LEAD', 'PEPE', '', 'NONE'],
    ['DRIVER', 'ROJAS', '', 'MISSING'],
  ]);
});

test('glued names meet their parts on either side: JUANCARLOS, DELACRUZ', async (t) => {
  t.deepEqual(await levels(['DELACRUZ', 'JUANCARLOS', 'PEREZ'], ['CARLOS', 'CRUZ', 'JUAN', 'PEREZ']), [
    ['LEAD', 'DELACRUZ', 'CRUZ', 'GLUED'],
    ['LEAD', 'JUANCARLOS', 'CARLOS', 'GLUED'],
    ['LEAD', 'PEREZ', 'PEREZ', 'EXACT'],
  ]);
  t.deepEqual(await levels(['CARLOS', 'JUAN'], ['JUANCARLOS']), [
    ['LEAD', 'CARLOS', 'JUANCARLOS', 'GLUED'],
    ['LEAD', 'JUAN', 'JUANCARLOS', 'GLUED'],
  ]);
});

test('two-letter fragments are left out; a short unrelated token is no typo', async (t) => {
  t.deepEqual(await levels(['ANA', 'HOF', 'T', 'VAN'], ['ANA', 'EVA', 'HOF', 'VAN']), [
    ['LEAD', 'ANA', 'ANA', 'EXACT'],
    ['LEAD', 'HOF', 'HOF', 'EXACT'],
    ['LEAD', 'T', '', 'NONE'],
    ['LEAD', 'VAN', 'VAN', 'EXACT'],
    ['DRIVER', 'EVA', '', 'MISSING'],
  ]);
});
