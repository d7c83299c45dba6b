// Matching and linking (SPEC 6), each behaviour on hand-built rows in its own database.
import test from 'ava';
import { type TestDb, withDb } from '../helpers/db.js';
import { linkOf, runPipeline, unmatchedOf } from '../helpers/pipeline.js';
import { addDays, businessToday, insertDriver, insertLead, TARGET_PARK } from '../helpers/rows.js';

test('R1 matches a +51 formatted lead phone to the driver stored with the country code', (t) =>
  withDb('match', async (db) => {
    await insertDriver(db, { driver_id: 'd1', first_name: 'Juan', last_name: 'Pérez', phone: '51977456321' });
    await insertLead(db, { external_id: 'L1', first_name: 'JUAN', last_name: 'PEREZ', park_phone: '+51 977 456 321' });
    const run = await runPipeline(db);
    t.is(run.status, 'COMPLETED');
    const link = await linkOf(db, 'L1');
    t.is(link?.match_rule, 'R1_PHONE_EXACT');
    t.is(link?.driver_id, 'd1');
    const [ev] = await db.query<{ evidence: { rules: string[]; lead: { phone_norm: string }; driver: { phone_norm: string } } }>(
      `SELECT evidence FROM canon.identity_links WHERE source_pk = 'L1'`,
    );
    t.deepEqual(ev!.evidence.rules, ['R1_PHONE_EXACT']);
    t.is(ev!.evidence.lead.phone_norm, '977456321');
    t.is(ev!.evidence.driver.phone_norm, '977456321');
    t.is(run.stats['match']['newly_linked_by_rule']['R1_PHONE_EXACT'], 1);
  }));

test('the target park is preferred over another park holding the same person', (t) =>
  withDb('match', async (db) => {
    await insertDriver(db, { driver_id: 'other', park_id: 'another-park', first_name: 'Juan', last_name: 'Perez', phone: '977456321' });
    await insertDriver(db, { driver_id: 'mine', first_name: 'Juan', last_name: 'Perez', phone: '51977456321' });
    await insertLead(db, { external_id: 'L1', first_name: 'Juan', last_name: 'Perez', park_phone: '977-456-321' });
    await runPipeline(db);
    t.is((await linkOf(db, 'L1'))?.driver_id, 'mine');
  }));

test('another park is used when the target park has no candidate', (t) =>
  withDb('match', async (db) => {
    await insertDriver(db, { driver_id: 'other', park_id: 'another-park', first_name: 'Juan', last_name: 'Perez', phone: '977456321' });
    await insertLead(db, { external_id: 'L1', first_name: 'Juan', last_name: 'Perez', park_phone: '977456321' });
    await runPipeline(db);
    t.is((await linkOf(db, 'L1'))?.driver_id, 'other');
  }));

test('R3 needs a similar name and a hire date in the window; R3B takes it without the window', (t) =>
  withDb('match', async (db) => {
    await insertDriver(db, { driver_id: 'recent', first_name: 'María', last_name: 'de la Cruz', car_number: 'ABC123' });
    await insertDriver(db, { driver_id: 'old', first_name: 'Pedro', last_name: 'Quispe', car_number: 'OLD999', hire_date: addDays(await businessToday(db), -400) });
    await insertLead(db, { external_id: 'L1', first_name: 'Maria', last_name: 'Cruz', asset_plate_number: 'abc-123' });
    await insertLead(db, { external_id: 'L2', first_name: 'PEDRO', last_name: 'QUISPE', asset_plate_number: 'old 999' });
    await runPipeline(db);
    t.is((await linkOf(db, 'L1'))?.match_rule, 'R3_PLATE_EXACT_NAME_SIMILAR');
    t.is((await linkOf(db, 'L2'))?.match_rule, 'R3B_PLATE_NAME_NO_DATE');
  }));

test('shift drivers share a plate: the clearly more similar name decides', (t) =>
  withDb('match', async (db) => {
    await insertDriver(db, { driver_id: 'day', first_name: 'Luis', last_name: 'Ramírez Torres', car_number: 'SHF001' });
    await insertDriver(db, { driver_id: 'night', first_name: 'Luis', last_name: 'Ramírez Soto', car_number: 'SHF001' });
    await insertLead(db, { external_id: 'L1', first_name: 'Luis', last_name: 'Ramirez Torres', asset_plate_number: 'SHF-001' });
    await runPipeline(db);
    const link = await linkOf(db, 'L1');
    t.is(link?.driver_id, 'day');
  }));

test('two drivers that fit equally well make the lead AMBIGUOUS, never a silent pick', (t) =>
  withDb('match', async (db) => {
    await insertDriver(db, { driver_id: 'a', first_name: 'Ana', last_name: 'Lopez', car_number: 'SHF001' });
    await insertDriver(db, { driver_id: 'b', first_name: 'Ana', last_name: 'Lopes', car_number: 'SHF001' });
    await insertLead(db, { external_id: 'L1', first_name: 'Ana', last_name: 'Lopez', asset_plate_number: 'SHF001' });
    const run = await runPipeline(db);
    t.is(await linkOf(db, 'L1'), undefined);
    const u = await unmatchedOf(db, 'L1');
    t.is(u?.reason_code, 'AMBIGUOUS');
    t.deepEqual(u?.candidates.map((c) => c.driver_id).sort(), ['a', 'b']);
    t.is(run.stats['match']['ambiguous'], 1);
  }));

test('an ambiguity in one rule is not overridden by a hit in another rule', (t) =>
  withDb('match', async (db) => {
    await insertDriver(db, { driver_id: 'a', first_name: 'Ana', last_name: 'Lopez', car_number: 'SHF001', phone: '51911111111' });
    await insertDriver(db, { driver_id: 'b', first_name: 'Ana', last_name: 'Lopes', car_number: 'SHF001' });
    await insertLead(db, { external_id: 'L1', first_name: 'Ana', last_name: 'Lopez', asset_plate_number: 'SHF001', park_phone: '911111111' });
    await runPipeline(db);
    t.is(await linkOf(db, 'L1'), undefined);
    t.is((await unmatchedOf(db, 'L1'))?.reason_code, 'AMBIGUOUS');
  }));

test('different rules pointing to different drivers are a CONFLICT', (t) =>
  withDb('match', async (db) => {
    await insertDriver(db, { driver_id: 'by_phone', first_name: 'Rosa', last_name: 'Flores', phone: '51922222222' });
    await insertDriver(db, { driver_id: 'by_plate', first_name: 'Rosa', last_name: 'Flores', car_number: 'RRR111' });
    await insertLead(db, { external_id: 'L1', first_name: 'Rosa', last_name: 'Flores', park_phone: '922222222', asset_plate_number: 'RRR111' });
    const run = await runPipeline(db);
    t.is((await unmatchedOf(db, 'L1'))?.reason_code, 'CONFLICT');
    t.is(run.stats['match']['conflicts'], 1);
  }));

test('all rules agreeing on one driver is a match that records every rule', (t) =>
  withDb('match', async (db) => {
    await insertDriver(db, { driver_id: 'd1', first_name: 'Rosa', last_name: 'Flores', phone: '51922222222', car_number: 'RRR111' });
    await insertLead(db, { external_id: 'L1', first_name: 'Rosa', last_name: 'Flores', park_phone: '922222222', asset_plate_number: 'RRR111' });
    await runPipeline(db);
    const [ev] = await db.query<{ match_rule: string; rules: string[] }>(
      `SELECT match_rule, evidence->'rules' AS rules FROM canon.identity_links WHERE source_pk = 'L1'`,
    );
    t.is(ev!.match_rule, 'R1_PHONE_EXACT');
    t.deepEqual(ev!.rules.sort(), ['R1_PHONE_EXACT', 'R3_PLATE_EXACT_NAME_SIMILAR']);
  }));

test('an office phone on many leads with different names is SHARED_KEY, not evidence', (t) =>
  withDb('match', async (db) => {
    await insertDriver(db, { driver_id: 'd1', first_name: 'Carlos', last_name: 'Soto', phone: '51014567890' });
    await insertLead(db, { external_id: 'L1', first_name: 'Carlos', last_name: 'Soto', park_phone: '014567890' });
    await insertLead(db, { external_id: 'L2', first_name: 'Jorge', last_name: 'Mendoza', park_phone: '014567890' });
    await insertLead(db, { external_id: 'L3', first_name: 'Lucia', last_name: 'Vargas', park_phone: '014567890' });
    await runPipeline(db);
    for (const k of ['L1', 'L2', 'L3']) {
      t.is(await linkOf(db, k), undefined, k);
      t.is((await unmatchedOf(db, k))?.reason_code, 'SHARED_KEY', k);
    }
    const shared = await db.query<{ key_value: string; leads: string }>(`SELECT key_value, leads FROM ops.v_shared_keys WHERE key_type = 'PHONE'`);
    t.deepEqual(shared, [{ key_value: '14567890', leads: '3' }]);
  }));

test('a phone on two drivers who are different people is not used by R1', (t) =>
  withDb('match', async (db) => {
    await insertDriver(db, { driver_id: 'a', first_name: 'Carlos', last_name: 'Soto', phone: '51933333333' });
    await insertDriver(db, { driver_id: 'b', first_name: 'Miguel', last_name: 'Huaman', phone: '51933333333' });
    await insertLead(db, { external_id: 'L1', first_name: 'Carlos', last_name: 'Soto', park_phone: '933333333' });
    await runPipeline(db);
    const u = await unmatchedOf(db, 'L1');
    t.is(u?.reason_code, 'SHARED_KEY');
    t.true(u!.candidates.every((c) => c.reject_reason === 'PHONE_SHARED_BY_DRIVERS'));
  }));

test('reason codes for leads without a usable match: MISSING_KEYS, NO_CANDIDATES, WEAK_MATCH_ONLY', (t) =>
  withDb('match', async (db) => {
    await insertDriver(db, { driver_id: 'd1', first_name: 'Pedro', last_name: 'Gomez', car_number: 'XYZ789' });
    await insertLead(db, { external_id: 'none', first_name: 'Solo', last_name: 'Nombre', park_phone: '123', asset_plate_number: '--' });
    await insertLead(db, { external_id: 'unknown', first_name: 'Nadie', last_name: null, park_phone: '999888777', asset_plate_number: 'QQQ111' });
    await insertLead(db, { external_id: 'weak', first_name: 'Carlos', last_name: 'Soto', asset_plate_number: 'xyz-789' });
    const run = await runPipeline(db);
    t.is((await unmatchedOf(db, 'none'))?.reason_code, 'MISSING_KEYS');
    t.is((await unmatchedOf(db, 'unknown'))?.reason_code, 'NO_CANDIDATES');
    t.is((await unmatchedOf(db, 'weak'))?.reason_code, 'WEAK_MATCH_ONLY');
    t.deepEqual(run.stats['match']['unmatched_by_reason'], { MISSING_KEYS: 1, NO_CANDIDATES: 1, WEAK_MATCH_ONLY: 1 });
  }));

test('a second lead of a linked driver reuses its person; two leads of a new driver share one new person', (t) =>
  withDb('match', async (db) => {
    await insertDriver(db, { driver_id: 'd1', first_name: 'Juan', last_name: 'Perez', phone: '51977456321' });
    await insertLead(db, { external_id: 'L1', first_name: 'Juan', last_name: 'Perez', park_phone: '977456321' });
    await insertLead(db, { external_id: 'L2', first_name: 'Juan', last_name: 'Perez', park_phone: '977456321' });
    const first = await runPipeline(db);
    t.is(first.stats['match']['new_persons'], 1);
    await insertLead(db, { external_id: 'L3', first_name: 'Juan', last_name: 'Perez', park_phone: '0051977456321' });
    const second = await runPipeline(db);
    t.is(second.stats['match']['new_persons'], 0);
    const persons = new Set([(await linkOf(db, 'L1'))!.person_key, (await linkOf(db, 'L2'))!.person_key, (await linkOf(db, 'L3'))!.person_key]);
    t.is(persons.size, 1);
    const [o] = await db.query<{ n: string; src: string }>(`SELECT count(*) AS n, min(origin_source_id) AS src FROM canon.identity_origin`);
    t.deepEqual(o, { n: '1', src: 'L1' });
  }));

test('an unmatched lead is retried and linked when its driver arrives, and is then RESOLVED', (t) =>
  withDb('match', async (db) => {
    await insertLead(db, { external_id: 'L1', first_name: 'Juan', last_name: 'Perez', park_phone: '977456321' });
    await runPipeline(db);
    t.is((await unmatchedOf(db, 'L1'))?.status, 'OPEN');
    await insertDriver(db, { driver_id: 'd1', first_name: 'Juan', last_name: 'Perez', phone: '51977456321' });
    const run = await runPipeline(db);
    t.is((await linkOf(db, 'L1'))?.driver_id, 'd1');
    const u = await unmatchedOf(db, 'L1');
    t.is(u?.status, 'RESOLVED');
    t.is(u?.attempts, 2);
    t.is(run.stats['match']['previously_unmatched_now_linked'], 1);
  }));

test('an IGNORED lead is neither retried nor overwritten', (t) =>
  withDb('match', async (db) => {
    await insertLead(db, { external_id: 'L1', first_name: 'Juan', last_name: 'Perez', park_phone: '977456321' });
    await runPipeline(db);
    await db.query(`UPDATE canon.identity_unmatched SET status = 'IGNORED', note = 'test lead' WHERE source_pk = 'L1'`);
    await insertDriver(db, { driver_id: 'd1', first_name: 'Juan', last_name: 'Perez', phone: '51977456321' });
    const run = await runPipeline(db);
    t.is(run.stats['match']['leads_selected'], 0);
    t.is(await linkOf(db, 'L1'), undefined);
    const u = await unmatchedOf(db, 'L1');
    t.is(u?.status, 'IGNORED');
    t.is(u?.attempts, 1);
  }));

test('a driver deleted upstream is never matched, even before the next full index refresh', (t) =>
  withDb('match', async (db) => {
    await insertDriver(db, { driver_id: 'gone', first_name: 'Juan', last_name: 'Perez', phone: '51977456321' });
    await runPipeline(db); // indexes the driver
    await db.query(`DELETE FROM public.drivers WHERE driver_id = 'gone'`);
    await insertLead(db, { external_id: 'L1', first_name: 'Juan', last_name: 'Perez', park_phone: '977456321' });
    await runPipeline(db);
    t.is(await linkOf(db, 'L1'), undefined);
    const u = await unmatchedOf(db, 'L1');
    t.is(u?.reason_code, 'NO_CANDIDATES');
    t.is(u?.candidates[0]?.reject_reason, 'DRIVER_DELETED');
    await db.query(`UPDATE canon_internal.driver_index_state SET last_full_at = now() - interval '2 days'`);
    const full = await runPipeline(db);
    t.is(full.stats['driver_index']['mode'], 'full');
    t.is(full.stats['driver_index']['drivers_removed'], 1);
  }));

test('the driver index re-normalises a driver whose phone changed upstream', (t) =>
  withDb('match', async (db) => {
    await insertDriver(db, { driver_id: 'd1', first_name: 'Juan', last_name: 'Perez', phone: '51900000000' });
    const first = await runPipeline(db);
    t.is(first.stats['driver_index']['drivers_reindexed'], 1);
    const again = await runPipeline(db);
    t.is(again.stats['driver_index']['mode'], 'incremental');
    t.is(again.stats['driver_index']['drivers_reindexed'], 0);
    await db.query(`UPDATE public.drivers SET phone = '51977456321', updated_at = now() WHERE driver_id = 'd1'`);
    const changed = await runPipeline(db);
    t.is(changed.stats['driver_index']['drivers_reindexed'], 1);
    const [i] = await db.query<{ phone_norm: string }>(`SELECT phone_norm FROM canon_internal.driver_index WHERE driver_id = 'd1'`);
    t.is(i!.phone_norm, '977456321');
  }));

test('--limit bounds the batch, never-evaluated leads first, then the least recently attempted', (t) =>
  withDb('match', async (db) => {
    for (const k of ['A', 'B', 'C']) await insertLead(db, { external_id: k, first_name: 'X', last_name: null, park_phone: '9' + k.charCodeAt(0) + '1234567' });
    const r1 = await runPipeline(db, 'p_limit => 2');
    t.is(r1.stats['match']['leads_evaluated'], 2);
    // Drivers on the phones of the evaluated leads make both due for a retry.
    await insertDriver(db, { driver_id: 'onA', first_name: 'Otro', last_name: 'Uno', phone: '9651234567' });
    await insertDriver(db, { driver_id: 'onB', first_name: 'Otro', last_name: 'Dos', phone: '9661234567' });
    const r2 = await runPipeline(db, 'p_limit => 2');
    t.is(r2.stats['match']['batch']['never_evaluated'], 1);
    t.is(r2.stats['match']['batch']['retried'], 1);
    const attempts = await db.query<{ source_pk: string; attempts: number }>(`SELECT source_pk, attempts FROM canon.identity_unmatched ORDER BY source_pk`);
    t.deepEqual(attempts.map((a) => a.attempts).sort(), [1, 1, 2]);
  }));

test('an OPEN unmatched lead is retried only when a driver sharing one of its keys changed since its last attempt', (t) =>
  withDb('match', async (db) => {
    await insertDriver(db, { driver_id: 'd0', first_name: 'Ana', last_name: 'Lopez', phone: '51911111111' });
    await insertLead(db, { external_id: 'L1', first_name: 'Juan', last_name: 'Perez', park_phone: '977456321' });
    const first = await runPipeline(db);
    t.is(first.stats['match']['leads_selected'], 1);
    t.is((await unmatchedOf(db, 'L1'))?.reason_code, 'NO_CANDIDATES');

    // Nothing changed: the lead is not re-selected, and its bookkeeping is left alone.
    const idle = await runPipeline(db);
    t.is(idle.stats['driver_index']['index_changed'], false);
    t.is(idle.stats['match']['retry_check'], 'no_change');
    t.is(idle.stats['match']['leads_selected'], 0);
    t.is(idle.stats['match']['retries_marked_due'], 0);
    t.is(idle.stats['match']['retries_skipped_no_index_change'], 1);
    t.is((await unmatchedOf(db, 'L1'))?.attempts, 1);

    // An unrelated driver changes the index, but shares no key with the lead: no retry.
    await insertDriver(db, { driver_id: 'd1', first_name: 'Rosa', last_name: 'Flores', phone: '51922222222' });
    const other = await runPipeline(db);
    t.is(other.stats['driver_index']['index_changed'], true);
    t.is(other.stats['match']['retry_check'], 'changed_keys');
    t.is(other.stats['match']['retries_marked_due'], 0);
    t.is(other.stats['match']['leads_selected'], 0);
    t.is((await unmatchedOf(db, 'L1'))?.attempts, 1);

    // The matching driver arrives, its phone stored with the country code: retried and linked.
    await insertDriver(db, { driver_id: 'd2', first_name: 'Juan', last_name: 'Perez', phone: '51977456321' });
    const linked = await runPipeline(db);
    t.is(linked.stats['match']['retries_marked_due'], 1);
    t.is(linked.stats['match']['leads_selected'], 1);
    t.is(linked.stats['match']['batch']['retried'], 1);
    t.is(linked.stats['match']['previously_unmatched_now_linked'], 1);
    t.is((await linkOf(db, 'L1'))?.driver_id, 'd2');
    t.is((await unmatchedOf(db, 'L1'))?.status, 'RESOLVED');
    const [due] = await db.query<{ retry_due: boolean }>(`SELECT retry_due FROM canon.identity_unmatched WHERE source_pk = 'L1'`);
    t.false(due!.retry_due);
    t.is((await runPipeline(db)).stats['match']['leads_selected'], 0);
  }));

test('a lead due for a retry that stays unmatched is not due again until another of its drivers changes', (t) =>
  withDb('match', async (db) => {
    await insertLead(db, { external_id: 'L1', first_name: 'Juan', last_name: 'Perez', asset_plate_number: 'ABC123' });
    await runPipeline(db);
    // A driver on the same plate with another name: the lead is due, retried, still unmatched.
    await insertDriver(db, { driver_id: 'd1', first_name: 'Rosa', last_name: 'Flores', car_number: 'ABC-123' });
    const retried = await runPipeline(db);
    t.is(retried.stats['match']['retries_marked_due'], 1);
    t.is(retried.stats['match']['batch']['retried'], 1);
    t.is((await unmatchedOf(db, 'L1'))?.attempts, 2);
    const idle = await runPipeline(db);
    t.is(idle.stats['match']['leads_selected'], 0);
    t.is(idle.stats['match']['retries_skipped_no_index_change'], 1);
  }));

test('an AMBIGUOUS lead whose candidate is deleted upstream is retried after the full index refresh', (t) =>
  withDb('match', async (db) => {
    await insertDriver(db, { driver_id: 'a', first_name: 'Ana', last_name: 'Lopez', car_number: 'SHF001' });
    await insertDriver(db, { driver_id: 'b', first_name: 'Ana', last_name: 'Lopes', car_number: 'SHF001' });
    await insertLead(db, { external_id: 'L1', first_name: 'Ana', last_name: 'Lopez', asset_plate_number: 'SHF001' });
    await runPipeline(db);
    t.is((await unmatchedOf(db, 'L1'))?.reason_code, 'AMBIGUOUS');
    await db.query(`DELETE FROM public.drivers WHERE driver_id = 'b'`);
    // The incremental refresh does not see the deletion: nothing is due.
    t.is((await runPipeline(db)).stats['match']['leads_selected'], 0);
    await db.query(`UPDATE canon_internal.driver_index_state SET last_full_at = now() - interval '2 days'`);
    const full = await runPipeline(db);
    t.is(full.stats['driver_index']['drivers_removed'], 1);
    t.is(full.stats['match']['retries_marked_due'], 1);
    t.is(full.stats['match']['batch']['retried'], 1);
    t.is((await linkOf(db, 'L1'))?.driver_id, 'a');
    const [n] = await db.query<{ n: string }>(`SELECT count(*) AS n FROM canon_internal.driver_index_key_changes`);
    t.is(n!.n, '0');
  }));

test('an AMBIGUOUS lead is retried when a candidate driver changes its key away from the lead', (t) =>
  withDb('match', async (db) => {
    await insertDriver(db, { driver_id: 'a', first_name: 'Ana', last_name: 'Lopez', car_number: 'SHF001' });
    await insertDriver(db, { driver_id: 'b', first_name: 'Ana', last_name: 'Lopes', car_number: 'SHF001' });
    await insertLead(db, { external_id: 'L1', first_name: 'Ana', last_name: 'Lopez', asset_plate_number: 'SHF001' });
    await runPipeline(db);
    t.is((await unmatchedOf(db, 'L1'))?.reason_code, 'AMBIGUOUS');
    await db.query(`UPDATE public.drivers SET car_number = 'ZZZ999', updated_at = now() WHERE driver_id = 'b'`);
    const run = await runPipeline(db);
    t.is(run.stats['driver_index']['drivers_reindexed'], 1);
    t.is(run.stats['match']['retries_marked_due'], 1);
    t.is((await linkOf(db, 'L1'))?.driver_id, 'a');
  }));

test('a lead reopened by hand from IGNORED is retried by the next run', (t) =>
  withDb('match', async (db) => {
    await insertLead(db, { external_id: 'L1', first_name: 'Juan', last_name: 'Perez', park_phone: '977456321' });
    await runPipeline(db);
    await db.query(`UPDATE canon.identity_unmatched SET status = 'IGNORED' WHERE source_pk = 'L1'`);
    await insertDriver(db, { driver_id: 'd1', first_name: 'Juan', last_name: 'Perez', phone: '51977456321' });
    t.is((await runPipeline(db)).stats['match']['leads_selected'], 0);
    await db.query(`UPDATE canon.identity_unmatched SET status = 'OPEN' WHERE source_pk = 'L1'`);
    const run = await runPipeline(db);
    t.is(run.stats['match']['batch']['retried'], 1);
    t.is((await linkOf(db, 'L1'))?.driver_id, 'd1');
  }));

test('a run with nothing new selects no lead; a new lead alone is the next batch', (t) =>
  withDb('match', async (db) => {
    await insertDriver(db, { driver_id: 'd1', first_name: 'Juan', last_name: 'Perez', phone: '51977456321' });
    await insertLead(db, { external_id: 'LINKED', first_name: 'Juan', last_name: 'Perez', park_phone: '977456321' });
    await insertLead(db, { external_id: 'OPEN', first_name: 'Nadie', last_name: null, park_phone: '999888777' });
    await insertLead(db, { external_id: 'DUP', first_name: 'Juan', last_name: 'Perez', park_phone: '977456321' });
    await insertLead(db, { external_id: 'NOKEYS', first_name: 'Solo', last_name: null });
    const first = await runPipeline(db);
    t.is(first.stats['match']['leads_selected'], 4);
    for (let i = 0; i < 2; i++) {
      const idle = await runPipeline(db);
      t.is(idle.stats['match']['leads_selected'], 0);
      t.is(idle.stats['match']['leads_evaluated'], 0);
      t.is(idle.stats['match']['leads_keyed'], 0);
    }
    // A second row of an already linked key is no work either; a new key is.
    await insertLead(db, { external_id: 'LINKED', first_name: 'Juan', last_name: 'Perez', park_phone: '977456321' });
    t.is((await runPipeline(db)).stats['match']['leads_selected'], 0);
    await insertLead(db, { external_id: 'NEW', first_name: 'Otra', last_name: null, park_phone: '966555444' });
    const next = await runPipeline(db);
    t.is(next.stats['match']['leads_selected'], 1);
    t.is(next.stats['match']['batch']['never_evaluated'], 1);
    t.truthy(await unmatchedOf(db, 'NEW'));
  }));

test('a lead whose link and unmatched row are removed is evaluated again as new', (t) =>
  withDb('match', async (db) => {
    await insertDriver(db, { driver_id: 'd1', first_name: 'Juan', last_name: 'Perez', phone: '51977456321' });
    await insertLead(db, { external_id: 'L1', first_name: 'Juan', last_name: 'Perez', park_phone: '977456321' });
    await insertLead(db, { external_id: 'L2', first_name: 'Nadie', last_name: null, park_phone: '999888777' });
    await runPipeline(db);
    t.is((await linkOf(db, 'L1'))?.driver_id, 'd1');
    await db.query(`BEGIN;
      DELETE FROM canon.identity_links WHERE source_table = 'module_ct_cabinet_leads' AND source_pk = 'L1';
      DELETE FROM canon.identity_origin;
      DELETE FROM canon.identity_links;
      DELETE FROM canon.identity_registry;
      DELETE FROM canon.identity_unmatched WHERE source_pk = 'L2';
      COMMIT;`);
    const again = await runPipeline(db);
    t.is(again.stats['match']['leads_selected'], 2);
    t.is(again.stats['match']['batch']['never_evaluated'], 2);
    t.is((await linkOf(db, 'L1'))?.driver_id, 'd1');
    t.is((await unmatchedOf(db, 'L2'))?.attempts, 1);
  }));

test('a lead row with a lower id committed after higher ids were read is keyed and evaluated by the next run', (t) =>
  withDb('match', async (db) => {
    await insertDriver(db, { driver_id: 'd1', first_name: 'Juan', last_name: 'Perez', phone: '51977456321' });
    await db.query(`INSERT INTO public.module_ct_cabinet_leads (id, external_id, lead_created_at, first_name, park_phone)
                    VALUES (1000, 'HIGH', canon.business_today() - 2, 'Otra', '966555444')`);
    await runPipeline(db);
    await db.query(`INSERT INTO public.module_ct_cabinet_leads (id, external_id, lead_created_at, first_name, last_name, park_phone)
                    VALUES (500, 'LATE', canon.business_today() - 2, 'Juan', 'Perez', '977456321')`);
    const run = await runPipeline(db);
    t.is(run.stats['match']['lead_keys']['lead_rows_written'], 1);
    t.is(run.stats['match']['leads_selected'], 1);
    t.is((await linkOf(db, 'LATE'))?.driver_id, 'd1');
  }));

test('leads older than days_back are not selected', (t) =>
  withDb('match', async (db) => {
    await insertLead(db, { external_id: 'old', first_name: 'X', last_name: null, park_phone: '977000001', lead_created_at: `${addDays(await businessToday(db), -40)} 00:00` });
    await insertLead(db, { external_id: 'new', first_name: 'X', last_name: null, park_phone: '977000002' });
    const run = await runPipeline(db, 'p_days_back => 30');
    t.is(run.stats['match']['leads_selected'], 1);
    t.truthy(await unmatchedOf(db, 'new'));
    t.is(await unmatchedOf(db, 'old'), undefined);
    // Still listed as never evaluated, with its date: a wider days_back takes it.
    const listed = await db.query<{ lead_date_ok: boolean }>(
      `SELECT q.lead_date = canon.business_today() - 40 AS lead_date_ok
       FROM canon_internal.lead_keys_pending q JOIN canon_internal.lead_keys k ON k.lead_id = q.lead_id WHERE k.lead_source_pk = 'old'`);
    t.deepEqual(listed, [{ lead_date_ok: true }]);
    const wider = await runPipeline(db, 'p_days_back => 60');
    t.is(wider.stats['match']['leads_selected'], 1);
    t.truthy(await unmatchedOf(db, 'old'));
    const [left] = await db.query<{ n: string }>(`SELECT count(*) AS n FROM canon_internal.lead_keys_pending`);
    t.is(left!.n, '0');
  }));

test('two rows with the same external_id are one lead key, evaluated once', (t) =>
  withDb('match', async (db) => {
    await insertDriver(db, { driver_id: 'd1', first_name: 'Juan', last_name: 'Perez', phone: '51977456321' });
    await insertLead(db, { external_id: 'DUP', first_name: 'Juan', last_name: 'Perez', park_phone: '977456321' });
    await insertLead(db, { external_id: ' DUP ', first_name: 'Juan', last_name: 'Perez', park_phone: '977456321' });
    const run = await runPipeline(db);
    t.is(run.stats['match']['leads_evaluated'], 1);
    t.is(run.stats['match']['batch']['duplicate_key_rows'], 1);
    t.is((await linkOf(db, 'DUP'))?.driver_id, 'd1');
  }));

test('only-limbo gives a NO_DRIVER lead the driver link it was missing', (t) =>
  withDb('match', async (db) => {
    await insertDriver(db, { driver_id: 'd1', first_name: 'Juan', last_name: 'Perez', phone: '51977456321' });
    await insertLead(db, { external_id: 'L1', first_name: 'Juan', last_name: 'Perez', park_phone: '977456321' });
    // A person linked to the lead but not to its driver: what the predecessor left behind.
    await db.query(`BEGIN;
      INSERT INTO canon.identity_registry (person_key, confidence_level) VALUES ('00000000-0000-0000-0000-000000000001', 'HIGH');
      INSERT INTO canon.identity_links (source_table, source_pk, person_key, match_rule, match_score, confidence_level)
      VALUES ('module_ct_cabinet_leads', 'L1', '00000000-0000-0000-0000-000000000001', 'LEGACY', 90, 'HIGH');
      COMMIT;`);
    const normal = await runPipeline(db);
    t.is(normal.stats['match']['leads_selected'], 0);
    const repair = await runPipeline(db, 'p_only_limbo => true');
    t.is(repair.stats['match']['no_driver_repaired'], 1);
    const link = await linkOf(db, 'L1');
    t.deepEqual([link?.person_key, link?.driver_id], ['00000000-0000-0000-0000-000000000001', 'd1']);
  }));

test('hostile input never stops a run', (t) =>
  withDb('match', async (db) => {
    await insertDriver(db, { driver_id: 'd1', first_name: '😀'.repeat(100), last_name: 'Иванов', phone: 'x'.repeat(10000), car_number: "'; DROP TABLE public.drivers; --" });
    await insertLead(db, { external_id: 'evil', first_name: 'Ж'.repeat(10000), last_name: "Robert'); DROP TABLE students;--", park_phone: '😀📞' + '9'.repeat(5000), asset_plate_number: 'ñ'.repeat(10000) });
    await insertLead(db, { external_id: 'nodate', first_name: 'A', last_name: null, lead_created_at: null });
    await insertLead(db, { external_id: null, first_name: null, last_name: null });
    const run = await runPipeline(db);
    t.is(run.status, 'COMPLETED', run.error_message ?? '');
    t.is(run.stats['match']['leads_evaluated'], 2);
    t.is(run.stats['match']['leads_without_lead_created_at'], 1);
    const [n] = await db.query<{ n: string }>(`SELECT count(*) AS n FROM public.drivers`);
    t.is(n!.n, '1');
  }));

test('target park id comes from canon.settings', (t) =>
  withDb('match', async (db) => {
    const [s] = await db.query<{ value: string }>(`SELECT value FROM canon.settings WHERE key = 'target_park_id'`);
    t.is(s!.value, TARGET_PARK);
  }));

test('the rules are data: a change of a score or threshold in canon.match_rules / match_parameters makes every OPEN lead due and the next run decides it with the new rule', (t) =>
  withDb('match', async (db) => {
    // A plate candidate whose name scores 0.675 (3 of 4 tokens): a match at 0.66, not at 0.7.
    await insertDriver(db, { driver_id: 'd-plate', first_name: 'Ana Maria', last_name: 'Quispe Roca', car_number: 'RUL-123' });
    await insertLead(db, { external_id: 'RULE-1', first_name: 'Ana', last_name: 'Quispe Roca', asset_plate_number: 'rul123' });
    await db.query(`UPDATE canon.match_parameters SET name_similarity_min = 0.95`);
    // the rules' decision (the probabilistic tier after them may send the lead to review)
    t.deepEqual((await runPipeline(db)).stats['match']['unmatched_by_reason'], { WEAK_MATCH_ONLY: 1 });
    t.is(await linkOf(db, 'RULE-1'), undefined);
    t.is((await runPipeline(db)).stats['match']['leads_selected'], 0, 'nothing changed: not retried');
    await db.query(`UPDATE canon.match_parameters SET name_similarity_min = 0.66`);
    const [due] = await db.query<{ retry_due: boolean }>(`SELECT retry_due FROM canon.identity_unmatched WHERE source_pk = 'RULE-1'`);
    t.true(due!.retry_due);
    await db.query(`UPDATE canon.match_rules SET score = 81 WHERE rule = 'R3B_PLATE_NAME_NO_DATE'`);
    await db.query(`UPDATE canon.match_rules SET score = 86 WHERE rule = 'R3_PLATE_EXACT_NAME_SIMILAR'`);
    await runPipeline(db);
    const [link] = await db.query<{ match_rule: string; match_score: string }>(
      `SELECT match_rule, match_score::text FROM canon.identity_links WHERE source_pk = 'RULE-1'`);
    t.deepEqual(link, { match_rule: 'R3_PLATE_EXACT_NAME_SIMILAR', match_score: '86.00' });
  }));
