// A person's "not this driver" answer (ops.not_this_driver): stored as a label, the pair is
// never linked again, not by the plate rule and not by the probabilistic tier, and the lead
// is retried at the next run without that driver. Wrong calls are refused.
import test from 'ava';
import { withDb } from '../helpers/db.js';
import { linkOf, runPipeline, unmatchedOf } from '../helpers/pipeline.js';
import { insertDriver, insertLead } from '../helpers/rows.js';

test('a labelled pair is not linked by the plate rule: the lead is retried and stays unmatched, the candidate says why', (t) =>
  withDb('not_this_driver', async (db) => {
    await insertDriver(db, { driver_id: 'd1', first_name: 'Juan', last_name: 'Quispe Mamani', car_number: 'LAB111' });
    const lead = await insertLead(db, { first_name: 'Juan', last_name: 'Quispe Mamani', asset_plate_number: 'LAB111' });
    // before the first run: the label keeps the rules from linking it at all
    const [r] = await db.query<{ r: { action: string; marked_due: boolean } }>(
      `SELECT ops.not_this_driver($1, 'd1', 'the cabinet says another DNI') AS r`, [lead.key]);
    t.is(r?.r.action, 'NOT_THIS_DRIVER');
    t.false(r?.r.marked_due, 'never evaluated: nothing to mark');
    await runPipeline(db);
    t.is(await linkOf(db, lead.key), undefined);
    const u = await unmatchedOf(db, lead.key);
    t.is(u?.reason_code, 'NO_CANDIDATES');
    t.deepEqual(u?.candidates.map((c) => [c.driver_id, c.reject_reason]), [['d1', 'NOT_THIS_DRIVER']]);
  }));

test('a label on a driver the tier would link (plate one character off) keeps it unlinked; answered again it marks the lead due', (t) =>
  withDb('not_this_driver', async (db) => {
    await insertDriver(db, { driver_id: 'rosa', first_name: 'Rosa', last_name: 'Huillca Ccahuana', car_number: 'ABC105' });
    const lead = await insertLead(db, { first_name: 'Rosa', last_name: 'Huillca Ccahuana', asset_plate_number: 'ABC1O5' });
    await db.query(`SELECT ops.not_this_driver($1, 'rosa', 'a namesake: other DNI')`, [lead.key]);
    await runPipeline(db);
    t.is(await linkOf(db, lead.key), undefined);
    const [d] = await db.query<{ reject_reason: string }>(
      `SELECT c->>'reject_reason' AS reject_reason FROM canon.probabilistic_decisions(ARRAY[$1::integer]) x, jsonb_array_elements(x.candidates) c`,
      [lead.id]);
    t.is(d?.reject_reason, 'NOT_THIS_DRIVER');
    // answered again later: the note is replaced and the open lead is due again
    await db.query(`UPDATE canon.identity_unmatched SET retry_due = false`);
    const [again] = await db.query<{ r: { marked_due: boolean } }>(`SELECT ops.not_this_driver($1, 'rosa', 'checked twice') AS r`, [lead.key]);
    t.true(again?.r.marked_due);
    const [label] = await db.query<{ n: number; note: string }>(
      `SELECT count(*) OVER ()::int AS n, note FROM canon.lead_driver_labels WHERE lead_source_pk = $1`, [lead.key]);
    t.deepEqual(label, { n: 1, note: 'checked twice' });
  }));

test('refused: no note, an unknown driver, a lead linked to that driver', (t) =>
  withDb('not_this_driver', async (db) => {
    await insertDriver(db, { driver_id: 'd1', first_name: 'Juan', last_name: 'Quispe', phone: '977456321' });
    const lead = await insertLead(db, { first_name: 'Juan', last_name: 'Quispe', park_phone: '977456321' });
    await runPipeline(db);
    t.is((await linkOf(db, lead.key))?.driver_id, 'd1');
    const err = async (sql: string, params: unknown[]) => (await t.throwsAsync(db.query(sql, params))) as Error & { code?: string };
    t.is((await err(`SELECT ops.not_this_driver($1, 'd1', ' ')`, [lead.key])).code, '22023');
    t.is((await err(`SELECT ops.not_this_driver($1, 'nobody', 'x')`, [lead.key])).code, 'P0002');
    const linked = await err(`SELECT ops.not_this_driver($1, 'd1', 'x')`, [lead.key]);
    t.is(linked.code, 'CL021');
    t.regex(linked.message, /unlink it first/);
  }));
