-- canon.generate_cabinet_claims: pipeline step 7 (SPEC 7). For every lead with
-- lead_date >= p_scope_from (not only this run's batch), inserts each missing claim
-- (lead_source_pk, milestone) whose milestone the lead's driver reached in
-- [lead_date, lead_date + window_days), as 'generated', with the rule's amount.
-- One INSERT ... ON CONFLICT DO NOTHING: existing claims (paid, rejected, any status) are
-- never touched, and a second call inserts nothing. Two lead rows sharing a key get one
-- set of claims (from the earliest row that reached the milestone). Returns step stats.
-- jit is off: compiling the chain's expressions costs more than the step itself.
CREATE OR REPLACE FUNCTION canon.generate_cabinet_claims(p_run_id bigint, p_scope_from date)
RETURNS jsonb
LANGUAGE sql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
  WITH scope AS MATERIALIZED (
    SELECT c.*
    FROM canon.v_cabinet_lead_chain c
    WHERE c.lead_created_at >= p_scope_from::timestamp
  ),
  reached AS (
    SELECT s.lead_id, s.lead_source_pk, s.lead_date, s.person_key, s.driver_id, s.currency,
           m.milestone, m.amount
    FROM scope s
    CROSS JOIN LATERAL (
      VALUES (1, s.m1_amount, s.reached_m1),
             (5, s.m5_amount, s.reached_m5),
             (25, s.m25_amount, s.reached_m25)
    ) m (milestone, amount, reached)
    WHERE m.reached
  ),
  due AS (
    SELECT DISTINCT ON (r.lead_source_pk, r.milestone) r.*
    FROM reached r
    ORDER BY r.lead_source_pk, r.milestone, r.lead_date, r.lead_id
  ),
  inserted AS (
    INSERT INTO canon.claims_yango_cabinet_14d AS cl (
      lead_source_pk, milestone, person_key, driver_id, lead_date, amount_expected, currency,
      status, generated_at, run_id
    )
    SELECT d.lead_source_pk, d.milestone, d.person_key, d.driver_id, d.lead_date, d.amount, d.currency,
           'generated', now(), p_run_id
    FROM due d
    ORDER BY d.lead_source_pk, d.milestone
    ON CONFLICT (lead_source_pk, milestone) DO NOTHING
    RETURNING cl.milestone, cl.amount_expected
  ),
  existing AS (
    SELECT cl.status, count(*) AS n
    FROM due d
    JOIN canon.claims_yango_cabinet_14d cl
      ON cl.lead_source_pk = d.lead_source_pk AND cl.milestone = d.milestone
    GROUP BY cl.status
  ),
  scope_drivers AS (
    SELECT DISTINCT s.driver_id FROM scope s WHERE s.driver_id IS NOT NULL
  ),
  unparseable AS (
    SELECT count(*) AS n
    FROM scope_drivers sd
    JOIN public.summary_daily t
      ON t.driver_id = sd.driver_id
     AND canon.parse_date_file(t.date_file) IS NULL
  ),
  per_milestone AS (
    SELECT m.milestone,
           count(i.milestone) AS n,
           coalesce(sum(i.amount_expected), 0) AS amount
    FROM (VALUES (1), (5), (25)) m (milestone)
    LEFT JOIN inserted i ON i.milestone = m.milestone
    GROUP BY m.milestone
  )
  SELECT jsonb_build_object(
    'scope_from', p_scope_from,
    'leads_in_scope', (SELECT count(*) FROM scope),
    'lead_keys_in_scope', (SELECT count(DISTINCT s.lead_source_pk) FROM scope s),
    'leads_with_identity', (SELECT count(*) FROM scope s WHERE s.person_key IS NOT NULL),
    'leads_with_driver', (SELECT count(*) FROM scope s WHERE s.driver_id IS NOT NULL),
    'leads_with_trips', (SELECT count(*) FROM scope s WHERE s.trips_in_window > 0),
    'leads_without_claim_rule', (SELECT count(*) FROM scope s WHERE s.window_days IS NULL),
    'trip_rows_read', (SELECT coalesce(sum(s.trip_rows_in_window), 0) FROM scope s),
    'trip_rows_unparseable_scope_drivers', (SELECT n FROM unparseable),
    'milestones_reached', (SELECT count(*) FROM due),
    'claims_generated', (SELECT count(*) FROM inserted),
    'claims_generated_amount', (SELECT coalesce(sum(i.amount_expected), 0) FROM inserted i),
    'claims_generated_by_milestone', (SELECT jsonb_object_agg('M' || p.milestone, jsonb_build_object('count', p.n, 'amount', p.amount))
                                      FROM per_milestone p),
    'claims_already_present', (SELECT coalesce(sum(e.n), 0) FROM existing e),
    'claims_skipped_paid_or_rejected', (SELECT coalesce(sum(e.n), 0) FROM existing e WHERE e.status IN ('paid', 'rejected')),
    'claims_already_present_by_status', (SELECT coalesce(jsonb_object_agg(e.status, e.n), '{}'::jsonb) FROM existing e)
  )
$$;
COMMENT ON FUNCTION canon.generate_cabinet_claims(bigint, date) IS
  'Pipeline step 7: insert, as generated, every missing claim (lead_source_pk, milestone) reached in the window by leads with lead_date >= p_scope_from. Never touches existing claims. Returns step stats.';
