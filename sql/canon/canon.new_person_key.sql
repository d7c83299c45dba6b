-- canon.new_person_key: a new person_key, a time-ordered UUID (version 7, RFC 9562):
-- 48 bits of Unix time in milliseconds, then 74 random bits (gen_random_uuid's, with
-- the version nibble set to 7; the variant bits are already RFC 4122's). Why not a v4:
-- every person_key index (the registry's primary key, identity_links, identity_origin,
-- claims) receives a batch's new keys at its right end, a few hot pages, instead of one
-- random leaf page per key; at 1M persons those pages are mostly outside shared buffers
-- and each insert read one. Keys stay unique and unguessable (74 random bits per
-- millisecond); they reveal when the person was created, as identity_registry.created_at
-- does. PostgreSQL 18 has uuidv7() built in; this works on 15 too.
CREATE OR REPLACE FUNCTION canon.new_person_key()
RETURNS uuid
LANGUAGE sql
VOLATILE
PARALLEL SAFE
AS $$
  SELECT encode(
           set_bit(set_bit(
             overlay(uuid_send(gen_random_uuid())
                     PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                     FROM 1 FOR 6),
             52, 1), 53, 1),
           'hex')::uuid
$$;
COMMENT ON FUNCTION canon.new_person_key() IS
  'A new person_key: a time-ordered UUID v7 (RFC 9562), so that new persons land at the right end of every person_key index.';
