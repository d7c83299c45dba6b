-- canon.enforce_person_has_link: deferred constraint trigger function. At commit, a
-- person created or left behind must have at least one identity link: no orphan persons.
CREATE OR REPLACE FUNCTION canon.enforce_person_has_link()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_person uuid := CASE WHEN TG_TABLE_NAME = 'identity_registry' THEN NEW.person_key ELSE OLD.person_key END;
BEGIN
  IF EXISTS (SELECT 1 FROM canon.identity_registry p WHERE p.person_key = v_person)
     AND NOT EXISTS (SELECT 1 FROM canon.identity_links l WHERE l.person_key = v_person) THEN
    RAISE EXCEPTION 'orphan person %: a person must have at least one identity link', v_person
      USING ERRCODE = 'CL010';
  END IF;
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION canon.enforce_person_has_link() IS 'Constraint trigger: no person in canon.identity_registry without a link (checked at commit).';
