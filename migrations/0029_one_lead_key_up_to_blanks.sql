-- Up Migration
-- snapshot of sql/canon/canon.blank_characters.sql
-- canon.blank_characters: the one list of the characters that count as blank at the ends
-- of a cabinet external_id (canon.lead_source_pk strips them; the import lets that
-- function decide). Unicode White_Space plus the invisible characters copy-paste and
-- spreadsheets leave at the ends of ids; docs/limbo-and-claims.md says why. IMMUTABLE
-- with no argument: the planner evaluates it once per query, so callers pay nothing per row.
-- In a database whose encoding is not UTF8 the characters it cannot hold are left out
-- (no value there can contain them).
CREATE OR REPLACE FUNCTION canon.blank_characters()
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_code_points integer[] := ARRAY[
    -- Unicode White_Space (PropList.txt): TAB, LF, VT, FF, CR, SPACE, NEXT LINE (NEL),
    -- NO-BREAK SPACE, OGHAM SPACE MARK, EN QUAD .. HAIR SPACE, LINE SEPARATOR, PARAGRAPH
    -- SEPARATOR, NARROW NO-BREAK SPACE, MEDIUM MATHEMATICAL SPACE, IDEOGRAPHIC SPACE
    x'0009', x'000A', x'000B', x'000C', x'000D', x'0020', x'0085', x'00A0', x'1680',
    x'2000', x'2001', x'2002', x'2003', x'2004', x'2005', x'2006', x'2007', x'2008', x'2009', x'200A',
    x'2028', x'2029', x'202F', x'205F', x'3000',
    -- invisible, not White_Space: MONGOLIAN VOWEL SEPARATOR (White_Space before Unicode
    -- 6.3), ZERO WIDTH SPACE, WORD JOINER, ZERO WIDTH NO-BREAK SPACE (a byte order mark)
    x'180E', x'200B', x'2060', x'FEFF']::integer[];
  v_code integer;
  v_blanks text := '';
BEGIN
  IF getdatabaseencoding() = 'UTF8' THEN
    FOREACH v_code IN ARRAY v_code_points LOOP
      v_blanks := v_blanks || chr(v_code);
    END LOOP;
    RETURN v_blanks;
  END IF;
  -- Other encodings: chr() would read the code point as a byte there; convert from UTF-8.
  FOREACH v_code IN ARRAY v_code_points LOOP
    BEGIN
      v_blanks := v_blanks || convert_from(
        CASE WHEN v_code < 128 THEN set_byte('\x00'::bytea, 0, v_code)
             WHEN v_code < 2048 THEN set_byte(set_byte('\x0000'::bytea, 0, 192 | (v_code >> 6)), 1, 128 | (v_code & 63))
             ELSE set_byte(set_byte(set_byte('\x000000'::bytea, 0, 224 | (v_code >> 12)), 1, 128 | ((v_code >> 6) & 63)), 2, 128 | (v_code & 63))
        END, 'UTF8');
    EXCEPTION WHEN untranslatable_character OR character_not_in_repertoire THEN
      NULL; -- not a character of this database's encoding
    END;
  END LOOP;
  RETURN v_blanks;
END
$$;
COMMENT ON FUNCTION canon.blank_characters() IS
  'The characters that are blank at the ends of a lead''s external_id: Unicode White_Space (U+0009-000D, 0020, 0085, 00A0, 1680, 2000-200A, 2028, 2029, 202F, 205F, 3000) plus U+180E, 200B, 2060, FEFF. Used by canon.lead_source_pk.';

-- snapshot of sql/canon/canon.lead_source_pk.sql
-- canon.lead_source_pk: the one definition of a cabinet lead's key, used by every
-- link, claim, view, tool and the import: the external_id without the blanks at its
-- ends (canon.blank_characters: spaces, TAB, CR/LF, NBSP, other Unicode spaces, zero
-- width spaces), or the integer id as text when nothing is left. 'NB-1', 'NB-1<TAB>'
-- and '<NBSP>NB-1' are one lead. A plain SQL function with no SET clause, so that it is
-- inlined into the views that evaluate it for every lead row (names schema-qualified).
-- canon.lead_source_pk(external_id, NULL) is an external id's key, NULL when blank.
CREATE OR REPLACE FUNCTION canon.lead_source_pk(p_external_id text, p_id integer)
RETURNS text
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
  SELECT COALESCE(NULLIF(pg_catalog.btrim(p_external_id, canon.blank_characters()), ''), p_id::text)
$$;
COMMENT ON FUNCTION canon.lead_source_pk(text, integer) IS
  'Lead key: COALESCE(NULLIF(btrim(external_id, canon.blank_characters()), ''''), id::text): the external_id without blanks at its ends, else the id.';

-- snapshot of sql/canon/canon.show_blanks.sql
-- canon.show_blanks: a text as a person can read it on a screen, where lead keys that
-- differ only by blanks look alike: control characters (C0, DEL, C1), the blanks of
-- canon.blank_characters other than a space, and a space at either end are written as
-- \uXXXX, a backslash as \\ ('NB-1<TAB>' is shown NB-1\u0009). For examples and listings
-- (ops.check_invariants, ops.v_cabinet_claims_duplicated), never for keys.
CREATE OR REPLACE FUNCTION canon.show_blanks(p_text text)
RETURNS text
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT CASE WHEN p_text = '' THEN '' ELSE (
    SELECT string_agg(
             CASE WHEN x.c = E'\\' THEN E'\\\\'
                  WHEN x.c = ' ' AND x.n > 1 AND x.n < x.len THEN ' '
                  WHEN ascii(x.c) < 32 OR ascii(x.c) BETWEEN 127 AND 159 OR strpos(canon.blank_characters(), x.c) > 0
                    THEN E'\\u' || lpad(upper(to_hex(ascii(x.c))), 4, '0')
                  ELSE x.c
             END, '' ORDER BY x.n)
    FROM (SELECT t.c, t.n, count(*) OVER () AS len
          FROM regexp_split_to_table(p_text, '') WITH ORDINALITY t (c, n)) x) END
$$;
COMMENT ON FUNCTION canon.show_blanks(text) IS
  'A text with control characters, blanks other than an inner space, and spaces at its ends written as \uXXXX (backslash as \\): lead keys that differ only by blanks, told apart on a screen.';

-- snapshot of migrations/parts/0029_claims_duplicates.sql
-- One cabinet lead is one lead (issue 14, item 6): external ids that differ only by blanks
-- at their ends are one lead now (canon.lead_source_pk). Where the old key made two leads
-- of one, both were claimed: the claims made twice are taken out of
-- canon.claims_yango_cabinet_14d (one per lead and milestone) into this record, for
-- finance (ops.v_cabinet_claims_duplicated), never dropped.
CREATE TABLE IF NOT EXISTS canon.claims_duplicates (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  lead_source_pk   text NOT NULL,
  milestone        integer NOT NULL,
  claimed_as       text NOT NULL,
  kept_claimed_as  text NOT NULL,
  status           text NOT NULL,
  amount_expected  numeric(12, 2) NOT NULL,
  currency         text NOT NULL,
  person_key       uuid,
  driver_id        text,
  lead_date        date NOT NULL,
  generated_at     timestamptz,
  paid_at          timestamptz,
  run_id           bigint,
  claim_created_at timestamptz,
  claim_updated_at timestamptz,
  set_aside_at     timestamptz NOT NULL DEFAULT now(),
  set_aside_by     text NOT NULL DEFAULT current_user,
  repair_run_id    bigint REFERENCES canon.ingestion_runs (id),
  note             text NOT NULL
);
CREATE INDEX IF NOT EXISTS claims_duplicates_lead_idx ON canon.claims_duplicates (lead_source_pk, milestone);
COMMENT ON TABLE canon.claims_duplicates IS
  'Claims made twice for one cabinet lead (under lead keys that differ only by blanks at their ends), taken out of canon.claims_yango_cabinet_14d by ops.repair_lead_keys as they were; the claim kept for (lead_source_pk, milestone) stays there. Append-only record for finance: ops.v_cabinet_claims_duplicated.';
COMMENT ON COLUMN canon.claims_duplicates.lead_source_pk IS 'The lead''s key (canon.lead_source_pk) now: the kept claim is in canon.claims_yango_cabinet_14d under it.';
COMMENT ON COLUMN canon.claims_duplicates.claimed_as IS 'The key this duplicate claim was made under (with its blanks).';
COMMENT ON COLUMN canon.claims_duplicates.kept_claimed_as IS 'The key the kept claim was made under when this one was set aside.';

-- snapshot of sql/ops/ops.v_cabinet_claims_duplicated.sql
-- ops.v_cabinet_claims_duplicated: for finance, every claim made twice for one cabinet
-- lead (under lead keys that differ only by blanks at their ends, which are one lead since
-- canon.lead_source_pk says so) and set aside by ops.repair_lead_keys, beside the claim
-- kept for that lead and milestone, with what to do about it:
--   SELECT * FROM ops.v_cabinet_claims_duplicated WHERE duplicate_kind = 'PAID_TWICE';
--   SELECT duplicate_kind, count(*), sum(duplicate_amount) FROM ops.v_cabinet_claims_duplicated GROUP BY 1;
CREATE OR REPLACE VIEW ops.v_cabinet_claims_duplicated AS
SELECT d.lead_source_pk,
       d.milestone,
       d.lead_date,
       d.currency,
       d.claimed_as AS duplicate_claimed_as,
       canon.show_blanks(d.claimed_as) AS duplicate_claimed_as_shown,
       d.status AS duplicate_status,
       d.amount_expected AS duplicate_amount,
       d.paid_at AS duplicate_paid_at,
       d.generated_at AS duplicate_generated_at,
       d.person_key AS duplicate_person_key,
       d.driver_id AS duplicate_driver_id,
       d.kept_claimed_as,
       c.status AS kept_status,
       c.amount_expected AS kept_amount,
       c.paid_at AS kept_paid_at,
       c.driver_id AS kept_driver_id,
       k.duplicate_kind,
       CASE k.duplicate_kind
         WHEN 'PAID_TWICE' THEN format('M%s of lead %s was paid twice (%s %s under %s, again under %s): the second payment, %s %s, is owed back.',
                                       d.milestone, canon.show_blanks(d.lead_source_pk), d.amount_expected, d.currency,
                                       canon.show_blanks(d.kept_claimed_as), canon.show_blanks(d.claimed_as), d.amount_expected, d.currency)
         WHEN 'DUPLICATE_PAID' THEN format('M%s of lead %s was paid under %s, but the claim kept (%s) is %s: check which one the platform paid.',
                                           d.milestone, canon.show_blanks(d.lead_source_pk), canon.show_blanks(d.claimed_as),
                                           canon.show_blanks(d.kept_claimed_as), coalesce(c.status, 'gone'))
         WHEN 'DUPLICATE_REJECTED' THEN format('M%s of lead %s was also claimed under %s and rejected: nothing to do.',
                                               d.milestone, canon.show_blanks(d.lead_source_pk), canon.show_blanks(d.claimed_as))
         ELSE format('M%s of lead %s was also claimed under %s (%s, %s %s): never submit it; the lead''s claim is the one kept (%s).',
                     d.milestone, canon.show_blanks(d.lead_source_pk), canon.show_blanks(d.claimed_as), d.status,
                     d.amount_expected, d.currency, coalesce(c.status, 'gone'))
       END AS finance_action,
       d.set_aside_at,
       d.set_aside_by,
       d.repair_run_id,
       d.note
FROM canon.claims_duplicates d
LEFT JOIN canon.claims_yango_cabinet_14d c ON c.lead_source_pk = d.lead_source_pk AND c.milestone = d.milestone
CROSS JOIN LATERAL (
  SELECT CASE WHEN d.status = 'paid' AND c.status = 'paid' THEN 'PAID_TWICE'
              WHEN d.status = 'paid' THEN 'DUPLICATE_PAID'
              WHEN d.status = 'rejected' THEN 'DUPLICATE_REJECTED'
              ELSE 'DUPLICATE_NOT_SETTLED'
         END AS duplicate_kind
) k;
COMMENT ON VIEW ops.v_cabinet_claims_duplicated IS
  'Claims made twice for one lead (keys that differ only by blanks at their ends), set aside in canon.claims_duplicates, beside the claim kept: duplicate_kind PAID_TWICE / DUPLICATE_PAID / DUPLICATE_REJECTED / DUPLICATE_NOT_SETTLED and finance_action.';

-- snapshot of sql/ops/ops.repair_lead_keys.sql
-- ops.repair_lead_keys: brings every stored lead key to canon.lead_source_pk, in one
-- transaction: keys written under an older definition (btrim of spaces only kept a TAB,
-- an NBSP, a zero width space) or by hand. Migration 0029 calls it once; doctor's
-- LEAD_KEY_BLANK_ENDS names what it would repair:
--   SELECT jsonb_pretty(ops.repair_lead_keys('why: ...'));
-- A stale key K becomes canon.lead_source_pk(K, NULL) (a key of blanks only: the id of its
-- first lead row). Keys that become one are one lead (the S/ 320 case: 'NB-1' and
-- 'NB-1<TAB>' both linked, both claimed), merged so that nothing is lost:
--   links      one per lead: the surviving link is the one with the most settled claims,
--              then the key already right, then the earliest; the others are removed
--              (UNLINK rows in canon.identity_audit, with the note), and so is a person
--              left without any link; re-keyed links are RELINK rows there;
--   claims     one per (lead, milestone): paid first, then rejected, generated, expected,
--              expired, then the surviving link's; every other claim is set aside in
--              canon.claims_duplicates as it was (ops.v_cabinet_claims_duplicated), never
--              dropped, and its settled record follows it;
--   unmatched  one row per lead: the surviving link's, else an IGNORED one, else the
--              latest attempt; OPEN on a linked lead becomes RESOLVED;
--   origins, canon.lead_keys, canon.cabinet_lead_state, the dirty keys and the settled
--              records re-keyed; the merged leads marked dirty (re-evaluated by the next
--              run); a lead row left with a key never evaluated is listed as pending.
-- Takes the job lock (waits up to 30 s). Recorded as a run (job_name repair_lead_keys)
-- when it changes anything; returns what it did.
CREATE OR REPLACE FUNCTION ops.repair_lead_keys(p_note text DEFAULT 'lead keys brought to canon.lead_source_pk (blanks at the ends of external_id)')
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '30s'
SET client_min_messages = warning
AS $$
DECLARE
  v_keys integer;
  v_left integer;
  v_run_id bigint;
  v_audit_note text := current_setting('cabinet.audit_note', true);
  v_audit_details text := current_setting('cabinet.audit_details', true);
  v_orphans_claimed text;
  v_n jsonb := '{}'::jsonb;
  v_count integer;
  v_stats jsonb;
BEGIN
  IF p_note IS NULL OR btrim(p_note) = '' THEN
    RAISE EXCEPTION 'a note is required: say why the lead keys are repaired' USING ERRCODE = '22023';
  END IF;

  -- GUARD: never in the middle of a pipeline run or an identity change.
  BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('cabinet_leads'), hashtext('reconcile_cabinet_leads_pipeline'));
  EXCEPTION WHEN lock_not_available THEN
    RAISE EXCEPTION 'a pipeline run (or an identity change) holds the job lock for more than 30 s: try again when it has finished'
      USING ERRCODE = '55P03';
  END;

  -- STALE KEYS: every stored lead key that is not its own key, and the key it becomes.
  DROP TABLE IF EXISTS pg_temp.lead_rekey;
  CREATE TEMP TABLE lead_rekey ON COMMIT DROP AS
  WITH stale (old_key) AS (
    SELECT l.source_pk FROM canon.identity_links l
    WHERE l.source_table = 'module_ct_cabinet_leads' AND canon.lead_source_pk(l.source_pk, NULL) IS DISTINCT FROM l.source_pk
    UNION
    SELECT u.source_pk FROM canon.identity_unmatched u
    WHERE u.source_table = 'module_ct_cabinet_leads' AND canon.lead_source_pk(u.source_pk, NULL) IS DISTINCT FROM u.source_pk
    UNION
    SELECT o.origin_source_id FROM canon.identity_origin o
    WHERE canon.lead_source_pk(o.origin_source_id, NULL) IS DISTINCT FROM o.origin_source_id
    UNION
    SELECT c.lead_source_pk FROM canon.claims_yango_cabinet_14d c
    WHERE canon.lead_source_pk(c.lead_source_pk, NULL) IS DISTINCT FROM c.lead_source_pk
    UNION
    -- (the record of a claim deleted or unsettled is history: it keeps the key it had)
    SELECT s.lead_source_pk FROM canon.claims_settled s
    WHERE s.unsettled_at IS NULL AND canon.lead_source_pk(s.lead_source_pk, NULL) IS DISTINCT FROM s.lead_source_pk
    UNION
    SELECT k.lead_source_pk FROM canon.lead_keys k
    WHERE canon.lead_source_pk(k.lead_source_pk, NULL) IS DISTINCT FROM k.lead_source_pk
    UNION
    SELECT s.lead_source_pk FROM canon.cabinet_lead_state s
    WHERE canon.lead_source_pk(s.lead_source_pk, NULL) IS DISTINCT FROM s.lead_source_pk
    UNION
    SELECT d.lead_source_pk FROM canon.cabinet_lead_state_dirty d
    WHERE canon.lead_source_pk(d.lead_source_pk, NULL) IS DISTINCT FROM d.lead_source_pk
  )
  SELECT s.old_key,
         coalesce(canon.lead_source_pk(s.old_key, NULL),
                  -- blanks only: the lead rows stored under it are keyed by their ids now;
                  -- what was keyed under it goes to the first of them
                  (SELECT min(x.lead_id)::text
                   FROM (SELECT k.lead_id FROM canon.lead_keys k WHERE k.lead_source_pk = s.old_key
                         UNION ALL
                         SELECT st.lead_id FROM canon.cabinet_lead_state st WHERE st.lead_source_pk = s.old_key) x)) AS new_key
  FROM stale s;
  -- (a key of blanks only that no lead row carries any more cannot be placed: left as it is)
  DELETE FROM pg_temp.lead_rekey r WHERE r.new_key IS NULL;
  GET DIAGNOSTICS v_left = ROW_COUNT;
  SELECT count(*) INTO v_keys FROM pg_temp.lead_rekey;
  IF v_keys = 0 THEN
    RETURN jsonb_build_object('keys_rekeyed', 0, 'keys_left', v_left, 'run_id', NULL);
  END IF;
  CREATE INDEX ON pg_temp.lead_rekey (old_key);
  ANALYZE pg_temp.lead_rekey;

  -- Every key of a lead after the repair: its stale keys and the key itself.
  DROP TABLE IF EXISTS pg_temp.lead_rekey_members;
  CREATE TEMP TABLE lead_rekey_members ON COMMIT DROP AS
  SELECT r.new_key, r.old_key AS lead_key FROM pg_temp.lead_rekey r
  UNION
  SELECT r.new_key, r.new_key FROM pg_temp.lead_rekey r;
  ANALYZE pg_temp.lead_rekey_members;

  INSERT INTO canon.ingestion_runs (job_name, status, source_tables, params, completed_at)
  VALUES ('repair_lead_keys', 'COMPLETED', '["module_ct_cabinet_leads"]'::jsonb, jsonb_build_object('note', p_note), clock_timestamp())
  RETURNING id INTO v_run_id;
  -- The identity audit rows written by trigger carry the note and this run.
  PERFORM set_config('cabinet.audit_note', p_note, true),
          set_config('cabinet.audit_details', jsonb_build_object('repair', 'ops.repair_lead_keys', 'repair_run_id', v_run_id)::text, true);

  -- LOCKS on the rows decided on: a claim finance marks paid meanwhile is decided on as
  -- paid (the statements below read what was committed before the locks were granted).
  PERFORM 1 FROM canon.claims_yango_cabinet_14d c JOIN pg_temp.lead_rekey_members m ON c.lead_source_pk = m.lead_key
  FOR UPDATE OF c;
  PERFORM 1 FROM canon.identity_links l JOIN pg_temp.lead_rekey_members m
    ON l.source_table = 'module_ct_cabinet_leads' AND l.source_pk = m.lead_key
  FOR UPDATE OF l;
  PERFORM 1 FROM canon.identity_unmatched u JOIN pg_temp.lead_rekey_members m
    ON u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = m.lead_key
  FOR UPDATE OF u;

  -- DECISIONS: the surviving link and the kept claim of each lead, the kept unmatched row.
  DROP TABLE IF EXISTS pg_temp.lead_rekey_links;
  CREATE TEMP TABLE lead_rekey_links ON COMMIT DROP AS
  SELECT m.new_key, l.id AS link_id, l.source_pk, l.person_key,
         row_number() OVER (PARTITION BY m.new_key
                            ORDER BY st.settled DESC, (l.source_pk = m.new_key) DESC, l.linked_at, l.source_pk) AS rank
  FROM pg_temp.lead_rekey_members m
  JOIN canon.identity_links l ON l.source_table = 'module_ct_cabinet_leads' AND l.source_pk = m.lead_key
  CROSS JOIN LATERAL (
    SELECT count(*) AS settled FROM canon.claims_yango_cabinet_14d c
    WHERE c.lead_source_pk = l.source_pk AND c.status IN ('paid', 'rejected')
  ) st;

  DROP TABLE IF EXISTS pg_temp.lead_rekey_claims;
  CREATE TEMP TABLE lead_rekey_claims ON COMMIT DROP AS
  SELECT m.new_key, c.lead_source_pk AS claimed_as, c.milestone,
         row_number() OVER (PARTITION BY m.new_key, c.milestone
                            ORDER BY array_position(ARRAY['paid', 'rejected', 'generated', 'expected', 'expired'], c.status),
                                     (c.lead_source_pk = s.source_pk) DESC NULLS LAST, (c.lead_source_pk = m.new_key) DESC,
                                     c.generated_at NULLS LAST, c.created_at, c.lead_source_pk) AS rank
  FROM pg_temp.lead_rekey_members m
  JOIN canon.claims_yango_cabinet_14d c ON c.lead_source_pk = m.lead_key
  LEFT JOIN pg_temp.lead_rekey_links s ON s.new_key = m.new_key AND s.rank = 1;

  DROP TABLE IF EXISTS pg_temp.lead_rekey_unmatched;
  CREATE TEMP TABLE lead_rekey_unmatched ON COMMIT DROP AS
  SELECT m.new_key, u.id AS unmatched_id, u.source_pk, s.link_id IS NOT NULL AS linked,
         row_number() OVER (PARTITION BY m.new_key
                            ORDER BY (u.source_pk = s.source_pk) DESC NULLS LAST, (u.status = 'IGNORED') DESC,
                                     (u.source_pk = m.new_key) DESC, u.last_attempt_at DESC, u.source_pk) AS rank
  FROM pg_temp.lead_rekey_members m
  JOIN canon.identity_unmatched u ON u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = m.lead_key
  LEFT JOIN pg_temp.lead_rekey_links s ON s.new_key = m.new_key AND s.rank = 1;

  -- KEY CACHES first: the triggers of the identity tables look lead rows up by key.
  -- (the lead rows of every merged lead: those re-keyed, and those already under its key)
  DROP TABLE IF EXISTS pg_temp.lead_rekey_rows;
  CREATE TEMP TABLE lead_rekey_rows (lead_id integer, lead_source_pk text, lead_date date) ON COMMIT DROP;
  WITH rekeyed AS (
    UPDATE canon.lead_keys k SET lead_source_pk = canon.lead_source_pk(k.lead_source_pk, k.lead_id)
    FROM pg_temp.lead_rekey r
    WHERE k.lead_source_pk = r.old_key
    RETURNING k.lead_id, k.lead_source_pk, k.lead_date
  )
  INSERT INTO pg_temp.lead_rekey_rows SELECT * FROM rekeyed;
  GET DIAGNOSTICS v_count = ROW_COUNT;
  v_n := v_n || jsonb_build_object('lead_keys_rekeyed', v_count);
  INSERT INTO pg_temp.lead_rekey_rows
  SELECT k.lead_id, k.lead_source_pk, k.lead_date
  FROM (SELECT DISTINCT r.new_key FROM pg_temp.lead_rekey r) r
  JOIN canon.lead_keys k ON k.lead_source_pk = r.new_key
  WHERE NOT EXISTS (SELECT 1 FROM pg_temp.lead_rekey_rows w WHERE w.lead_id = k.lead_id);

  UPDATE canon.cabinet_lead_state s SET lead_source_pk = canon.lead_source_pk(s.lead_source_pk, s.lead_id)
  FROM pg_temp.lead_rekey r
  WHERE s.lead_source_pk = r.old_key;
  GET DIAGNOSTICS v_count = ROW_COUNT;
  v_n := v_n || jsonb_build_object('lead_state_rekeyed', v_count);

  -- CLAIMS: the duplicates set aside as they were, then removed; the kept ones re-keyed.
  -- A settled claim set aside or re-keyed keeps its record, stamped with this repair as why.
  PERFORM set_config('cabinet.settled_change_note', format('ops.repair_lead_keys (run %s): %s', v_run_id, p_note), true);
  INSERT INTO canon.claims_duplicates (
    lead_source_pk, milestone, claimed_as, kept_claimed_as, status, amount_expected, currency, person_key, driver_id,
    lead_date, generated_at, paid_at, run_id, claim_created_at, claim_updated_at, repair_run_id, note)
  SELECT r.new_key, c.milestone, c.lead_source_pk, kept.claimed_as, c.status, c.amount_expected, c.currency, c.person_key,
         c.driver_id, c.lead_date, c.generated_at, c.paid_at, c.run_id, c.created_at, c.updated_at, v_run_id, p_note
  FROM pg_temp.lead_rekey_claims r
  JOIN canon.claims_yango_cabinet_14d c ON c.lead_source_pk = r.claimed_as AND c.milestone = r.milestone
  JOIN pg_temp.lead_rekey_claims kept ON kept.new_key = r.new_key AND kept.milestone = r.milestone AND kept.rank = 1
  WHERE r.rank > 1;
  DELETE FROM canon.claims_yango_cabinet_14d c
  USING pg_temp.lead_rekey_claims r
  WHERE r.rank > 1 AND c.lead_source_pk = r.claimed_as AND c.milestone = r.milestone;
  GET DIAGNOSTICS v_count = ROW_COUNT;
  v_n := v_n || jsonb_build_object('claims_set_aside', v_count);
  UPDATE canon.claims_yango_cabinet_14d c SET lead_source_pk = r.new_key, updated_at = now()
  FROM pg_temp.lead_rekey_claims r
  WHERE r.rank = 1 AND r.claimed_as <> r.new_key AND c.lead_source_pk = r.claimed_as AND c.milestone = r.milestone;
  GET DIAGNOSTICS v_count = ROW_COUNT;
  v_n := v_n || jsonb_build_object('claims_rekeyed', v_count);

  -- LINKS: one per lead; a person left without any link goes too (no orphan persons).
  DELETE FROM canon.identity_links l
  USING pg_temp.lead_rekey_links r
  WHERE r.rank > 1 AND l.id = r.link_id;
  GET DIAGNOSTICS v_count = ROW_COUNT;
  v_n := v_n || jsonb_build_object('links_removed', v_count);
  DROP TABLE IF EXISTS pg_temp.lead_rekey_orphans;
  CREATE TEMP TABLE lead_rekey_orphans ON COMMIT DROP AS
  SELECT DISTINCT r.person_key
  FROM pg_temp.lead_rekey_links r
  WHERE r.rank > 1
    AND NOT EXISTS (SELECT 1 FROM canon.identity_links l WHERE l.person_key = r.person_key);
  SELECT string_agg(DISTINCT format('%s (claim %s M%s)', o.person_key, canon.show_blanks(c.lead_source_pk), c.milestone), ', ')
  INTO v_orphans_claimed
  FROM pg_temp.lead_rekey_orphans o
  JOIN canon.claims_yango_cabinet_14d c ON c.person_key = o.person_key;
  IF v_orphans_claimed IS NOT NULL THEN
    RAISE EXCEPTION 'lead keys not repaired: persons % would be left without any link but a kept claim names them', v_orphans_claimed
      USING ERRCODE = 'CL010',
            HINT = 'Link those persons to a driver, or decide which person the lead belongs to (ops.unlink_lead, ops.resolve_lead), then repair again.';
  END IF;
  DELETE FROM canon.identity_origin o USING pg_temp.lead_rekey_orphans x WHERE o.person_key = x.person_key;
  DELETE FROM canon.identity_registry p USING pg_temp.lead_rekey_orphans x WHERE p.person_key = x.person_key;
  GET DIAGNOSTICS v_count = ROW_COUNT;
  v_n := v_n || jsonb_build_object('persons_removed', v_count);
  UPDATE canon.identity_links l SET source_pk = r.new_key
  FROM pg_temp.lead_rekey_links r
  WHERE r.rank = 1 AND r.source_pk <> r.new_key AND l.id = r.link_id;
  GET DIAGNOSTICS v_count = ROW_COUNT;
  v_n := v_n || jsonb_build_object('links_rekeyed', v_count);

  -- UNMATCHED: one row per lead, never OPEN on a linked one.
  DELETE FROM canon.identity_unmatched u
  USING pg_temp.lead_rekey_unmatched r
  WHERE r.rank > 1 AND u.id = r.unmatched_id;
  GET DIAGNOSTICS v_count = ROW_COUNT;
  v_n := v_n || jsonb_build_object('unmatched_removed', v_count);
  UPDATE canon.identity_unmatched u
  SET source_pk = r.new_key,
      status = CASE WHEN r.linked AND u.status = 'OPEN' THEN 'RESOLVED' ELSE u.status END,
      resolved_at = CASE WHEN r.linked AND u.status = 'OPEN' THEN now() ELSE u.resolved_at END
  FROM pg_temp.lead_rekey_unmatched r
  WHERE r.rank = 1 AND u.id = r.unmatched_id
    AND (r.source_pk <> r.new_key OR (r.linked AND u.status = 'OPEN'));
  GET DIAGNOSTICS v_count = ROW_COUNT;
  v_n := v_n || jsonb_build_object('unmatched_rekeyed', v_count);

  UPDATE canon.identity_origin o SET origin_source_id = r.new_key
  FROM pg_temp.lead_rekey r
  WHERE o.origin_source_id = r.old_key;
  GET DIAGNOSTICS v_count = ROW_COUNT;
  v_n := v_n || jsonb_build_object('origins_rekeyed', v_count);

  -- Records of settled claims whose claim was not moved with them (changed behind the
  -- guard's back): re-keyed unless the lead's key already has one.
  UPDATE canon.claims_settled s SET lead_source_pk = r.new_key
  FROM pg_temp.lead_rekey r
  WHERE s.lead_source_pk = r.old_key AND s.unsettled_at IS NULL
    AND NOT EXISTS (SELECT 1 FROM canon.claims_settled x WHERE x.lead_source_pk = r.new_key AND x.milestone = s.milestone);
  GET DIAGNOSTICS v_count = ROW_COUNT;
  v_n := v_n || jsonb_build_object('settled_records_rekeyed', v_count);

  -- LEAD STATE: the stale keys (some marked by the triggers above) replaced by the leads'
  -- keys, re-evaluated by the next run; a lead row whose key was never evaluated is pending.
  DELETE FROM canon.cabinet_lead_state_dirty d USING pg_temp.lead_rekey r WHERE d.lead_source_pk = r.old_key;
  INSERT INTO canon.cabinet_lead_state_dirty AS d (lead_source_pk)
  SELECT DISTINCT x.lead_source_pk
  FROM (SELECT r.new_key AS lead_source_pk FROM pg_temp.lead_rekey r
        UNION ALL
        SELECT w.lead_source_pk FROM pg_temp.lead_rekey_rows w) x
  ON CONFLICT (lead_source_pk) DO UPDATE SET mark_seq = excluded.mark_seq, marked_at = excluded.marked_at;
  INSERT INTO canon.lead_keys_pending (lead_id, lead_date)
  SELECT w.lead_id, w.lead_date
  FROM pg_temp.lead_rekey_rows w
  WHERE NOT EXISTS (SELECT 1 FROM canon.identity_links l
                    WHERE l.source_table = 'module_ct_cabinet_leads' AND l.source_pk = w.lead_source_pk)
    AND NOT EXISTS (SELECT 1 FROM canon.identity_unmatched u
                    WHERE u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = w.lead_source_pk
                      AND u.status IN ('OPEN', 'IGNORED'))
  ON CONFLICT (lead_id) DO NOTHING;
  GET DIAGNOSTICS v_count = ROW_COUNT;
  v_n := v_n || jsonb_build_object('leads_pending', v_count);

  v_stats := jsonb_build_object(
      'keys_rekeyed', v_keys,
      'keys_left', v_left,
      'leads_merged', (SELECT count(*) FROM (
          SELECT x.new_key FROM (SELECT new_key, source_pk AS k FROM pg_temp.lead_rekey_links
                                 UNION SELECT new_key, claimed_as FROM pg_temp.lead_rekey_claims
                                 UNION SELECT new_key, source_pk FROM pg_temp.lead_rekey_unmatched) x
          GROUP BY x.new_key HAVING count(*) > 1) g),
      'claims_set_aside_amount', (SELECT coalesce(sum(d.amount_expected), 0) FROM canon.claims_duplicates d WHERE d.repair_run_id = v_run_id),
      'claims_paid_twice', (SELECT count(*) FROM canon.claims_duplicates d
                            JOIN canon.claims_yango_cabinet_14d c ON c.lead_source_pk = d.lead_source_pk AND c.milestone = d.milestone
                            WHERE d.repair_run_id = v_run_id AND d.status = 'paid' AND c.status = 'paid'),
      'examples', (SELECT coalesce(jsonb_agg(jsonb_build_object('from', canon.show_blanks(e.old_key), 'to', canon.show_blanks(e.new_key))), '[]'::jsonb)
                   FROM (SELECT r.old_key, r.new_key FROM pg_temp.lead_rekey r ORDER BY r.new_key, r.old_key LIMIT 20) e))
    || v_n;
  UPDATE canon.ingestion_runs SET stats = v_stats, completed_at = clock_timestamp() WHERE id = v_run_id;
  PERFORM set_config('cabinet.audit_note', coalesce(v_audit_note, ''), true),
          set_config('cabinet.audit_details', coalesce(v_audit_details, ''), true);
  RETURN v_stats || jsonb_build_object('run_id', v_run_id);
END
$$;
COMMENT ON FUNCTION ops.repair_lead_keys(text) IS
  'Re-keys every stored lead key to canon.lead_source_pk; keys that become one lead are merged (one link, one claim per milestone, the others set aside in canon.claims_duplicates). Logged as a run (repair_lead_keys) when it changes anything; returns counts.';

-- snapshot of sql/ops/ops.check_invariants.sql
-- ops.check_invariants: every invariant of the spec with its number of violations (0 =
-- holds) and up to 5 examples. Also `cabinet-leads doctor`, which exits 1 when any
-- invariant is violated, and the last statement of every reliability test. Read-only;
-- safe to run at any time, also while a run is in progress.
--   SELECT * FROM ops.check_invariants() WHERE violations > 0;
CREATE OR REPLACE FUNCTION ops.check_invariants()
RETURNS TABLE (invariant text, violations bigint, examples jsonb, description text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH orphan AS (
    SELECT p.person_key::text AS example
    FROM canon.identity_registry p
    WHERE NOT EXISTS (SELECT 1 FROM canon.identity_links l WHERE l.person_key = p.person_key)
  ),
  linked_open AS (
    SELECT l.source_pk AS example
    FROM canon.identity_links l
    JOIN canon.identity_unmatched u
      ON u.source_table = l.source_table AND u.source_pk = l.source_pk AND u.status = 'OPEN'
  ),
  driver_twice AS (
    SELECT format('%s (%s links)', l.source_pk, count(*)) AS example
    FROM canon.identity_links l
    WHERE l.source_table = 'drivers'
    GROUP BY l.source_pk
    HAVING count(*) > 1
  ),
  -- The same test as canon.mark_abandoned_runs (backend gone, or no longer in that run's
  -- CALL), plus runs RUNNING for over 2 hours.
  stuck AS (
    SELECT format('run %s (backend %s, started %s)', r.id, r.backend_pid, r.started_at) AS example
    FROM canon.ingestion_runs r
    WHERE r.status = 'RUNNING'
      AND (r.started_at < now() - interval '2 hours'
           OR NOT EXISTS (
             SELECT 1
             FROM pg_stat_activity a
             WHERE a.pid = r.backend_pid
               AND (r.backend_start IS NULL OR a.backend_start IS NULL OR a.backend_start = r.backend_start)
               AND (a.state IS NULL OR (a.state = 'active' AND a.query_start <= r.started_at))))
  ),
  limbo_mismatch AS (
    SELECT format('lead id %s: %s limbo rows%s', coalesce(l.id, v.lead_id), coalesce(v.n, 0),
                  CASE WHEN l.id IS NULL THEN ' (not a lead with lead_created_at)' ELSE '' END) AS example
    FROM (SELECT s.id FROM public.module_ct_cabinet_leads s WHERE s.lead_created_at IS NOT NULL) l
    FULL JOIN (SELECT lv.lead_id, count(*) AS n FROM ops.v_cabinet_leads_limbo lv GROUP BY lv.lead_id) v
      ON v.lead_id = l.id
    WHERE l.id IS NULL OR v.lead_id IS NULL OR v.n <> 1
  ),
  settled_guard AS (
    SELECT format('trigger %s %s', w.tgname, CASE WHEN t.tgname IS NULL THEN 'missing' ELSE 'disabled' END) AS example
    FROM (VALUES ('claims_protect_settled'), ('claims_record_settled_insert'), ('claims_record_settled_update'),
                 ('claims_record_settled_delete'), ('claims_record_settled_truncate')) w (tgname)
    LEFT JOIN pg_trigger t
      ON t.tgrelid = 'canon.claims_yango_cabinet_14d'::regclass AND t.tgname = w.tgname
    WHERE t.tgname IS NULL OR t.tgenabled NOT IN ('O', 'A')
  ),
  -- A settled claim that differs from its record, or is gone, or was settled unrecorded:
  -- it was changed while the guard was off (the guard and the record cannot be bypassed
  -- otherwise).
  settled_changed AS (
    SELECT format('%s M%s %s', coalesce(c.lead_source_pk, s.lead_source_pk), coalesce(c.milestone, s.milestone),
                  CASE WHEN c.lead_source_pk IS NULL THEN format('deleted (was %s)', s.status)
                       WHEN s.lead_source_pk IS NULL THEN format('%s but never recorded', c.status)
                       ELSE format('changed (recorded %s %s, now %s %s)', s.status, s.amount_expected, c.status, c.amount_expected)
                  END) AS example
    FROM (SELECT * FROM canon.claims_yango_cabinet_14d x WHERE x.status IN ('paid', 'rejected')) c
    FULL JOIN canon.claims_settled s
      ON s.lead_source_pk = c.lead_source_pk AND s.milestone = c.milestone
    WHERE c.lead_source_pk IS NULL
       OR s.lead_source_pk IS NULL
       OR (c.status, c.amount_expected, c.currency, c.person_key, c.driver_id, c.lead_date, c.generated_at, c.paid_at, c.run_id)
          IS DISTINCT FROM
          (s.status, s.amount_expected, s.currency, s.person_key, s.driver_id, s.lead_date, s.generated_at, s.paid_at, s.run_id)
  ),
  -- The counters of the stored lead state (kept by a trigger, read by the scope figures
  -- and the snapshots) against a count of the rows themselves.
  state_counts AS (
    SELECT format('%s %s identity=%s driver=%s trips=%s rule=%s: counted %s, stored %s',
                  lead_date, limbo_stage, with_identity::text, with_driver::text, with_trips::text, with_rule::text,
                  coalesce(c.leads, 0), coalesce(s.leads, 0)) AS example
    FROM canon.cabinet_lead_state_counts c
    FULL JOIN (SELECT x.lead_date, x.limbo_stage, x.person_key IS NOT NULL AS with_identity,
                      x.driver_id IS NOT NULL AS with_driver, x.trips_in_window > 0 AS with_trips,
                      x.window_days IS NOT NULL AS with_rule, count(*) AS leads
               FROM canon.cabinet_lead_state x
               GROUP BY 1, 2, 3, 4, 5, 6) s
      USING (lead_date, limbo_stage, with_identity, with_driver, with_trips, with_rule)
    WHERE coalesce(c.leads, 0) <> coalesce(s.leads, 0)
  ),
  -- Lead keys stored with blanks at their ends, or of blanks only: canon.lead_source_pk
  -- never makes them (written under an older definition, or by hand). Beside a twin (the
  -- same key without its blanks) one lead is counted, linked and claimed twice.
  lead_key_blanks AS (
    SELECT format('%s is %s%s (in %s)', canon.show_blanks(x.lead_key),
                  CASE WHEN x.trimmed IS NULL THEN 'blank' ELSE 'lead ' || canon.show_blanks(x.trimmed) END,
                  CASE WHEN x.keys > 1 THEN format(': one lead under %s keys', x.keys) ELSE '' END,
                  x.stored_in) AS example
    FROM (SELECT s.lead_key, s.stored_in, t.trimmed,
                 CASE WHEN t.trimmed IS NOT NULL
                      THEN count(*) OVER (PARTITION BY t.trimmed)
                           + (EXISTS (SELECT 1 FROM canon.identity_links l
                                      WHERE l.source_table = 'module_ct_cabinet_leads' AND l.source_pk = t.trimmed)
                              OR EXISTS (SELECT 1 FROM canon.claims_yango_cabinet_14d c WHERE c.lead_source_pk = t.trimmed)
                              OR EXISTS (SELECT 1 FROM canon.lead_keys k WHERE k.lead_source_pk = t.trimmed))::int
                 END AS keys
          FROM (
            SELECT b.lead_key, string_agg(b.stored_in, ', ' ORDER BY b.stored_in) AS stored_in
            FROM (
              SELECT DISTINCT 'identity_links' AS stored_in, l.source_pk AS lead_key FROM canon.identity_links l
              WHERE l.source_table = 'module_ct_cabinet_leads' AND canon.lead_source_pk(l.source_pk, NULL) IS DISTINCT FROM l.source_pk
              UNION ALL
              SELECT DISTINCT 'identity_unmatched', u.source_pk FROM canon.identity_unmatched u
              WHERE canon.lead_source_pk(u.source_pk, NULL) IS DISTINCT FROM u.source_pk
              UNION ALL
              SELECT DISTINCT 'identity_origin', o.origin_source_id FROM canon.identity_origin o
              WHERE canon.lead_source_pk(o.origin_source_id, NULL) IS DISTINCT FROM o.origin_source_id
              UNION ALL
              SELECT DISTINCT 'claims_yango_cabinet_14d', c.lead_source_pk FROM canon.claims_yango_cabinet_14d c
              WHERE canon.lead_source_pk(c.lead_source_pk, NULL) IS DISTINCT FROM c.lead_source_pk
              UNION ALL
              SELECT DISTINCT 'claims_settled', s.lead_source_pk FROM canon.claims_settled s
              WHERE canon.lead_source_pk(s.lead_source_pk, NULL) IS DISTINCT FROM s.lead_source_pk
              UNION ALL
              SELECT DISTINCT 'lead_keys', k.lead_source_pk FROM canon.lead_keys k
              WHERE canon.lead_source_pk(k.lead_source_pk, NULL) IS DISTINCT FROM k.lead_source_pk
              UNION ALL
              SELECT DISTINCT 'cabinet_lead_state', s.lead_source_pk FROM canon.cabinet_lead_state s
              WHERE canon.lead_source_pk(s.lead_source_pk, NULL) IS DISTINCT FROM s.lead_source_pk
            ) b
            GROUP BY b.lead_key
          ) s
          CROSS JOIN LATERAL (SELECT canon.lead_source_pk(s.lead_key, NULL) AS trimmed) t
    ) x
  ),
  checks (ord, invariant, description, examples, n) AS (
    SELECT 1, 'ORPHAN_PERSON', 'persons in canon.identity_registry without any identity link',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM orphan ORDER BY example LIMIT 5) x), (SELECT count(*) FROM orphan)
    UNION ALL
    SELECT 2, 'LEAD_LINKED_AND_OPEN', 'leads both linked and OPEN in canon.identity_unmatched',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM linked_open ORDER BY example LIMIT 5) x), (SELECT count(*) FROM linked_open)
    UNION ALL
    SELECT 3, 'DRIVER_LINKED_TWICE', 'drivers with more than one identity link (a driver belongs to at most one person)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM driver_twice ORDER BY example LIMIT 5) x), (SELECT count(*) FROM driver_twice)
    UNION ALL
    SELECT 4, 'RUN_STUCK_RUNNING', 'runs RUNNING whose backend is gone, or for over 2 hours (the next run marks the former FAILED, abandoned)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM stuck ORDER BY example LIMIT 5) x), (SELECT count(*) FROM stuck)
    UNION ALL
    SELECT 5, 'LIMBO_ROW_COUNT', 'ops.v_cabinet_leads_limbo must have exactly one row per lead with lead_created_at',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM limbo_mismatch ORDER BY example LIMIT 5) x), (SELECT count(*) FROM limbo_mismatch)
    UNION ALL
    SELECT 6, 'SETTLED_CLAIM_UNGUARDED', 'the triggers that keep pipeline runs off paid and rejected claims, and record them, must exist and be enabled',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM settled_guard ORDER BY example LIMIT 5) x), (SELECT count(*) FROM settled_guard)
    UNION ALL
    SELECT 7, 'SETTLED_CLAIM_CHANGED', 'paid or rejected claims that differ from canon.claims_settled (changed, deleted or settled while the guard was off)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM settled_changed ORDER BY example LIMIT 5) x), (SELECT count(*) FROM settled_changed)
    UNION ALL
    SELECT 8, 'LEAD_STATE_COUNTS', 'canon.cabinet_lead_state_counts must count the stored lead state rows (by lead date, stage and flags)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM state_counts ORDER BY example LIMIT 5) x), (SELECT count(*) FROM state_counts)
    UNION ALL
    SELECT 30, 'LEAD_KEY_BLANK_ENDS', 'lead keys stored with blanks at their ends, or of blanks only, which canon.lead_source_pk never makes: next to the same key without them, one lead is linked and claimed twice (repair: ops.repair_lead_keys)',
           (SELECT jsonb_agg(example) FROM (SELECT example FROM lead_key_blanks ORDER BY example LIMIT 5) x), (SELECT count(*) FROM lead_key_blanks)
  )
  SELECT c.invariant, c.n, coalesce(c.examples, '[]'::jsonb), c.description FROM checks c ORDER BY c.ord
$$;
COMMENT ON FUNCTION ops.check_invariants() IS
  'Every spec invariant with its violation count (0 = holds) and up to 5 examples: SELECT * FROM ops.check_invariants() WHERE violations > 0; cabinet-leads doctor exits 1 when any is violated.';

-- snapshot of migrations/parts/0029_rekey_existing_leads.sql
-- Existing rows keyed by the old definition (btrim of spaces only) are brought to the new
-- one: keys re-keyed in every table that stores one, leads that were two under the old key
-- merged, the claims made twice set aside for finance. Recorded as a run
-- (canon.ingestion_runs, job_name repair_lead_keys) and in canon.identity_audit; nothing
-- to do (a new database, no padded ids) writes nothing.
SELECT ops.repair_lead_keys('migration 0029: lead keys re-keyed to canon.lead_source_pk (blanks at the ends of external_id: spaces, TAB, CR/LF, NBSP, other Unicode spaces)');
