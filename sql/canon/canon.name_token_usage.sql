-- canon.name_token_usage: which of the given name tokens the drivers clearly use as a
-- given name, and which as a surname (SPEC 5: roles are judged from "how common each
-- token is as a given name or a surname among the drivers"), from the counts kept in
-- canon_internal.name_token_stats. Called by canon.lead_candidates for the few candidate pairs
-- canon.name_veto looks at; a handful of primary-key probes per pair.
CREATE OR REPLACE FUNCTION canon.name_token_usage(p_tokens text[])
RETURNS TABLE (given_names text[], surnames text[])
LANGUAGE sql
STABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
  -- Clear: typed in that role by at least min_uses drivers and at least ratio times as
  -- often as in the other role (CRUZ, SANTOS, LEON are both: not clear, the fields decide).
  WITH params (min_uses, ratio) AS (VALUES (3, 3))
  SELECT array_agg(s.token ORDER BY s.token) FILTER (WHERE s.as_given >= p.min_uses AND s.as_given >= p.ratio * s.as_surname),
         array_agg(s.token ORDER BY s.token) FILTER (WHERE s.as_surname >= p.min_uses AND s.as_surname >= p.ratio * s.as_given)
  FROM params p
  LEFT JOIN canon_internal.name_token_stats s ON s.token = ANY (p_tokens)
$$;
COMMENT ON FUNCTION canon.name_token_usage(text[]) IS
  'Of the given tokens, those the drivers clearly use as given names (first/middle name) and as surnames (last name): at least 3 drivers and 3 times as often as the other role, from canon_internal.name_token_stats. NULL arrays when none.';
