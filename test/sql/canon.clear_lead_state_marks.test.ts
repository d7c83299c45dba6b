// canon.clear_lead_state_marks (step 7e, ops.refresh_cabinet_lead_state): removes exactly the
// marks canon.take_lead_state_marks read in this transaction; a row or key marked again
// meanwhile (a new mark_seq) keeps its mark for the next evaluation.
import test from 'ava';
import { withDb } from '../helpers/db.js';
import { insertLead } from '../helpers/rows.js';
import { inTransaction, step } from '../helpers/steps.js';

const clear = (c: Parameters<typeof step>[0]) => step<number>(c, 'canon.clear_lead_state_marks()');

test('without a take in the transaction it removes nothing', (t) =>
  withDb('clear_marks', async (db) => {
    await insertLead(db);
    await db.query(`SELECT canon.key_changed_leads(NULL)`);
    t.is(await inTransaction(db, (c) => clear(c)), 0);
    t.deepEqual(await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM canon_internal.cabinet_lead_state_pending`), [{ n: 1 }]);
  }));

test('removes the marks taken and only those: a mark made again by another session after the take stays', (t) =>
  withDb('clear_marks', async (db) => {
    await insertLead(db, { external_id: 'A' });
    const b = await insertLead(db, { external_id: 'B' });
    await db.query(`SELECT canon.key_changed_leads(NULL)`); // marks both rows pending
    await db.query(`INSERT INTO canon_internal.cabinet_lead_state_dirty (lead_source_pk) VALUES ('A'), ('B')`);
    const other = await db.connect();
    await inTransaction(db, async (c) => {
      await step(c, 'canon.take_lead_state_marks()');
      // meanwhile: row B and key B marked again, key C marked for the first time
      await other.query(`INSERT INTO canon_internal.cabinet_lead_state_pending (lead_id) VALUES ($1)
                         ON CONFLICT (lead_id) DO UPDATE SET mark_seq = excluded.mark_seq`, [b.id]);
      await other.query(`INSERT INTO canon_internal.cabinet_lead_state_dirty (lead_source_pk) VALUES ('B'), ('C')
                         ON CONFLICT (lead_source_pk) DO UPDATE SET mark_seq = excluded.mark_seq`);
      t.is(await clear(c), 2, 'row A and key A');
      t.is(await clear(c), 0, 'the marks taken are cleared once');
    });
    t.deepEqual(await db.query(`SELECT lead_id FROM canon_internal.cabinet_lead_state_pending ORDER BY lead_id`), [{ lead_id: b.id }]);
    t.deepEqual(await db.query(`SELECT lead_source_pk FROM canon_internal.cabinet_lead_state_dirty ORDER BY 1`), [{ lead_source_pk: 'B' }, { lead_source_pk: 'C' }]);
  }));
