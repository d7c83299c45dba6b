-- canon.last_run_scope: the lead dates the pipeline runs cover now (SPEC 7 step 5): the
-- days_back of the last COMPLETED run (not a dry run; 30, the default, before the first
-- one) and the first lead date it selects today, business today - days_back. A lead dated
-- before scope_from is neither evaluated nor retried until a run with a larger days_back.
-- Read once per query by ops.explain_lead, ops.v_cabinet_leads_limbo (reason texts) and
-- ops.v_review_queue; one probe of ingestion_runs_job_status_idx.
CREATE OR REPLACE FUNCTION canon.last_run_scope()
RETURNS TABLE (run_id bigint, days_back integer, scope_from date)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT r.id, coalesce(r.days_back, 30), canon.business_today() - coalesce(r.days_back, 30)
  FROM (SELECT NULL::bigint AS id, NULL::integer AS days_back) d
  LEFT JOIN LATERAL (
    SELECT x.id, (x.params->>'days_back')::integer AS days_back
    FROM canon.ingestion_runs x
    WHERE x.job_name = 'reconcile_cabinet_leads_pipeline' AND x.status = 'COMPLETED' AND NOT x.dry_run
    ORDER BY x.created_at DESC, x.id DESC
    LIMIT 1
  ) r ON true
$$;
COMMENT ON FUNCTION canon.last_run_scope() IS
  'The scope of the pipeline runs now: run_id and days_back of the last COMPLETED run (NULL and 30 before the first), scope_from = business today - days_back. Leads dated before scope_from are not evaluated or retried.';
