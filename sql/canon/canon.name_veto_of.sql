-- canon.name_veto_of: canon.name_veto for two names of records the matcher holds (a lead
-- row, a driver, or a bare name), with the roles both records can tell: the lead's
-- first/middle/last name fields (public.module_ct_cabinet_leads), the driver's
-- (canon_internal.driver_name_roles) and the drivers' usage of each token (canon.name_token_usage).
-- Called by canon.lead_candidates only for pairs whose score alone is a name match; each
-- record is named by a lead id or a driver id (both NULL: a name without fields).
CREATE OR REPLACE FUNCTION canon.name_veto_of(
  p_a text[], p_a_lead_id integer, p_a_driver_id text,
  p_b text[], p_b_lead_id integer, p_b_driver_id text)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  a_given    text[];
  a_surnames text[];
  b_given    text[];
  b_surnames text[];
  u_given    text[];
  u_surnames text[];
BEGIN
  -- With every role unknown the veto is the widest it can be: when even that finds
  -- nothing (a missing middle name, a typo, an initial), no lookup is needed.
  IF canon.name_veto(p_a, NULL, NULL, p_b, NULL, NULL, NULL, NULL) IS NULL THEN
    RETURN NULL;
  END IF;
  IF p_a_lead_id IS NOT NULL THEN
    SELECT canon.name_field_tokens(concat_ws(' ', l.first_name, l.middle_name)), canon.name_field_tokens(l.last_name)
    INTO a_given, a_surnames
    FROM public.module_ct_cabinet_leads l WHERE l.id = p_a_lead_id;
  ELSIF p_a_driver_id IS NOT NULL THEN
    SELECT r.given_names, r.surnames INTO a_given, a_surnames
    FROM canon_internal.driver_name_roles r WHERE r.driver_id = p_a_driver_id;
  END IF;
  IF p_b_lead_id IS NOT NULL THEN
    SELECT canon.name_field_tokens(concat_ws(' ', l.first_name, l.middle_name)), canon.name_field_tokens(l.last_name)
    INTO b_given, b_surnames
    FROM public.module_ct_cabinet_leads l WHERE l.id = p_b_lead_id;
  ELSIF p_b_driver_id IS NOT NULL THEN
    SELECT r.given_names, r.surnames INTO b_given, b_surnames
    FROM canon_internal.driver_name_roles r WHERE r.driver_id = p_b_driver_id;
  END IF;
  SELECT u.given_names, u.surnames INTO u_given, u_surnames FROM canon.name_token_usage(p_a || p_b) u;
  RETURN canon.name_veto(p_a, a_given, a_surnames, p_b, b_given, b_surnames, u_given, u_surnames);
END
$$;
COMMENT ON FUNCTION canon.name_veto_of(text[], integer, text, text[], integer, text) IS
  'canon.name_veto of two token sets with the roles their records tell: a lead row (p_*_lead_id: its name fields), a driver (p_*_driver_id: canon_internal.driver_name_roles) or neither, and the drivers'' usage (canon.name_token_usage). NULL: no veto.';
