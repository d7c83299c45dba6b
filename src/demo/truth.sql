-- Demo generator, step "truth": demo.lead_truth for this batch. lead_source_pk is read
-- back from the inserted rows (after the re-export copies) with the product's own function,
-- so padded, empty and duplicated external ids are keyed exactly as the product keys them.
INSERT INTO demo.lead_truth (lead_id, lead_source_pk, true_driver_id, scenario, matchable)
SELECT pl.lead_id,
       canon.lead_source_pk(l.external_id, l.id),
       -- A re-export is the previous lead again: it has that lead's truth.
       CASE WHEN pl.scenario = 'HOSTILE_DUP_EXTERNAL_ID' THEN prev.true_driver_id ELSE pl.true_driver_id END,
       pl.scenario,
       CASE WHEN pl.scenario = 'HOSTILE_DUP_EXTERNAL_ID' THEN prev.matchable ELSE pl.matchable END
FROM demo_plan pl
JOIN public.module_ct_cabinet_leads l ON l.id = pl.lead_id
LEFT JOIN demo_plan prev ON prev.i = pl.i - 1 AND pl.scenario = 'HOSTILE_DUP_EXTERNAL_ID';
