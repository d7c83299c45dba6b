-- canon.v_claim_rule_periods: canon.claim_rules turned into consecutive periods
-- [period_from, period_to) during which one rule set applies, one row per period with the
-- window and each milestone's threshold and amount. A lead takes the period of its
-- lead_date, so views read thresholds, amounts and windows from the rules, never literals.
-- canon.enforce_claim_rules_consistent guarantees one rule per milestone and one window per day.
CREATE OR REPLACE VIEW canon.v_claim_rule_periods AS
WITH bounds AS (
  SELECT r.valid_from AS d FROM canon.claim_rules r
  UNION
  SELECT r.valid_to FROM canon.claim_rules r WHERE r.valid_to IS NOT NULL
),
periods AS (
  SELECT b.d AS period_from, lead(b.d) OVER (ORDER BY b.d) AS period_to
  FROM bounds b
)
SELECT p.period_from,
       p.period_to,
       max(r.window_days) AS window_days,
       max(r.currency) AS currency,
       max(r.trips_threshold) FILTER (WHERE r.milestone = 1) AS m1_trips_threshold,
       max(r.amount) FILTER (WHERE r.milestone = 1) AS m1_amount,
       max(r.trips_threshold) FILTER (WHERE r.milestone = 5) AS m5_trips_threshold,
       max(r.amount) FILTER (WHERE r.milestone = 5) AS m5_amount,
       max(r.trips_threshold) FILTER (WHERE r.milestone = 25) AS m25_trips_threshold,
       max(r.amount) FILTER (WHERE r.milestone = 25) AS m25_amount
FROM periods p
JOIN canon.claim_rules r
  ON r.valid_from <= p.period_from
 AND (r.valid_to IS NULL OR p.period_from < r.valid_to)
GROUP BY p.period_from, p.period_to;
COMMENT ON VIEW canon.v_claim_rule_periods IS
  'Claim rules as consecutive periods [period_from, period_to) with window_days, currency and each milestone''s trips threshold and amount.';
