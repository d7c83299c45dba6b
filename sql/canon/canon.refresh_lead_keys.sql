-- canon.refresh_lead_keys: brings canon_internal.lead_keys up to date for the given lead rows
-- (ids), whatever happened to them: a new or changed row is (re-)keyed when its source
-- values differ from what was keyed (source hash), a row whose key is over 200 characters
-- is listed in canon_internal.lead_rows_unkeyed instead (no index can hold a 10 kB key), a row that
-- is gone loses its key. What depends on a row's key follows in the same statement:
-- * canon_internal.lead_keys_pending (never-evaluated keys) lists a row keyed for the first time or
--   under another key or date;
-- * canon.identity_unmatched.retry_due is set for an OPEN unmatched key whose lead's phone,
--   plate, licence, name or date changed (its candidates may differ now);
-- * canon_internal.cabinet_lead_state_pending lists the row, and every row sharing its old or new
--   key (their key_rows change), when it is new, gone, re-keyed or re-dated.
-- Callers: canon.key_changed_leads (every changed row of a run), ops.explain_lead (a
-- lead's rows before explaining it). Returns the number of lead_keys rows written or removed.
CREATE OR REPLACE FUNCTION canon.refresh_lead_keys(p_lead_ids integer[] DEFAULT '{}')
RETURNS integer
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET jit = off
SET client_min_messages = warning
AS $$
DECLARE
  v_written integer;
  v_probe_by_key boolean;
  v_hashjoin text;
  v_mergejoin text;
BEGIN
  IF coalesce(cardinality(p_lead_ids), 0) = 0 THEN
    RETURN 0;
  END IF;
  -- A run's few rows against many: probed by key. The planner would rather hash both tables
  -- whole (it prices each probe as a random read): 50 ms at 200k leads for 2,000 rows.
  v_probe_by_key := cardinality(p_lead_ids) * 10
    < (SELECT c.reltuples FROM pg_class c WHERE c.oid = 'public.module_ct_cabinet_leads'::regclass);
  IF v_probe_by_key THEN
    v_hashjoin := current_setting('enable_hashjoin');
    v_mergejoin := current_setting('enable_mergejoin');
    PERFORM set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true);
  END IF;
  DROP TABLE IF EXISTS pg_temp.lead_keys_source;
  CREATE TEMP TABLE lead_keys_source ON COMMIT DROP AS
  SELECT x.lead_id, l.id IS NOT NULL AS present,
         canon.lead_source_pk(l.external_id, l.id) AS lead_source_pk,
         l.lead_created_at, l.park_phone, l.asset_plate_number, l.first_name, l.middle_name, l.last_name,
         canon.lead_source_hash(l.external_id, l.lead_created_at, l.park_phone, l.asset_plate_number,
                              l.first_name, l.middle_name, l.last_name) AS source_hash,
         k.lead_id IS NOT NULL AS was_keyed, k.source_hash AS old_hash, k.lead_source_pk AS old_key,
         k.lead_date AS old_date
  FROM (SELECT DISTINCT unnest(p_lead_ids) AS lead_id) x
  LEFT JOIN public.module_ct_cabinet_leads l ON l.id = x.lead_id
  LEFT JOIN canon_internal.lead_keys k ON k.lead_id = x.lead_id;
  IF v_probe_by_key THEN
    PERFORM set_config('enable_hashjoin', v_hashjoin, true), set_config('enable_mergejoin', v_mergejoin, true);
  END IF;

  WITH
  -- rows to key: present, a key of at most 200 characters, never keyed, or changed since
  -- (source values, or the key they give: canon.lead_source_pk may be redefined)
  to_key AS (
    SELECT s.*
    FROM pg_temp.lead_keys_source s
    WHERE s.present AND length(s.lead_source_pk) <= 200
      AND (NOT s.was_keyed OR s.old_hash <> s.source_hash OR s.old_key <> s.lead_source_pk)
  ),
  keyed AS (
    INSERT INTO canon_internal.lead_keys AS k (
      lead_id, lead_source_pk, lead_created_at, lead_date, phone_norm, plate_norm, license_norm,
      name_norm, lead_name, source_hash, indexed_at)
    SELECT s.lead_id, s.lead_source_pk, s.lead_created_at, canon.lead_date_of(s.lead_created_at),
           canon.normalize_phone(s.park_phone),
           canon.normalize_plate(s.asset_plate_number),
           NULL, -- the cabinet export carries no licence number: R2 cannot fire for leads
           canon.normalize_name(concat_ws(' ', s.first_name, s.middle_name, s.last_name)),
           nullif(left(regexp_replace(btrim(concat_ws(' ', s.first_name, s.middle_name, s.last_name)), '\s+', ' ', 'g'), 200), ''),
           s.source_hash, now()
    FROM to_key s
    ON CONFLICT (lead_id) DO UPDATE
      SET lead_source_pk = excluded.lead_source_pk, lead_created_at = excluded.lead_created_at,
          lead_date = excluded.lead_date, phone_norm = excluded.phone_norm, plate_norm = excluded.plate_norm,
          license_norm = excluded.license_norm, name_norm = excluded.name_norm, lead_name = excluded.lead_name,
          source_hash = excluded.source_hash, indexed_at = excluded.indexed_at
    RETURNING k.lead_id, k.lead_source_pk, k.lead_date, k.phone_norm, k.plate_norm, k.license_norm, k.name_norm
  ),
  -- rows that lose their key: gone, or a key too long to index
  unkeyed AS (
    DELETE FROM canon_internal.lead_keys k
    USING pg_temp.lead_keys_source s
    WHERE k.lead_id = s.lead_id AND (NOT s.present OR length(s.lead_source_pk) > 200)
    RETURNING k.lead_id, k.lead_source_pk
  ),
  oversized AS (
    INSERT INTO canon_internal.lead_rows_unkeyed AS u (lead_id, reason)
    SELECT s.lead_id, 'OVERSIZED_KEY' FROM pg_temp.lead_keys_source s
    WHERE s.present AND length(s.lead_source_pk) > 200
    ON CONFLICT (lead_id) DO NOTHING
  ),
  not_oversized AS (
    DELETE FROM canon_internal.lead_rows_unkeyed u
    USING pg_temp.lead_keys_source s
    WHERE u.lead_id = s.lead_id AND (NOT s.present OR length(s.lead_source_pk) <= 200)
  ),
  -- keyed for the first time, or under another key or date: its key may never have been evaluated
  match_pending AS (
    INSERT INTO canon_internal.lead_keys_pending AS q (lead_id, lead_date)
    SELECT w.lead_id, w.lead_date
    FROM keyed w
    JOIN pg_temp.lead_keys_source s ON s.lead_id = w.lead_id
    WHERE NOT s.was_keyed OR s.old_key <> w.lead_source_pk OR s.old_date IS DISTINCT FROM w.lead_date
    ON CONFLICT (lead_id) DO UPDATE SET lead_date = excluded.lead_date
  ),
  match_unpending AS (
    DELETE FROM canon_internal.lead_keys_pending q USING unkeyed u WHERE q.lead_id = u.lead_id
  ),
  -- an OPEN lead whose matching keys changed may match now
  retry AS (
    UPDATE canon.identity_unmatched u SET retry_due = true
    FROM keyed w
    JOIN pg_temp.lead_keys_source s ON s.lead_id = w.lead_id
    WHERE s.was_keyed
      AND u.source_table = 'module_ct_cabinet_leads' AND u.source_pk = w.lead_source_pk
      AND u.status = 'OPEN' AND NOT u.retry_due
  ),
  -- the state of the row, and of every row of its old and new key, is to be evaluated again
  changed_keys AS (
    SELECT w.lead_id, w.lead_source_pk AS key, s.old_key
    FROM keyed w
    JOIN pg_temp.lead_keys_source s ON s.lead_id = w.lead_id
    WHERE NOT s.was_keyed OR s.old_key <> w.lead_source_pk OR s.old_date IS DISTINCT FROM w.lead_date
    UNION ALL
    SELECT u.lead_id, NULL, u.lead_source_pk FROM unkeyed u
  ),
  state_pending AS (
    INSERT INTO canon_internal.cabinet_lead_state_pending (lead_id)
    SELECT c.lead_id FROM changed_keys c
    UNION
    SELECT s.lead_id FROM pg_temp.lead_keys_source s
    WHERE NOT s.present OR length(s.lead_source_pk) > 200
    UNION
    SELECT unnest(canon.lead_ids_of_keys(ARRAY(
      SELECT c.key FROM changed_keys c WHERE c.key IS NOT NULL
      UNION SELECT c.old_key FROM changed_keys c WHERE c.old_key IS NOT NULL)))
    -- marked again: a refresh that read the earlier mark removes only that one
    ON CONFLICT (lead_id) DO UPDATE SET mark_seq = excluded.mark_seq, marked_at = excluded.marked_at
  )
  SELECT (SELECT count(*) FROM keyed) + (SELECT count(*) FROM unkeyed) INTO v_written;
  DROP TABLE pg_temp.lead_keys_source;
  RETURN v_written;
END
$$;
COMMENT ON FUNCTION canon.refresh_lead_keys(integer[]) IS
  'Keys the given lead rows (new or changed since keyed), unkeys rows gone or with an oversized key, and lists what depends on them (match pending, retry due, state pending). Returns lead_keys rows written or removed.';
