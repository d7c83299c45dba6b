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
