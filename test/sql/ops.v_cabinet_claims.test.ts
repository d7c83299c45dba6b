// ops.v_cabinet_claims: every claim once, with the lead row it pays for (what
// `cabinet-leads export claims` writes).
import test from 'ava';
import { insertClaims } from '../helpers/claims.js';
import { createTestDb, type TestDb } from '../helpers/db.js';
import { insertLead, uid } from '../helpers/rows.js';

let db: TestDb;
test.before(async () => {
  db = await createTestDb('claims_view');
});
test.after.always(() => db.drop());

interface ClaimViewRow {
  lead_source_pk: string;
  milestone: number;
  amount_expected: string;
  status: string;
  lead_id: number | null;
  lead_name: string | null;
  park_phone: string | null;
}

async function viewRows(key: string): Promise<ClaimViewRow[]> {
  return db.query<ClaimViewRow>(
    `SELECT lead_source_pk, milestone, amount_expected::text, status, lead_id, lead_name, park_phone
     FROM ops.v_cabinet_claims WHERE lead_source_pk = $1 ORDER BY milestone`,
    [key],
  );
}

async function keyRows(ids: number[]): Promise<void> {
  await db.query(`SELECT canon.refresh_lead_keys($1::integer[])`, [ids]);
}

test('every claim once, with the earliest lead row that carries its key and its name as the limbo view builds it', async (t) => {
  const key = uid('CV');
  const { id: first } = await insertLead(db, { external_id: key, first_name: '  Ana ', middle_name: 'María', last_name: 'Pérez   Ñahui', park_phone: '977000111' });
  const { id: second } = await insertLead(db, { external_id: `${key}\t`, first_name: 'Otra', last_name: null, park_phone: '977000222' });
  await keyRows([first, second]);
  await insertClaims(db, key, null, null, [{ milestone: 1, status: 'paid' }, { milestone: 5 }]);
  t.deepEqual(await viewRows(key), [
    { lead_source_pk: key, milestone: 1, amount_expected: '25.00', status: 'paid', lead_id: first, lead_name: 'Ana María Pérez Ñahui', park_phone: '977000111' },
    { lead_source_pk: key, milestone: 5, amount_expected: '35.00', status: 'generated', lead_id: first, lead_name: 'Ana María Pérez Ñahui', park_phone: '977000111' },
  ]);
  const [limbo] = await db.query<{ lead_name: string }>(`SELECT lead_name FROM ops.v_cabinet_leads_limbo WHERE lead_id = $1`, [first]);
  t.is(limbo!.lead_name, 'Ana María Pérez Ñahui');
});

test('a lead row re-keyed upstream since the last run is never shown for the claim', async (t) => {
  const key = uid('RK');
  const { id: first } = await insertLead(db, { external_id: key, first_name: 'Primero', last_name: null });
  const { id: second } = await insertLead(db, { external_id: key, first_name: 'Segundo', last_name: null });
  await keyRows([first, second]);
  await insertClaims(db, key, null, null, [{ milestone: 1 }]);
  await db.query(`UPDATE public.module_ct_cabinet_leads SET external_id = 'moved-' || external_id WHERE id = $1`, [first]);
  t.like((await viewRows(key))[0], { lead_id: second, lead_name: 'Segundo' });
  await db.query(`UPDATE public.module_ct_cabinet_leads SET external_id = 'moved-' || external_id WHERE id = $1`, [second]);
  t.like(await viewRows(key), [{ milestone: 1, amount_expected: '25.00', lead_id: null, lead_name: null }], 'the claim stays, without lead columns');
});
