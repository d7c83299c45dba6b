-- canon.enforce_claim_rules_consistent: trigger function (deferred, at commit) that keeps
-- canon.claim_rules unambiguous for every lead date, because the claim views and
-- canon.generate_cabinet_claims read one rule per milestone and one window per lead:
-- milestones are 1, 5 and 25 (the limbo view has a column for each); validity is
-- [valid_from, valid_to); a milestone's periods never overlap; rules valid on the same
-- day share one window_days and one currency.
CREATE OR REPLACE FUNCTION canon.enforce_claim_rules_consistent()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  r canon.claim_rules%ROWTYPE;
  v_other canon.claim_rules%ROWTYPE;
BEGIN
  -- The row as it is at commit (it may have been changed or deleted since).
  SELECT * INTO r FROM canon.claim_rules c WHERE c.milestone = NEW.milestone AND c.valid_from = NEW.valid_from;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  IF r.milestone NOT IN (1, 5, 25) THEN
    RAISE EXCEPTION 'claim rule for milestone % rejected: milestones are 1, 5 and 25 (ops.v_cabinet_leads_limbo has a column for each; a new milestone needs a migration of the claim views)', r.milestone
      USING ERRCODE = '23514';
  END IF;
  SELECT * INTO v_other
  FROM canon.claim_rules o
  WHERE (o.milestone, o.valid_from) <> (r.milestone, r.valid_from)
    AND o.valid_from < coalesce(r.valid_to, 'infinity'::date)
    AND r.valid_from < coalesce(o.valid_to, 'infinity'::date)
    AND (o.milestone = r.milestone OR o.window_days <> r.window_days OR o.currency <> r.currency)
  ORDER BY o.milestone, o.valid_from
  LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'claim rule (milestone %, valid from % to %) conflicts with rule (milestone %, valid from % to %)',
      r.milestone, r.valid_from, coalesce(r.valid_to::text, 'open'),
      v_other.milestone, v_other.valid_from, coalesce(v_other.valid_to::text, 'open')
      USING ERRCODE = '23514',
            DETAIL = CASE WHEN v_other.milestone = r.milestone
                          THEN 'Periods of one milestone must not overlap: close the old one (valid_to) before the new one starts.'
                          ELSE format('Rules valid on the same day must share window_days and currency (%s days %s vs %s days %s).',
                                      r.window_days, r.currency, v_other.window_days, v_other.currency) END;
  END IF;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION canon.enforce_claim_rules_consistent() IS
  'Constraint trigger on canon.claim_rules: milestones 1/5/25, no overlapping periods per milestone, one window_days and currency per day.';
