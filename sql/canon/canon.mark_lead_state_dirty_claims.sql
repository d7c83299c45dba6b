-- canon.mark_lead_state_dirty_claims: statement-level trigger function on
-- canon.claims_yango_cabinet_14d (INSERT, DELETE, UPDATE, transition tables old_rows /
-- new_rows): a lead's has_claim flags and stage depend on its claims, so the keys of the
-- claims written are marked in canon_internal.cabinet_lead_state_dirty; a claim paid, no
-- longer paid, or whose paid amount changed only touches the lead's paid_claims and
-- paid_amount, so its key is marked in canon_internal.cabinet_lead_state_paid_dirty. Claim
-- generation, which re-evaluates the leads it claimed itself, turns this off for its own
-- INSERT (cabinet.lead_state_marking = 'off', transaction-local).
CREATE OR REPLACE FUNCTION canon.mark_lead_state_dirty_claims()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF current_setting('cabinet.lead_state_marking', true) = 'off' THEN
    RETURN NULL;
  END IF;
  IF TG_OP = 'INSERT' THEN
    INSERT INTO canon_internal.cabinet_lead_state_dirty AS d (lead_source_pk)
    SELECT DISTINCT n.lead_source_pk FROM new_rows n
    ON CONFLICT (lead_source_pk) DO UPDATE SET mark_seq = excluded.mark_seq, marked_at = excluded.marked_at;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO canon_internal.cabinet_lead_state_dirty AS d (lead_source_pk)
    SELECT DISTINCT o.lead_source_pk FROM old_rows o
    ON CONFLICT (lead_source_pk) DO UPDATE SET mark_seq = excluded.mark_seq, marked_at = excluded.marked_at;
  ELSE
    -- Status changes do not alter a lead's stage (any status counts as present).
    INSERT INTO canon_internal.cabinet_lead_state_dirty AS d (lead_source_pk)
    SELECT k FROM (
      SELECT o.lead_source_pk AS k, o.milestone AS m FROM old_rows o
      EXCEPT
      SELECT n.lead_source_pk, n.milestone FROM new_rows n
      UNION
      SELECT n.lead_source_pk, n.milestone FROM new_rows n
      EXCEPT
      SELECT o.lead_source_pk, o.milestone FROM old_rows o
    ) x
    GROUP BY k
    ON CONFLICT (lead_source_pk) DO UPDATE SET mark_seq = excluded.mark_seq, marked_at = excluded.marked_at;
    -- Paid or no longer paid, or a paid amount changed: the lead's paid figures.
    INSERT INTO canon_internal.cabinet_lead_state_paid_dirty AS d (lead_source_pk)
    SELECT DISTINCT n.lead_source_pk
    FROM old_rows o
    JOIN new_rows n ON n.lead_source_pk = o.lead_source_pk AND n.milestone = o.milestone
    WHERE (o.status = 'paid', CASE WHEN o.status = 'paid' THEN o.amount_expected END)
          IS DISTINCT FROM (n.status = 'paid', CASE WHEN n.status = 'paid' THEN n.amount_expected END)
    ON CONFLICT (lead_source_pk) DO UPDATE SET mark_seq = excluded.mark_seq, marked_at = excluded.marked_at;
  END IF;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION canon.mark_lead_state_dirty_claims() IS
  'Trigger on canon.claims_yango_cabinet_14d: marks the lead keys whose claims appeared, disappeared or moved (canon_internal.cabinet_lead_state_dirty).';
