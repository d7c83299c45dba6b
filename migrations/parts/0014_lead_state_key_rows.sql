-- Lead state: key_rows, the number of lead rows sharing a row's key, so that the per-key
-- claim views (and the weekly funnel) sort only the rare shared keys (issue 7: the funnel
-- took 28 s at 1M leads sorting every lead x milestone).
ALTER TABLE canon.cabinet_lead_state ADD COLUMN key_rows integer NOT NULL DEFAULT 1;
UPDATE canon.cabinet_lead_state s
SET key_rows = k.n
FROM (SELECT x.lead_source_pk, count(*)::integer AS n
      FROM canon.cabinet_lead_state x
      GROUP BY x.lead_source_pk
      HAVING count(*) > 1) k
WHERE s.lead_source_pk = k.lead_source_pk;
