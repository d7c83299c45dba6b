// The per-lead baseline of the benchmarks: a stand-in for the predecessor's matching job
// (../shared/PREDECESSOR.md 3.4-3.7), run from Node on the same server and the same leads
// as the run it is compared with. Still lighter than the predecessor (no ORM, no Python,
// node-pg on loopback): the predecessor costs 6 to 7 ms per lead on this server, so a
// ratio against this stand-in understates the gain; every bench says so.
import pg from 'pg';

/** SPEC 5's name score, as the predecessor computed it in Python: (jaccard + overlap) / 2 of the token sets. */
export function nameScore(a: string | null, b: string | null): number {
  const ta = new Set((a ?? '').split(' ').filter(Boolean));
  const tb = new Set((b ?? '').split(' ').filter(Boolean));
  if (ta.size === 0 || tb.size === 0) return 0;
  let common = 0;
  for (const t of ta) if (tb.has(t)) common++;
  return (common / (ta.size + tb.size - common) + common / Math.max(ta.size, tb.size)) / 2;
}

export interface PerLeadResult {
  ms: number;
  statements: number;
  leads: number;
  linked: number;
  /** false when the bench role may not turn our triggers off (they then run too) */
  triggersOff: boolean;
}

interface Candidate {
  driver_id: string;
  park_id: string | null;
  phone_norm: string | null;
  license_norm: string | null;
  name_norm: string | null;
}

/** What one rule found: a person, or the reason it did not. */
interface RuleResult {
  person?: string;
  driver?: string;
  rule: string;
  score: number;
  reason?: string;
}

/**
 * The predecessor's job, lead after lead, one statement at a time, awaited in turn:
 *  - the linked leads of the batch loaded once before the loop (3.7, "skipping");
 *  - every applicable rule, in order, whatever the earlier ones found (3.5): R1 by phone
 *    in the target park, then (none there) in the other parks (3.4); R3 by plate in the
 *    target park within the hire-date window, then (none) R3b without it; names scored in
 *    the application (3.3), as it did in Python;
 *  - the person of a winning driver resolved inside the rule (3.6): its driver link; else
 *    the driver row read, a person looked up by primary phone, then by primary licence,
 *    else inserted at once (an orphan when the lead ends unmatched, as there);
 *  - the writes (3.7), each a statement, read before written as its ORM did: on a match
 *    the person read (and filled in when it lacks phone or licence), the lead link read
 *    then inserted or updated, the unmatched row deleted, and, for rules with a driver,
 *    the guard that the person has a lead link, the driver's link read, the driver link
 *    inserted; otherwise the unmatched row read then inserted or updated.
 * About 10 statements a lead on the demo data, as the issue counts the predecessor.
 * Generous to it: its registry lookups by phone and licence had no index (a scan of every
 * person a lead); here an index on each is created first, untimed, in the same
 * transaction. The writes go to the real tables in one transaction rolled back at the
 * end, our triggers off (session_replication_role = replica: the predecessor's tables had
 * none), starting from the state the run `runId` started from (what that run wrote for
 * the batch is deleted first, untimed). Not done: its commit every 1,000 leads.
 */
export async function perLeadBaseline(url: string, ids: number[], runId: number): Promise<PerLeadResult> {
  const c = new pg.Client({ connectionString: url, application_name: 'cabinet-leads-bench-per-lead' });
  await c.connect();
  try {
    let statements = 0;
    const q = async <R extends pg.QueryResultRow>(sql: string, params: unknown[]): Promise<R[]> => {
      statements++;
      return (await c.query<R>(sql, params)).rows;
    };
    await c.query('BEGIN');
    let triggersOff = true;
    try {
      await c.query('SAVEPOINT replica');
      await c.query(`SET LOCAL session_replication_role = replica`);
    } catch {
      await c.query('ROLLBACK TO SAVEPOINT replica');
      triggersOff = false;
    }
    await c.query(`DELETE FROM canon.identity_origin WHERE run_id = $1`, [runId]);
    await c.query(`DELETE FROM canon.identity_links WHERE run_id = $1`, [runId]);
    await c.query(`DELETE FROM canon.identity_unmatched WHERE first_run_id = $1`, [runId]);
    await c.query(`CREATE INDEX ON canon.identity_registry (primary_phone)`);
    await c.query(`CREATE INDEX ON canon.identity_registry (primary_license)`);
    const target = (await c.query<{ t: string }>(`SELECT canon.setting('target_park_id') AS t`)).rows[0]!.t;
    const keys = (await c.query<{ lead_source_pk: string; phone_norm: string | null; plate_norm: string | null; name_norm: string | null; lead_date: string | null }>(
      `SELECT lead_source_pk, phone_norm, plate_norm, name_norm, lead_date::text
       FROM canon_internal.lead_keys WHERE lead_id = ANY ($1::integer[]) ORDER BY lead_id`,
      [ids],
    )).rows;
    const CANDIDATE = `SELECT driver_id, park_id, phone_norm, license_norm, name_norm FROM canon_internal.driver_index`;

    // 3.6: the person of a driver, created at once when none is found.
    const resolvePerson = async (d: Candidate, confidence: string): Promise<string | undefined> => {
      const linked = await q<{ person_key: string }>(
        `SELECT person_key FROM canon.identity_links WHERE source_table = 'drivers' AND source_pk = $1`, [d.driver_id]);
      if (linked[0]) return linked[0].person_key;
      const row = (await q<{ full_name: string | null }>(
        `SELECT phone, license_number, coalesce(full_name, concat_ws(' ', first_name, middle_name, last_name)) AS full_name
         FROM public.drivers WHERE driver_id = $1 LIMIT 1`, [d.driver_id]))[0];
      if (!row) return undefined;
      if (d.phone_norm) {
        const byPhone = await q<{ person_key: string }>(`SELECT person_key FROM canon.identity_registry WHERE primary_phone = $1 LIMIT 1`, [d.phone_norm]);
        if (byPhone[0]) return byPhone[0].person_key;
      }
      if (d.license_norm) {
        const byLicense = await q<{ person_key: string }>(`SELECT person_key FROM canon.identity_registry WHERE primary_license = $1 LIMIT 1`, [d.license_norm]);
        if (byLicense[0]) return byLicense[0].person_key;
      }
      return (await q<{ person_key: string }>(
        `INSERT INTO canon.identity_registry (confidence_level, primary_phone, primary_license, primary_name)
         VALUES ($1, $2, $3, $4) RETURNING person_key`,
        [confidence, d.phone_norm, d.license_norm, row.full_name]))[0]!.person_key;
    };

    let linked = 0;
    const t = performance.now();
    const already = new Set((await q<{ source_pk: string }>(
      `SELECT source_pk FROM canon.identity_links WHERE source_table = 'module_ct_cabinet_leads' AND source_pk = ANY ($1::text[])`,
      [keys.map((k) => k.lead_source_pk)])).map((r) => r.source_pk));
    for (const k of keys) {
      if (already.has(k.lead_source_pk)) continue;
      const results: RuleResult[] = [];
      if (k.phone_norm) {
        // R1, two park tiers (3.4)
        let rows = await q<Candidate>(`${CANDIDATE} WHERE phone_norm = $1 AND park_id = $2 LIMIT 10`, [k.phone_norm, target]);
        if (rows.length === 0) rows = await q<Candidate>(`${CANDIDATE} WHERE phone_norm = $1 AND park_id <> $2 LIMIT 10`, [k.phone_norm, target]);
        if (rows.length === 0) results.push({ rule: 'R1_PHONE_EXACT', score: 0, reason: 'NO_CANDIDATES' });
        else if (rows.length > 1) results.push({ rule: 'R1_PHONE_EXACT', score: 0, reason: 'AMBIGUOUS' });
        else {
          const person = await resolvePerson(rows[0]!, 'HIGH');
          results.push(person ? { person, driver: rows[0]!.driver_id, rule: 'R1_PHONE_EXACT', score: 95 } : { rule: 'R1_PHONE_EXACT', score: 0, reason: 'NO_CANDIDATES' });
        }
      }
      if (k.plate_norm && k.name_norm && k.lead_date) {
        // R3 with the hire-date window; R3b without it when R3 finds no row (3.4)
        let rows = await q<Candidate>(
          `${CANDIDATE} WHERE plate_norm = $1 AND park_id = $2 AND (hire_date IS NULL OR hire_date BETWEEN $3::date - 90 AND $3::date + 30) LIMIT 20`,
          [k.plate_norm, target, k.lead_date]);
        let r3b = false;
        if (rows.length === 0) {
          rows = await q<Candidate>(`${CANDIDATE} WHERE plate_norm = $1 AND park_id = $2 LIMIT 20`, [k.plate_norm, target]);
          r3b = true;
        }
        const rule = r3b ? 'R3B_PLATE_NAME_NO_DATE' : 'R3_PLATE_EXACT_NAME_SIMILAR';
        const scored = rows.map((r) => ({ r, s: nameScore(k.name_norm, r.name_norm) })).filter((x) => x.s >= 0.66).sort((a, b) => b.s - a.s);
        if (rows.length === 0) results.push({ rule, score: 0, reason: 'NO_CANDIDATES' });
        else if (scored.length === 0) results.push({ rule, score: 0, reason: 'WEAK_MATCH_ONLY' });
        else if (scored.length > 1 && scored[0]!.s - scored[1]!.s < 0.15) results.push({ rule, score: 0, reason: 'AMBIGUOUS' });
        else if (r3b) {
          // R3b never creates a person: the winner must already have its driver link
          const p = await q<{ person_key: string }>(
            `SELECT person_key FROM canon.identity_links WHERE source_table = 'drivers' AND source_pk = $1`, [scored[0]!.r.driver_id]);
          results.push(p[0] ? { person: p[0].person_key, rule, score: Math.floor(scored[0]!.s * 100) } : { rule, score: 0, reason: 'NO_CANDIDATES' });
        } else {
          const person = await resolvePerson(scored[0]!.r, 'MEDIUM');
          results.push(person ? { person, driver: scored[0]!.r.driver_id, rule, score: 85 } : { rule, score: 0, reason: 'NO_CANDIDATES' });
        }
      }
      // 3.5: one person found (or several rules agreeing on one) wins; else the first reason
      const matched = results.filter((r) => r.person);
      const persons = new Set(matched.map((r) => r.person));
      const win = persons.size === 1 ? matched.sort((a, b) => b.score - a.score)[0] : undefined;
      if (win) {
        const confidence = win.score >= 95 ? 'HIGH' : 'MEDIUM';
        // 3.7: the person upserted (filled in where empty), the lead link upserted, the
        // unmatched row deleted, the driver link (guarded) for rules with a driver
        const p = (await q<{ primary_phone: string | null; primary_license: string | null }>(
          `SELECT confidence_level, primary_phone, primary_license, primary_name FROM canon.identity_registry WHERE person_key = $1`, [win.person]))[0];
        if (p && (p.primary_phone === null || p.primary_license === null)) {
          await q(`UPDATE canon.identity_registry SET updated_at = now() WHERE person_key = $1`, [win.person]);
        }
        const link = await q(`SELECT id FROM canon.identity_links WHERE source_table = 'module_ct_cabinet_leads' AND source_pk = $1`, [k.lead_source_pk]);
        if (link.length === 0) {
          await q(`INSERT INTO canon.identity_links (source_table, source_pk, person_key, match_rule, match_score, confidence_level, evidence)
                   VALUES ('module_ct_cabinet_leads', $1, $2, $3, $4, $5, jsonb_build_object('driver_id', $6::text))`,
            [k.lead_source_pk, win.person, win.rule, win.score, confidence, win.driver ?? null]);
        } else {
          await q(`UPDATE canon.identity_links SET match_rule = $2, match_score = $3, confidence_level = $4
                   WHERE source_table = 'module_ct_cabinet_leads' AND source_pk = $1`, [k.lead_source_pk, win.rule, win.score, confidence]);
        }
        await q(`DELETE FROM canon.identity_unmatched WHERE source_table = 'module_ct_cabinet_leads' AND source_pk = $1`, [k.lead_source_pk]);
        if (win.driver) {
          const guard = await q(`SELECT 1 FROM canon.identity_links WHERE person_key = $1 AND source_table = 'module_ct_cabinet_leads' LIMIT 1`, [win.person]);
          const driverLink = await q(`SELECT person_key FROM canon.identity_links WHERE source_table = 'drivers' AND source_pk = $1`, [win.driver]);
          if (guard.length > 0 && driverLink.length === 0) {
            await q(`INSERT INTO canon.identity_links (source_table, source_pk, person_key, match_rule, match_score, confidence_level)
                     VALUES ('drivers', $1, $2, $3, $4, $5)`, [win.driver, win.person, win.rule, win.score, confidence]);
          }
        }
        linked++;
      } else {
        const reason = persons.size > 1 ? 'AMBIGUOUS' : results.find((r) => r.reason)?.reason ?? 'MISSING_KEYS';
        const open = await q(`SELECT attempts FROM canon.identity_unmatched WHERE source_table = 'module_ct_cabinet_leads' AND source_pk = $1`, [k.lead_source_pk]);
        if (open.length === 0) {
          await q(`INSERT INTO canon.identity_unmatched (source_table, source_pk, reason_code, details)
                   VALUES ('module_ct_cabinet_leads', $1, $2, jsonb_build_object('phone_norm', $3::text, 'plate_norm', $4::text, 'name_norm', $5::text))`,
            [k.lead_source_pk, reason, k.phone_norm, k.plate_norm, k.name_norm]);
        } else {
          await q(`UPDATE canon.identity_unmatched SET reason_code = $2, status = 'OPEN', last_attempt_at = now(), attempts = attempts + 1
                   WHERE source_table = 'module_ct_cabinet_leads' AND source_pk = $1`, [k.lead_source_pk, reason]);
        }
      }
    }
    const elapsed = performance.now() - t;
    await c.query('ROLLBACK');
    return { ms: elapsed, statements, leads: keys.length, linked, triggersOff };
  } finally {
    await c.end();
  }
}
