// ops.estimate_fs_version: a person estimates the probabilistic tier's m by EM on the leads the
// tier has seen and gets a new, inactive parameter version with the new m beside the active
// one's; nothing the job decides changes until the person activates it.
import test from 'ava';
import { type TestDb, withDb } from '../helpers/db.js';
import { insertFsPeople } from '../helpers/fs-people.js';
import { runPipeline } from '../helpers/pipeline.js';

interface Row {
  version: number;
  comparison: string;
  level: string;
  m: string;
  active_m: string;
  pairs: number;
  leads: number;
  converged: boolean;
}

/** What a run decided and what the tier is parametrised with: every row, as text. */
async function state(db: TestDb): Promise<Record<string, unknown>> {
  const q = async (sql: string) => (await db.query(sql)).map((r) => JSON.stringify(r));
  return {
    links: await q(`SELECT source_table, source_pk, person_key, match_rule, match_score, evidence, run_id FROM canon.identity_links ORDER BY source_table, source_pk`),
    unmatched: await q(`SELECT source_pk, reason_code, status, retry_due, candidates, details, attempts FROM canon.identity_unmatched ORDER BY source_pk`),
    version1: await q(`SELECT * FROM canon.match_fs_versions WHERE version = 1`),
    levels1: await q(`SELECT * FROM canon.match_fs_levels WHERE version = 1 ORDER BY comparison, level`),
  };
}

test('writes the EM estimate as a new inactive version, its m beside the active m, and changes neither the active version nor any lead', (t) =>
  withDb('fs_em_version', async (db) => {
    await insertFsPeople(db);
    const run = await runPipeline(db);
    t.true(run.stats['probabilistic']['newly_linked'] > 0, 'the tier linked some of the people');
    const before = await state(db);
    const rows = await db.query<Row>(`SELECT * FROM ops.estimate_fs_version('EM on the test people', p_min_pairs => 100)`);
    t.is(rows.length, 17, 'every level of the active version');
    t.true(rows.every((r) => r.version === 2));
    const levels1 = await db.query<{ comparison: string; level: string; m: string; u: string; u_kind: string; note: string }>(
      `SELECT comparison, level, m::text, u::text, u_kind, note FROM canon.match_fs_levels WHERE version = 1`);
    for (const r of rows) t.is(r.active_m, levels1.find((l) => l.comparison === r.comparison && l.level === r.level)!.m, `${r.comparison}.${r.level}`);
    t.true(rows.some((r) => r.m !== r.active_m), 'EM moved the m');
    // the tier's leads: those the rules left to it (unmatched or linked by it), one row per key
    const [tier] = await db.query<{ n: number }>(`
      SELECT count(*)::int AS n FROM canon.identity_unmatched u
      WHERE u.reason_code IN ('NO_CANDIDATES', 'WEAK_MATCH_ONLY', 'PROBABLE_MATCH')`);
    t.true(rows[0]!.leads > 0 && rows[0]!.leads <= tier!.n, `leads ${rows[0]!.leads} of ${tier!.n}`);

    const [v2] = await db.query<{ active: boolean; notes: string; same_bands: boolean }>(`
      SELECT b.active, b.notes,
             (a.prior_match_share, a.link_probability_min, a.review_probability_min, a.margin_bits_min, a.rare_token_max_share,
              a.name_block_max_drivers, a.token_share_min)
             = (b.prior_match_share, b.link_probability_min, b.review_probability_min, b.margin_bits_min, b.rare_token_max_share,
                b.name_block_max_drivers, b.token_share_min) AS same_bands
      FROM canon.match_fs_versions a, canon.match_fs_versions b WHERE a.version = 1 AND b.version = 2`);
    t.false(v2!.active);
    t.true(v2!.same_bands, 'prior, bands and guards copied from the active version');
    t.regex(v2!.notes, /^EM on the test people\. m by EM \(ops\.estimate_fs_version, \d+ ms\): \d+ pairs of \d+ leads, [\d.]+ expected matches, \d+ iterations, converged \(last change [\d.]+\); u, prior, bands and guards of version 1\.$/);
    const levels2 = await db.query<{ comparison: string; level: string; m: string; u: string; u_kind: string; note: string }>(
      `SELECT comparison, level, m::text, u::text, u_kind, note FROM canon.match_fs_levels WHERE version = 2`);
    t.is(levels2.length, 17);
    for (const l of levels2) {
      const one = levels1.find((x) => x.comparison === l.comparison && x.level === l.level)!;
      t.deepEqual([l.u, l.u_kind, l.note], [one.u, one.u_kind, one.note], 'u as the active version');
      t.is(l.m, rows.find((r) => r.comparison === l.comparison && r.level === l.level)!.m, 'm as returned');
    }
    t.deepEqual(await state(db), before, 'links, unmatched rows (retry_due included) and version 1 as they were');
    const next = await runPipeline(db);
    t.is(next.stats['probabilistic']['fs_version'], 1, 'the job keeps the active version');
  }));

test('a blank note is refused (22023) and too few pairs (CL026); neither writes a version', (t) =>
  withDb('fs_em_version', async (db) => {
    const blank = await t.throwsAsync(db.query(`SELECT * FROM ops.estimate_fs_version('  ')`));
    t.is((blank as { code?: string }).code, '22023');
    t.regex(blank!.message, /^a note is required: say what the estimate is for/);
    const few = await t.throwsAsync(db.query(`SELECT * FROM ops.estimate_fs_version('on nothing')`));
    t.is((few as { code?: string }).code, 'CL026');
    t.regex(few!.message, /too few candidate pairs to estimate m: 0 pairs from 0 of the 0 lead rows given, at least 1000 needed/);
    t.deepEqual(await db.query(`SELECT version FROM canon.match_fs_versions`), [{ version: 1 }]);
  }));
