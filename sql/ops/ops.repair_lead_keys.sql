-- ops.repair_lead_keys: brings every stored lead key to canon.lead_source_pk, in one
-- transaction: keys written under an older definition (btrim of spaces only kept a TAB,
-- an NBSP, a zero width space) or by hand. It re-keyed the development databases once; doctor's
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
--   origins, canon_internal.lead_keys, canon_internal.cabinet_lead_state, the dirty keys and the settled
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
  PERFORM canon.require_note(p_note, 'say why the lead keys are repaired');

  -- GUARD: never in the middle of a pipeline run or an identity change.
  PERFORM canon.take_job_lock();

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
    SELECT s.lead_source_pk FROM canon_internal.claims_settled s
    WHERE s.unsettled_at IS NULL AND canon.lead_source_pk(s.lead_source_pk, NULL) IS DISTINCT FROM s.lead_source_pk
    UNION
    SELECT k.lead_source_pk FROM canon_internal.lead_keys k
    WHERE canon.lead_source_pk(k.lead_source_pk, NULL) IS DISTINCT FROM k.lead_source_pk
    UNION
    SELECT s.lead_source_pk FROM canon_internal.cabinet_lead_state s
    WHERE canon.lead_source_pk(s.lead_source_pk, NULL) IS DISTINCT FROM s.lead_source_pk
    UNION
    SELECT d.lead_source_pk FROM canon_internal.cabinet_lead_state_dirty d
    WHERE canon.lead_source_pk(d.lead_source_pk, NULL) IS DISTINCT FROM d.lead_source_pk
  )
  SELECT s.old_key,
         coalesce(canon.lead_source_pk(s.old_key, NULL),
                  -- blanks only: the lead rows stored under it are keyed by their ids now;
                  -- what was keyed under it goes to the first of them
                  (SELECT min(x.lead_id)::text
                   FROM (SELECT k.lead_id FROM canon_internal.lead_keys k WHERE k.lead_source_pk = s.old_key
                         UNION ALL
                         SELECT st.lead_id FROM canon_internal.cabinet_lead_state st WHERE st.lead_source_pk = s.old_key) x)) AS new_key
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
    UPDATE canon_internal.lead_keys k SET lead_source_pk = canon.lead_source_pk(k.lead_source_pk, k.lead_id)
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
  JOIN canon_internal.lead_keys k ON k.lead_source_pk = r.new_key
  WHERE NOT EXISTS (SELECT 1 FROM pg_temp.lead_rekey_rows w WHERE w.lead_id = k.lead_id);

  UPDATE canon_internal.cabinet_lead_state s SET lead_source_pk = canon.lead_source_pk(s.lead_source_pk, s.lead_id)
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
  UPDATE canon_internal.claims_settled s SET lead_source_pk = r.new_key
  FROM pg_temp.lead_rekey r
  WHERE s.lead_source_pk = r.old_key AND s.unsettled_at IS NULL
    AND NOT EXISTS (SELECT 1 FROM canon_internal.claims_settled x WHERE x.lead_source_pk = r.new_key AND x.milestone = s.milestone);
  GET DIAGNOSTICS v_count = ROW_COUNT;
  v_n := v_n || jsonb_build_object('settled_records_rekeyed', v_count);

  -- LEAD STATE: the stale keys (some marked by the triggers above) replaced by the leads'
  -- keys, re-evaluated by the next run; a lead row whose key was never evaluated is pending.
  DELETE FROM canon_internal.cabinet_lead_state_dirty d USING pg_temp.lead_rekey r WHERE d.lead_source_pk = r.old_key;
  INSERT INTO canon_internal.cabinet_lead_state_dirty AS d (lead_source_pk)
  SELECT DISTINCT x.lead_source_pk
  FROM (SELECT r.new_key AS lead_source_pk FROM pg_temp.lead_rekey r
        UNION ALL
        SELECT w.lead_source_pk FROM pg_temp.lead_rekey_rows w) x
  ON CONFLICT (lead_source_pk) DO UPDATE SET mark_seq = excluded.mark_seq, marked_at = excluded.marked_at;
  INSERT INTO canon_internal.lead_keys_pending (lead_id, lead_date)
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
