-- canon.v_cabinet_lead_status: the one live definition of a lead's state on the chain
-- lead -> person -> driver -> trips in window -> claims (SPEC 8), one row per lead row
-- with lead_created_at: canon.v_cabinet_lead_chain plus the claims present for THIS
-- lead's key (any status) and the limbo stage, first that applies: NO_IDENTITY,
-- NO_DRIVER, NO_TRIPS_14D, TRIPS_NO_CLAIM, OK. Costly over every lead (one trip lookup
-- per lead): canon.refresh_lead_state stores it in canon_internal.cabinet_lead_state for the
-- leads that changed, and the views read the stored rows.
CREATE OR REPLACE VIEW canon.v_cabinet_lead_status AS
SELECT c.lead_id,
       c.lead_source_pk,
       c.lead_date,
       c.person_key,
       c.driver_id,
       c.window_days,
       c.window_end,
       c.trips_in_window,
       c.trip_rows_in_window,
       c.currency,
       c.m1_trips_threshold,
       c.m1_amount,
       c.reached_m1,
       c.m5_trips_threshold,
       c.m5_amount,
       c.reached_m5,
       c.m25_trips_threshold,
       c.m25_amount,
       c.reached_m25,
       c.expected_amount,
       (c1.lead_source_pk IS NOT NULL) AS has_claim_m1,
       (c5.lead_source_pk IS NOT NULL) AS has_claim_m5,
       (c25.lead_source_pk IS NOT NULL) AS has_claim_m25,
       canon.limbo_stage_of(c.person_key, c.driver_id, c.trips_in_window,
                            c.reached_m1, c.reached_m5, c.reached_m25,
                            c1.lead_source_pk IS NOT NULL, c5.lead_source_pk IS NOT NULL,
                            c25.lead_source_pk IS NOT NULL) AS limbo_stage,
       -- Dated lead rows sharing this key, as keyed (canon_internal.lead_keys, by the last read of the
       -- lead rows; a row committed since counts from the next run on): 1 for almost every
       -- lead, which lets the per-key claim views skip sorting every lead.
       1 + (SELECT count(*)::integer FROM canon_internal.lead_keys k2
            WHERE k2.lead_source_pk = c.lead_source_pk AND k2.lead_date IS NOT NULL AND k2.lead_id <> c.lead_id) AS key_rows,
       -- The paid claims of this key's milestones that have a threshold (the claims the
       -- weekly funnel counts as paid for a key held by one lead row), and their amounts.
       (coalesce(c1.status = 'paid' AND c.m1_trips_threshold IS NOT NULL, false)::integer
        + coalesce(c5.status = 'paid' AND c.m5_trips_threshold IS NOT NULL, false)::integer
        + coalesce(c25.status = 'paid' AND c.m25_trips_threshold IS NOT NULL, false)::integer) AS paid_claims,
       (CASE WHEN c1.status = 'paid' AND c.m1_trips_threshold IS NOT NULL THEN c1.amount_expected ELSE 0 END
        + CASE WHEN c5.status = 'paid' AND c.m5_trips_threshold IS NOT NULL THEN c5.amount_expected ELSE 0 END
        + CASE WHEN c25.status = 'paid' AND c.m25_trips_threshold IS NOT NULL THEN c25.amount_expected ELSE 0 END)::numeric(12, 2) AS paid_amount
FROM canon.v_cabinet_lead_chain c
LEFT JOIN canon.claims_yango_cabinet_14d c1 ON c1.lead_source_pk = c.lead_source_pk AND c1.milestone = 1
LEFT JOIN canon.claims_yango_cabinet_14d c5 ON c5.lead_source_pk = c.lead_source_pk AND c5.milestone = 5
LEFT JOIN canon.claims_yango_cabinet_14d c25 ON c25.lead_source_pk = c.lead_source_pk AND c25.milestone = 25;
COMMENT ON VIEW canon.v_cabinet_lead_status IS
  'Live state of every cabinet lead row with lead_created_at: chain, milestones, claims of this key, limbo_stage, paid claims. Stored per lead in canon_internal.cabinet_lead_state by the pipeline.';
