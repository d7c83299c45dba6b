// canon.name_veto (SPEC 5 "Relatives are different people"): two names that each carry a
// name the other lacks, in the same role, are two people whatever their token score; a
// missing middle name, a typo, an initial or names in the wrong fields are not.
import test from 'ava';
import fc from 'fast-check';
import { createTestDb, type TestDb } from '../helpers/db.js';

let db: TestDb;
test.before(async () => {
  db = await createTestDb('name_veto');
});
test.after.always(() => db.drop());

type Veto = { a: Record<string, string>; b: Record<string, string> } | null;

/** One side of a comparison: its name, and optionally the tokens of its given-name and last-name fields. */
interface Side {
  name: string;
  given?: string | null;
  last?: string | null;
}

interface Case {
  a: Side;
  b: Side;
  /** tokens the drivers clearly use as given names / as surnames */
  usageGiven?: string[];
  usageSurnames?: string[];
}

/** canon.name_veto of each case, in order, in one query (names and fields tokenised by canon.name_tokens). */
async function vetoes(cases: Case[]): Promise<Veto[]> {
  const col = (f: (c: Case) => string | null | undefined) => cases.map((c) => f(c) ?? null);
  const rows = await db.query<{ v: Veto }>(
    `SELECT canon.name_veto(canon.name_tokens(a), canon.name_field_tokens(ag), canon.name_field_tokens(al),
                            canon.name_tokens(b), canon.name_field_tokens(bg), canon.name_field_tokens(bl),
                            string_to_array(ug, ' '), string_to_array(us, ' ')) AS v
     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
          WITH ORDINALITY AS u(a, ag, al, b, bg, bl, ug, us, i)
     ORDER BY i`,
    [
      col((c) => c.a.name), col((c) => c.a.given), col((c) => c.a.last),
      col((c) => c.b.name), col((c) => c.b.given), col((c) => c.b.last),
      col((c) => c.usageGiven?.join(' ')), col((c) => c.usageSurnames?.join(' ')),
    ],
  );
  return rows.map((r) => r.v);
}
async function veto(c: Case): Promise<Veto> {
  const [v] = await vetoes([c]);
  return v ?? null;
}

/** A name as its parts: given names, then surnames, and the record's fields. */
const side = (given: string, last: string): Side => ({ name: `${given} ${last}`, given, last });

test('vetoes a different given name and a different surname, naming each token with its role', async (t) => {
  t.deepEqual(await veto({ a: side('José Carlos', 'Quispe Mamani'), b: side('Juan Carlos', 'Quispe Mamani') }),
    { a: { JOSE: 'GIVEN_NAME' }, b: { JUAN: 'GIVEN_NAME' } });
  t.deepEqual(await veto({ a: side('Juan Carlos', 'Quispe Mamani'), b: side('Juan Alberto', 'Quispe Mamani') }),
    { a: { CARLOS: 'GIVEN_NAME' }, b: { ALBERTO: 'GIVEN_NAME' } });
  t.deepEqual(await veto({ a: side('Juan Carlos', 'Quispe Mamani'), b: side('Juan Carlos', 'Quispe Huamán') }),
    { a: { MAMANI: 'SURNAME' }, b: { HUAMAN: 'SURNAME' } });
  // Without fields or usage a token's role is UNKNOWN, which fits either role.
  t.deepEqual(await veto({ a: { name: 'JOSE CARLOS QUISPE MAMANI' }, b: { name: 'JUAN CARLOS QUISPE MAMANI' } }),
    { a: { JOSE: 'UNKNOWN' }, b: { JUAN: 'UNKNOWN' } });
});

test('is NULL for a missing middle name or surname, a typo, an accent, or a middle name against a married surname', async (t) => {
  const out = await vetoes([
    { a: side('Juan', 'Quispe Mamani'), b: side('Juan Carlos', 'Quispe Mamani') },
    { a: side('Carlos', 'Quispe Mamani'), b: side('Juan Carlos', 'Quispe Mamani') },
    { a: side('Juan Carlos', 'Quispe'), b: side('Juan Carlos', 'Quispe Mamani') },
    { a: side('Juan Carloz', 'Quispe Mamani'), b: side('Juan Carlos', 'Quispe Mamani') },
    { a: side('José Albretó', 'Quispe Mamani'), b: side('JOSE ALBERTO', 'QUISPE MAMANI') },
    // ROSA MARIA against ROSA ... DE HUAMAN: a middle name on one side, a surname on the other.
    { a: side('Rosa María', 'Quispe Mamani'), b: side('Rosa', 'Quispe Mamani de Huamán') },
    { a: { name: null as unknown as string }, b: side('Juan', 'Quispe') },
    { a: { name: '' }, b: side('Juan', 'Quispe') },
  ]);
  t.deepEqual(out, [null, null, null, null, null, null, null, null]);
});

test('an initial partners the names it starts with; a different initial vetoes; two-letter fragments never do', async (t) => {
  const out = await vetoes([
    { a: side('Juan C.', 'Quispe Mamani'), b: side('Juan Carlos', 'Quispe Mamani') },
    { a: side('J. Carlos', 'Quispe Mamani'), b: side('Juan Carlos', 'Quispe Mamani') },
    // FEBRL: VAN'T HOF and VAN'WT HOF (a typo) split into VAN T HOF and VAN WT HOF.
    { a: side('John', "van't Hof"), b: side('John', "van'wt Hof") },
  ]);
  t.deepEqual(out, [null, null, null]);
  t.deepEqual(await veto({ a: side('Juan C.', 'Quispe Mamani'), b: side('Juan A.', 'Quispe Mamani') }),
    { a: { C: 'GIVEN_NAME' }, b: { A: 'GIVEN_NAME' } });
  t.deepEqual(await veto({ a: side('Juan C.', 'Quispe Mamani'), b: side('Juan Alberto', 'Quispe Mamani') }),
    { a: { C: 'GIVEN_NAME' }, b: { ALBERTO: 'GIVEN_NAME' } });
});

test("roles: the drivers' usage first, then the record's field, read the other way round when its fields are swapped", async (t) => {
  const usage = { usageGiven: ['JOSE', 'JUAN', 'CARLOS', 'MARIA', 'ROSA'], usageSurnames: ['QUISPE', 'MAMANI', 'HUAMAN'] };
  // Given names typed in last_name: usage says JOSE is a given name.
  t.deepEqual(await veto({ ...usage, a: { name: 'Quispe Mamani José Carlos', given: 'Quispe Mamani', last: 'José Carlos' }, b: side('Juan Carlos', 'Quispe Mamani') }),
    { a: { JOSE: 'GIVEN_NAME' }, b: { JUAN: 'GIVEN_NAME' } });
  // ZACARIAS has no usage; its field (last_name) is read swapped, as QUISPE, MAMANI and CARLOS show.
  t.deepEqual(await veto({ ...usage, a: { name: 'Quispe Mamani Zacarías Carlos', given: 'Quispe Mamani', last: 'Zacarías Carlos' }, b: side('Juan Carlos', 'Quispe Mamani') }),
    { a: { ZACARIAS: 'GIVEN_NAME' }, b: { JUAN: 'GIVEN_NAME' } });
  // Without usage the same lead's ZACARIAS is taken as typed, a surname: against the given
  // name JUAN that is not a different name of the same role.
  t.is(await veto({ a: { name: 'Quispe Mamani Zacarías Carlos', given: 'Quispe Mamani', last: 'Zacarías Carlos' }, b: side('Juan Carlos', 'Quispe Mamani') }), null);
  // A driver with only full_name: usage alone (MARIA a given name, HUAMAN a surname).
  t.is(await veto({ ...usage, a: { name: 'Quispe Mamani Rosa María', given: 'Quispe Mamani', last: 'Rosa María' }, b: { name: 'QUISPE MAMANI DE HUAMAN ROSA' } }), null);
  // A token in both fields of a record has no field role.
  t.deepEqual(await veto({ a: { name: 'Cruz Quispe Mamani', given: 'Cruz', last: 'Cruz Quispe Mamani' }, b: side('Juan', 'Quispe Mamani') }),
    { a: { CRUZ: 'UNKNOWN' }, b: { JUAN: 'GIVEN_NAME' } });
});

// Properties on generated names. The vocabulary has no two tokens one typo apart, so a
// partner is an equal token unless a typo is introduced on purpose.
const GIVEN = ['JUAN', 'JOSE', 'CARLOS', 'ALBERTO', 'ROSA', 'MARIA', 'LUIS', 'MIGUEL'];
const SURNAMES = ['QUISPE', 'MAMANI', 'HUAMAN', 'FLORES', 'CONDORI', 'TORRES', 'VARGAS'];
const nameParts = fc.record({
  given: fc.uniqueArray(fc.constantFrom(...GIVEN), { minLength: 1, maxLength: 3 }),
  surnames: fc.uniqueArray(fc.constantFrom(...SURNAMES), { minLength: 1, maxLength: 3 }),
});
type Parts = { given: string[]; surnames: string[] };
const sideOf = (p: Parts): Side => side(p.given.join(' '), p.surnames.join(' '));
/** One letter changed inside a token of 5+ letters (never the first), as a typo. */
const typo = (tok: string, k: number) => {
  if (tok.length < 5) return tok;
  const i = 1 + (k % (tok.length - 1));
  const c = tok[i] === 'X' ? 'Y' : 'X';
  return tok.slice(0, i) + c + tok.slice(i + 1);
};

test('is NULL for the same name reordered, with a typo in tokens of 5+ letters, or with tokens left out (property)', async (t) => {
  const arb = fc.tuple(nameParts, fc.nat(), fc.boolean(), fc.array(fc.boolean(), { minLength: 6, maxLength: 6 }), fc.boolean());
  await fc.assert(
    fc.asyncProperty(fc.array(arb, { minLength: 1, maxLength: 100 }), async (items) => {
      const cases: Case[] = items.map(([p, k, withTypo, keep, withFields]) => {
        // b is a, some tokens dropped (never all), perhaps one typo, in another order.
        let g = p.given.filter((_, i) => keep[i] !== false);
        let s = p.surnames.filter((_, i) => keep[3 + i] !== false);
        if (g.length + s.length === 0) g = [p.given[0]!];
        if (withTypo) {
          g = g.map((x, i) => (i === 0 ? typo(x, k) : x));
          s = s.map((x, i) => (i === 0 ? typo(x, k + 1) : x));
        }
        const b: Side = withFields ? side(g.join(' '), s.join(' ')) : { name: [...s, ...g].join(' ') };
        return { a: sideOf(p), b };
      });
      const out = await vetoes(cases);
      return out.every((v) => v === null);
    }),
    { numRuns: 30 },
  );
  t.pass();
});

test('with every role unknown, vetoes exactly when each name has a token the other lacks (property)', async (t) => {
  const tokens = fc.uniqueArray(fc.constantFrom(...GIVEN, ...SURNAMES), { minLength: 1, maxLength: 5 });
  await fc.assert(
    fc.asyncProperty(fc.array(fc.tuple(tokens, tokens), { minLength: 1, maxLength: 100 }), async (pairs) => {
      const out = await vetoes(pairs.map(([a, b]) => ({ a: { name: a.join(' ') }, b: { name: b.join(' ') } })));
      return out.every((v, i) => {
        const [a, b] = pairs[i]!;
        const aOnly = a.filter((x) => !b.includes(x));
        const bOnly = b.filter((x) => !a.includes(x));
        const expected = aOnly.length > 0 && bOnly.length > 0;
        return (v !== null) === expected
          && (v === null || (Object.keys(v.a).sort().join() === aOnly.sort().join() && Object.keys(v.b).sort().join() === bOnly.sort().join()));
      });
    }),
    { numRuns: 30 },
  );
  t.pass();
});

test('is symmetric: a against b vetoes exactly when b against a does, naming the same tokens and roles (property)', async (t) => {
  const usage = fc.tuple(fc.subarray(GIVEN), fc.subarray(SURNAMES));
  const arb = fc.tuple(nameParts, nameParts, usage, fc.boolean(), fc.boolean());
  await fc.assert(
    fc.asyncProperty(fc.array(arb, { minLength: 1, maxLength: 100 }), async (items) => {
      // Fields swapped on purpose in some records (surnames typed as given names).
      const rec = (p: Parts, swapped: boolean): Side =>
        swapped ? { name: `${p.surnames.join(' ')} ${p.given.join(' ')}`, given: p.surnames.join(' '), last: p.given.join(' ') } : sideOf(p);
      const cases = items.flatMap(([a, b, [ug, us], sa, sb]) => [
        { a: rec(a, sa), b: rec(b, sb), usageGiven: ug, usageSurnames: us },
        { a: rec(b, sb), b: rec(a, sa), usageGiven: ug, usageSurnames: us },
      ]);
      const out = await vetoes(cases);
      for (let i = 0; i < out.length; i += 2) {
        const ab = out[i];
        const ba = out[i + 1];
        if ((ab === null) !== (ba === null)) return false;
        if (ab && ba && (JSON.stringify(ab.a) !== JSON.stringify(ba.b) || JSON.stringify(ab.b) !== JSON.stringify(ba.a))) return false;
      }
      return true;
    }),
    { numRuns: 30 },
  );
  t.pass();
});

test('never vetoes a pair whose token score is 1, whatever the names (property)', async (t) => {
  const anyName = fc.oneof(
    fc.array(fc.constantFrom(...GIVEN, ...SURNAMES, 'GONZALEZ', 'GONZALES', 'C', 'J', 'de', '😀', 'Иван'), { maxLength: 6 }).map((x) => x.join(' ')),
    fc.string({ unit: 'grapheme-ascii', maxLength: 30 }),
  );
  await fc.assert(
    fc.asyncProperty(fc.array(fc.tuple(anyName, anyName), { minLength: 1, maxLength: 200 }), async (pairs) => {
      const rows = await db.query<{ s: string; v: Veto }>(
        `SELECT canon.name_similarity(a, b) AS s,
                canon.name_veto(canon.name_tokens(a), NULL, NULL, canon.name_tokens(b), NULL, NULL, NULL, NULL) AS v
         FROM unnest($1::text[], $2::text[]) AS u(a, b)`,
        [pairs.map((p) => p[0]), pairs.map((p) => p[1])],
      );
      return rows.every((r) => Number(r.s) < 1 || r.v === null);
    }),
    { numRuns: 30 },
  );
  t.pass();
});
